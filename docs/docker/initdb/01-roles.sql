-- Run once by the postgres image on first start (docker-entrypoint-initdb.d), in database "app"
-- (POSTGRES_DB). The passwords match docs/docker/userlist.txt; demo values, not for production.
CREATE ROLE app_user LOGIN PASSWORD 'app-secret';
GRANT ALL ON DATABASE app TO app_user;
GRANT ALL ON SCHEMA public TO app_user;
