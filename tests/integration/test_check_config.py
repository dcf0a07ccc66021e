"""`sluice --check-config FILE`: exit 0 for a valid file; exit 1 with `FILE:LINE: key: reason`
on stderr for each error otherwise. `sluice --config` refuses the same files at startup.
No PostgreSQL needed; only for the sluice target.
"""

import re
import shutil
import subprocess

import pytest

from pgcluster import REPO_ROOT, free_port, sluice_binary

pytestmark = pytest.mark.targets("sluice")

VALID = """\
listen = ["127.0.0.1:6432"]
auth_type = "scram-sha-256"
auth_file = "userlist.txt"
admin_users = ["sluice_admin"]
max_client_conn = 100
client_login_timeout = "10s"
shutdown_timeout = "30s"

[servers.main]
host = "127.0.0.1"
port = 5432
max_connections = 50

[databases.app]
server = "main"
dbname = "app"
pool_mode = "session"
pool_size = 20
min_pool_size = 0
server_lifetime = "1h"
server_idle_timeout = "10m"
server_reset_query = "DISCARD ALL"
"""


def replace_line(text: str, line: int, new: str) -> str:
    lines = text.splitlines()
    lines[line - 1] = new
    return "\n".join(lines) + "\n"


def write(tmp_path, text: str, name: str = "sluice.toml"):
    (tmp_path / "userlist.txt").write_text('"alice" "alice-secret"\n')
    path = tmp_path / name
    path.write_text(text)
    return path


def check_config(path):
    return subprocess.run([str(sluice_binary()), "--check-config", str(path)],
                          capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)


def diagnostic_pattern(path, line: int, key: str) -> re.Pattern:
    return re.compile(rf"^{re.escape(str(path))}:{line}: {re.escape(key)}: \S", re.MULTILINE)


def test_valid_config_passes(tmp_path):
    result = check_config(write(tmp_path, VALID))
    assert result.returncode == 0, result.stderr


def test_example_config_passes(tmp_path):
    # The shipped example must stay valid (its auth_file is relative to the config's directory).
    example = REPO_ROOT / "sluice.example.toml"
    assert example.exists(), "sluice.example.toml is missing from the repository root"
    path = tmp_path / "sluice.example.toml"
    shutil.copy(example, path)
    (tmp_path / "userlist.txt").write_text('"app_user" "app-secret"\n')
    result = check_config(path)
    assert result.returncode == 0, result.stderr


BAD_LINES = [
    # (line number in VALID, replacement, key reported)
    (5, "max_clinet_conn = 100", "max_clinet_conn"),                      # unknown key
    (2, 'auth_type = "kerberos"', "auth_type"),                           # bad enum value
    (7, 'shutdown_timeout = "30 parsecs"', "shutdown_timeout"),           # bad duration
    (7, "shutdown_timeout = 30", "shutdown_timeout"),                     # duration without unit
    (11, "port = 70000", "servers.main.port"),                            # out of range
    (15, 'server = "nowhere"', "databases.app.server"),                   # dangling reference
    (18, 'pool_size = "twenty"', "databases.app.pool_size"),              # wrong type
    (21, 'server_idle_timeout = "-5s"', "databases.app.server_idle_timeout"),
    (22, "server_reset_queries = \"DISCARD ALL\"", "databases.app.server_reset_queries"),
]


@pytest.mark.parametrize("line,replacement,key", BAD_LINES,
                         ids=[f"{key}:{new}" for _, new, key in BAD_LINES])
def test_bad_value_is_reported_with_file_line_and_key(tmp_path, line, replacement, key):
    path = write(tmp_path, replace_line(VALID, line, replacement))
    result = check_config(path)
    assert result.returncode == 1, result.stderr
    assert diagnostic_pattern(path, line, key).search(result.stderr), result.stderr


def test_every_error_in_a_file_is_reported(tmp_path):
    text = replace_line(replace_line(VALID, 5, "max_clinet_conn = 100"), 18, 'pool_size = "x"')
    path = write(tmp_path, text)
    result = check_config(path)
    assert result.returncode == 1
    assert diagnostic_pattern(path, 5, "max_clinet_conn").search(result.stderr), result.stderr
    assert diagnostic_pattern(path, 18, "databases.app.pool_size").search(result.stderr), \
        result.stderr


def test_toml_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path, replace_line(VALID, 12, "max_connections = = 50"))
    result = check_config(path)
    assert result.returncode == 1
    assert re.search(rf"^{re.escape(str(path))}:\d+: ", result.stderr, re.MULTILINE), \
        result.stderr


def test_missing_file_is_an_error(tmp_path):
    result = check_config(tmp_path / "absent.toml")
    assert result.returncode == 1
    assert "absent.toml" in result.stderr


def test_sluice_refuses_to_start_with_a_bad_config(tmp_path):
    port = free_port()
    text = replace_line(VALID, 1, f'listen = ["127.0.0.1:{port}"]')
    path = write(tmp_path, replace_line(text, 18, 'pool_size = "twenty"'))
    result = subprocess.run([str(sluice_binary()), "--config", str(path)], capture_output=True,
                            text=True, timeout=10, stdin=subprocess.DEVNULL)
    assert result.returncode != 0
    assert diagnostic_pattern(path, 18, "databases.app.pool_size").search(result.stderr), \
        result.stderr
