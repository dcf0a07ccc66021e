// pgJDBC (Debian's libpostgresql-jdbc-java, 42.5) through a pooler: one program, one scenario per
// sub-command, each printing one JSON summary line on stdout.
//
// Usage: java -cp DIR:/usr/share/java/postgresql.jar PgJdbcCheck COMMAND JDBC_URL [ARGS...]
//   issue URL CONNECTIONS ITERATIONS NEIGHBOUR   the program of issue 20 (NEIGHBOUR: none|listen)
//   concurrent URL THREADS CONNECTIONS TX        many threads, connections one after another
//   batch URL TABLE                              addBatch/executeBatch, failing batch, counts
//   fetchsize URL                                setFetchSize cursors inside transactions
//   timeout URL                                  setQueryTimeout(1) on pg_sleep(10), reuse
//   txerror URL                                  an error in a transaction, rollback, reuse
//   settings URL CONNECTIONS ROUNDS SCHEMAS      SET/RESET/set_config carried across transactions
//
// Run by tests/integration/test_java_driver.py, which compiles it with javac and asserts on the
// summary. Every result is checked here: a wrong value or an unexpected exception is recorded in
// "errors" (the first few in full, all of them counted) and makes the exit status 1; the summary
// is printed either way. Exit status 2: bad usage or a crash of the program itself. Bounded: the
// URL carries connectTimeout/socketTimeout, threads are joined with a deadline, and every
// scenario runs a fixed number of statements.

import java.sql.BatchUpdateException;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

public final class PgJdbcCheck {
  private static final int KEPT_ERRORS = 20;

  /** What a scenario found: counters, backend pids, errors. Thread-safe. */
  static final class Report {
    final Map<String, Object> fields = new LinkedHashMap<>();
    final List<Map<String, Object>> errors = new ArrayList<>();
    final AtomicInteger errorCount = new AtomicInteger();
    final AtomicLong checks = new AtomicLong();
    final Set<Integer> pids = ConcurrentHashMap.newKeySet();

    /** A failure at `where`: an unexpected exception or a wrong value (sqlstate may be null). */
    void error(String where, String sqlstate, String message) {
      errorCount.incrementAndGet();
      synchronized (errors) {
        if (errors.size() < KEPT_ERRORS) {
          Map<String, Object> e = new LinkedHashMap<>();
          e.put("where", where);
          e.put("sqlstate", sqlstate);
          e.put("message", message);
          errors.add(e);
        }
      }
    }

    /** An unexpected exception at `where`, with its SQLSTATE when it is an SQLException. */
    void error(String where, Throwable t) {
      String state = t instanceof SQLException ? ((SQLException) t).getSQLState() : null;
      error(where, state, t.toString());
    }

    /** Counts one checked value; records a mismatch. */
    void check(String where, Object got, Object want) {
      checks.incrementAndGet();
      if (want == null ? got != null : !want.equals(got)) {
        error(where, null, "got " + got + ", want " + want);
      }
    }

    synchronized void put(String key, Object value) {
      fields.put(key, value);
    }

    synchronized void add(String key, long delta) {
      fields.merge(key, delta, (a, b) -> (Long) a + (Long) b);
    }

    String toJson() {
      Map<String, Object> out = new LinkedHashMap<>();
      synchronized (this) {
        out.putAll(fields);
      }
      out.put("checks", checks.get());
      out.put("pids", new ArrayList<>(pids));
      out.put("error_count", errorCount.get());
      synchronized (errors) {
        out.put("errors", new ArrayList<>(errors));
      }
      return json(out);
    }
  }

  static String json(Object v) {
    if (v == null) return "null";
    if (v instanceof Number || v instanceof Boolean) return v.toString();
    if (v instanceof Map) {
      StringBuilder sb = new StringBuilder("{");
      for (Map.Entry<?, ?> e : ((Map<?, ?>) v).entrySet()) {
        if (sb.length() > 1) sb.append(',');
        sb.append(json(String.valueOf(e.getKey()))).append(':').append(json(e.getValue()));
      }
      return sb.append('}').toString();
    }
    if (v instanceof Collection) {
      StringBuilder sb = new StringBuilder("[");
      for (Object o : (Collection<?>) v) {
        if (sb.length() > 1) sb.append(',');
        sb.append(json(o));
      }
      return sb.append(']').toString();
    }
    StringBuilder sb = new StringBuilder("\"");
    for (char c : v.toString().toCharArray()) {
      if (c == '"' || c == '\\') sb.append('\\').append(c);
      else if (c < 0x20) sb.append(String.format("\\u%04x", (int) c));
      else sb.append(c);
    }
    return sb.append('"').toString();
  }

  static String url;

  static Connection connect(Properties extra) throws SQLException {
    return DriverManager.getConnection(url, extra == null ? new Properties() : extra);
  }

  static Connection connect() throws SQLException {
    return connect(null);
  }

  /** One row's first column as a String (the statement must return exactly one row). */
  static String one(ResultSet rs) throws SQLException {
    try (rs) {
      if (!rs.next()) throw new SQLException("no row");
      String v = rs.getString(1);
      if (rs.next()) throw new SQLException("more than one row");
      return v;
    }
  }

  static int backendPid(Connection c) throws SQLException {
    try (Statement st = c.createStatement()) {
      return Integer.parseInt(one(st.executeQuery("select pg_backend_pid()")));
    }
  }

  /** Runs the callables in threads and joins them within `seconds`; a stuck thread is an error. */
  static void runThreads(Report report, List<Runnable> bodies, int seconds) throws Exception {
    List<Thread> threads = new ArrayList<>();
    for (int i = 0; i < bodies.size(); i++) {
      final Runnable body = bodies.get(i);
      final int index = i;
      Thread t = new Thread(() -> {
        try {
          body.run();
        } catch (Throwable e) {
          report.error("thread " + index, e);
        }
      });
      t.setDaemon(true);
      threads.add(t);
      t.start();
    }
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds);
    for (Thread t : threads) {
      t.join(Math.max(1, TimeUnit.NANOSECONDS.toMillis(deadline - System.nanoTime())));
    }
    long stuck = threads.stream().filter(Thread::isAlive).count();
    if (stuck > 0) {
      report.error("threads", null, stuck + " threads still running after " + seconds + " s");
    }
  }

  interface SqlBody {
    void run() throws Exception;
  }

  /** Runs `body`; an exception is recorded as an error at `where` instead of propagating. */
  static boolean guarded(Report report, String where, SqlBody body) {
    try {
      body.run();
      return true;
    } catch (Exception e) {
      report.error(where, e);
      return false;
    }
  }

  // ---- issue 20 ------------------------------------------------------------------------------

  /**
   * The program from the issue: connections opened one after another, autocommit off, one
   * PreparedStatement executed ITERATIONS times with a commit after each. On the wire, pgJDBC
   * prepares its COMMIT as the named statement S_1 at the first commit, then BEGIN (sent unnamed
   * in front of each transaction's first statement) and the query become named statements at
   * their prepareThreshold-th use (default 5; the URL may set prepareThreshold=1). With
   * NEIGHBOUR=listen, a connection pinned to its backend by LISTEN runs the same statements
   * between two of them and then closes, so its backend is reset (server_reset_query) before the
   * next connection most likely gets it (idle backends are reused most recent first).
   */
  static void issue(Report report, int connections, int iterations, String neighbour)
      throws Exception {
    int ok = 0;
    for (int c = 0; c < connections; c++) {
      final int conn = c;
      boolean fine = guarded(report, "connection " + conn, () -> {
        try (Connection db = connect()) {
          db.setAutoCommit(false);
          try (PreparedStatement ps = db.prepareStatement("select ?::int + 1")) {
            for (int i = 0; i < iterations; i++) {
              ps.setInt(1, i);
              try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                report.check("connection " + conn + " iteration " + i, rs.getInt(1), i + 1);
              }
              db.commit();
            }
          }
        }
      });
      if (fine) ok++;
      if (neighbour.equals("listen") && c + 1 < connections) {
        guarded(report, "listener after connection " + conn, () -> {
          try (Connection db = connect()) {
            try (Statement st = db.createStatement()) {
              st.execute("LISTEN sluice_issue20");
            }
            db.setAutoCommit(false);
            try (PreparedStatement ps = db.prepareStatement("select ?::int + 1")) {
              for (int i = 0; i < iterations; i++) {
                ps.setInt(1, 100 + i);
                report.check("listener " + conn, one(ps.executeQuery()), String.valueOf(101 + i));
                db.commit();
              }
            }
          }
        });
      }
    }
    report.put("connections", connections);
    report.put("ok_connections", ok);
  }

  // ---- many threads --------------------------------------------------------------------------

  /**
   * THREADS threads share CONNECTIONS pgJDBC connections: each thread opens one, runs TX
   * transactions (autocommit off, two PreparedStatements executed three times in each, so they
   * become named server-side statements in the second), closes it and takes the next, until all
   * are used.
   */
  static void concurrent(Report report, int threads, int connections, int tx) throws Exception {
    AtomicInteger next = new AtomicInteger();
    AtomicInteger opened = new AtomicInteger();
    AtomicInteger committed = new AtomicInteger();
    List<Runnable> bodies = new ArrayList<>();
    for (int t = 0; t < threads; t++) {
      bodies.add(() -> {
        for (int c; (c = next.getAndIncrement()) < connections; ) {
          final int conn = c;
          guarded(report, "connection " + conn, () -> {
            try (Connection db = connect()) {
              opened.incrementAndGet();
              db.setAutoCommit(false);
              try (PreparedStatement twice = db.prepareStatement("select ?::int * 2,"
                       + " pg_backend_pid(), current_setting('extra_float_digits')");
                   PreparedStatement text = db.prepareStatement(
                       "select ?::text || '/' || ?::int")) {
                for (int x = 0; x < tx; x++) {
                  for (int r = 0; r < 3; r++) {
                    int v = conn * 1000 + x * 10 + r;
                    twice.setInt(1, v);
                    try (ResultSet rs = twice.executeQuery()) {
                      rs.next();
                      report.check("connection " + conn + " twice", rs.getInt(1), 2 * v);
                      report.pids.add(rs.getInt(2));
                      // pgJDBC's own `SET extra_float_digits = 3` after login, on every backend.
                      report.check("connection " + conn + " extra_float_digits",
                          rs.getString(3), "3");
                    }
                    text.setString(1, "c" + conn);
                    text.setInt(2, v);
                    report.check("connection " + conn + " text", one(text.executeQuery()),
                        "c" + conn + "/" + v);
                  }
                  db.commit();
                  committed.incrementAndGet();
                }
              }
            }
          });
        }
      });
    }
    runThreads(report, bodies, 150);
    report.put("threads", threads);
    report.put("connections", opened.get());
    report.put("transactions", committed.get());
  }

  // ---- batches -------------------------------------------------------------------------------

  static void batch(Report report, String table) throws Exception {
    try (Connection db = connect()) {
      try (Statement st = db.createStatement()) {
        st.execute("drop table if exists " + table);
        st.execute("create table " + table + " (id int primary key, grp int not null, note text)");
      }
      // 500 rows in five batches of 100, one transaction each.
      db.setAutoCommit(false);
      try (PreparedStatement ins =
               db.prepareStatement("insert into " + table + " (id, grp, note) values (?, ?, ?)")) {
        for (int b = 0; b < 5; b++) {
          for (int i = 0; i < 100; i++) {
            int id = b * 100 + i;
            ins.setInt(1, id);
            ins.setInt(2, id % 7);
            ins.setString(3, "row " + id);
            ins.addBatch();
          }
          int[] counts = ins.executeBatch();
          report.check("batch " + b + " size", counts.length, 100);
          for (int n : counts) {
            if (n != 1 && n != Statement.SUCCESS_NO_INFO) {
              report.check("batch " + b + " count", n, 1);
            }
          }
          db.commit();
        }
      }
      // A Statement batch of plain SQL.
      try (Statement st = db.createStatement()) {
        st.addBatch("update " + table + " set note = 'zero' where grp = 0");
        st.addBatch("delete from " + table + " where id >= 490");
        st.addBatch("insert into " + table + " values (1000, 1, 'extra')");
        int[] counts = st.executeBatch();
        report.check("statement batch", java.util.Arrays.toString(counts), "[72, 10, 1]");
        db.commit();
      }
      // A batch that fails in the middle (duplicate key): nothing of it stays.
      try (PreparedStatement ins =
               db.prepareStatement("insert into " + table + " (id, grp) values (?, ?)")) {
        for (int id : new int[] {2000, 2001, 5, 2002}) {
          ins.setInt(1, id);
          ins.setInt(2, 0);
          ins.addBatch();
        }
        try {
          ins.executeBatch();
          report.error("failing batch", null, "executeBatch did not fail");
        } catch (BatchUpdateException e) {
          report.check("failing batch sqlstate", e.getSQLState(), "23505");
        }
        db.rollback();
      }
      // Autocommit batches, then the totals.
      db.setAutoCommit(true);
      try (PreparedStatement ins =
               db.prepareStatement("insert into " + table + " (id, grp) values (?, ?)")) {
        for (int round = 0; round < 3; round++) {
          for (int i = 0; i < 20; i++) {
            ins.setInt(1, 3000 + round * 20 + i);
            ins.setInt(2, 9);
            ins.addBatch();
          }
          report.check("autocommit batch " + round, ins.executeBatch().length, 20);
        }
      }
      try (PreparedStatement q = db.prepareStatement(
               "select count(*), sum(id), count(*) filter (where note = 'zero') from " + table);
           ResultSet rs = q.executeQuery()) {
        rs.next();
        // 0..489, 1000, 3000..3059.
        report.check("row count", rs.getLong(1), 490L + 1 + 60);
        report.check("id sum", rs.getLong(2), 489L * 490 / 2 + 1000 + (3000L + 3059) * 60 / 2);
        report.check("updated rows", rs.getLong(3), 70L);
      }
    }
  }

  // ---- cursors -------------------------------------------------------------------------------

  /**
   * setFetchSize with autocommit off: pgJDBC executes into a named portal and fetches 10 rows at
   * a time (Execute with a row limit, PortalSuspended), so the portal must stay on one backend
   * for the whole transaction. Two cursors are read interleaved, and everything is repeated in
   * several transactions, the prepared statement becoming a named server-side statement.
   */
  static void fetchsize(Report report) throws Exception {
    try (Connection db = connect()) {
      db.setAutoCommit(false);
      try (PreparedStatement ps = db.prepareStatement("select g from generate_series(1, ?) g")) {
        ps.setFetchSize(10);
        for (int round = 0; round < 6; round++) {
          ps.setInt(1, 1000);
          long sum = 0, rows = 0;
          try (ResultSet rs = ps.executeQuery()) {
            while (rs.next()) {
              sum += rs.getLong(1);
              rows++;
            }
          }
          report.check("round " + round + " rows", rows, 1000L);
          report.check("round " + round + " sum", sum, 500500L);
          db.commit();
        }
        // Two portals open at once in one transaction, read alternately.
        try (Statement st = db.createStatement()) {
          st.setFetchSize(10);
          ps.setInt(1, 500);
          long sumA = 0, sumB = 0;
          try (ResultSet a = ps.executeQuery();
               ResultSet b = st.executeQuery("select g * 2 from generate_series(1, 500) g")) {
            boolean moreA = true, moreB = true;
            while (moreA || moreB) {
              if (moreA && (moreA = a.next())) sumA += a.getLong(1);
              if (moreB && (moreB = b.next())) sumB += b.getLong(1);
            }
          }
          report.check("interleaved a", sumA, 125250L);
          report.check("interleaved b", sumB, 250500L);
        }
        db.commit();
      }
    }
  }

  // ---- query timeout -------------------------------------------------------------------------

  /**
   * setQueryTimeout(1) on pg_sleep(10): pgJDBC sends a CancelRequest (a new connection with the
   * BackendKeyData it was given) after one second; the statement fails with 57014, and the
   * connection goes on, in autocommit mode and inside a transaction.
   */
  static void timeout(Report report) throws Exception {
    try (Connection db = connect()) {
      List<Object> elapsed = new ArrayList<>();
      for (boolean autocommit : new boolean[] {true, false}) {
        db.setAutoCommit(autocommit);
        String mode = autocommit ? "autocommit" : "transaction";
        try (PreparedStatement sleep = db.prepareStatement("select pg_sleep(10)")) {
          sleep.setQueryTimeout(1);
          long start = System.nanoTime();
          try {
            sleep.executeQuery().close();
            report.error(mode, null, "pg_sleep(10) was not cancelled");
          } catch (SQLException e) {
            report.check(mode + " sqlstate", e.getSQLState(), "57014");
          }
          long ms = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
          elapsed.add(ms);
          if (!autocommit) db.rollback();
        }
        try (PreparedStatement ps = db.prepareStatement("select ?::int + 1")) {
          ps.setQueryTimeout(5);  // a timeout that does not fire
          for (int i = 0; i < 6; i++) {
            ps.setInt(1, i);
            report.check(mode + " after the timeout", one(ps.executeQuery()),
                String.valueOf(i + 1));
            if (!autocommit) db.commit();
          }
        }
      }
      report.put("elapsed_ms", elapsed);
    }
  }

  // ---- an error inside a transaction ---------------------------------------------------------

  static void txerror(Report report) throws Exception {
    try (Connection db = connect()) {
      db.setAutoCommit(false);
      try (PreparedStatement ps = db.prepareStatement("select ?::int + 1");
           PreparedStatement div = db.prepareStatement("select 1 / ?::int")) {
        for (int round = 0; round < 6; round++) {
          ps.setInt(1, round);
          report.check("round " + round + " before", one(ps.executeQuery()),
              String.valueOf(round + 1));
          div.setInt(1, 0);
          try {
            div.executeQuery().close();
            report.error("round " + round, null, "division by zero did not fail");
          } catch (SQLException e) {
            report.check("round " + round + " division", e.getSQLState(), "22012");
          }
          try {
            ps.executeQuery().close();
            report.error("round " + round, null, "a statement in a failed transaction ran");
          } catch (SQLException e) {
            report.check("round " + round + " aborted", e.getSQLState(), "25P02");
          }
          db.rollback();
          for (int i = 0; i < 3; i++) {
            ps.setInt(1, 10 * round + i);
            report.check("round " + round + " after", one(ps.executeQuery()),
                String.valueOf(10 * round + i + 1));
          }
          db.commit();
        }
      }
    }
  }

  // ---- session settings ----------------------------------------------------------------------

  /** What a connection expects SHOW to return; updated as it changes its settings. */
  static final class Expected {
    String searchPath;
    String schema;
    String statementTimeout;
  }

  static void expectSettings(Report report, Connection db, PreparedStatement probe, String where,
      Expected want, String appName) throws SQLException {
    try (ResultSet rs = probe.executeQuery()) {
      rs.next();
      report.check(where + " search_path", rs.getString(1), want.searchPath);
      report.check(where + " current_schema", rs.getString(2), want.schema);
      report.check(where + " whoami", rs.getString(3), want.schema);
      report.check(where + " statement_timeout", rs.getString(4), want.statementTimeout);
      report.check(where + " application_name", rs.getString(5), appName);
      report.check(where + " extra_float_digits", rs.getString(6), "3");
      report.pids.add(rs.getInt(7));
    }
    try (Statement st = db.createStatement()) {
      report.check(where + " SHOW search_path", one(st.executeQuery("SHOW search_path")),
          want.searchPath);
      report.check(where + " SHOW statement_timeout",
          one(st.executeQuery("SHOW statement_timeout")), want.statementTimeout);
    }
  }

  /**
   * CONNECTIONS connections in their own threads, at once, over a small pool: each sets its own
   * search_path (one of SCHEMAS schemas s0.., each with a table whoami naming it) and
   * statement_timeout, then checks in every later transaction that SHOW and the unqualified
   * table name see them. Halfway it changes them in the ways PostgreSQL defines: SET inside a
   * committed transaction (kept), SET inside a rolled-back one (undone), SET LOCAL (for that
   * transaction only), set_config(..., false), RESET.
   */
  static void settings(Report report, int connections, int rounds, int schemas) throws Exception {
    Map<Integer, Set<Integer>> pidsByConnection = new ConcurrentHashMap<>();
    List<Runnable> bodies = new ArrayList<>();
    for (int k = 0; k < connections; k++) {
      final int conn = k;
      bodies.add(() -> guarded(report, "connection " + conn, () -> {
        Properties props = new Properties();
        String app = "jdbc-settings-" + conn;
        props.setProperty("ApplicationName", app);
        Set<Integer> seen = ConcurrentHashMap.newKeySet();
        pidsByConnection.put(conn, seen);
        try (Connection db = connect(props);
             PreparedStatement probe = db.prepareStatement(
                 "select current_setting('search_path'), current_schema(),"
                     + " (select name from whoami), current_setting('statement_timeout'),"
                     + " current_setting('application_name'),"
                     + " current_setting('extra_float_digits'), pg_backend_pid()")) {
          Expected want = new Expected();
          String schema = "s" + (conn % schemas);
          try (Statement st = db.createStatement()) {
            st.execute("SET search_path TO " + schema + ", public");
            st.execute("SET statement_timeout = '" + (conn + 1) + "s'");
          }
          want.searchPath = schema + ", public";
          want.schema = schema;
          want.statementTimeout = (conn + 1) + "s";
          db.setAutoCommit(false);
          for (int r = 0; r < rounds; r++) {
            String where = "connection " + conn + " round " + r;
            try (Statement st = db.createStatement()) {
              if (r == rounds / 4) {
                // SET in a transaction that commits: kept.
                st.execute("SET statement_timeout = '" + (conn + 100) + "s'");
                want.statementTimeout = (conn + 100) + "s";
              } else if (r == rounds / 4 + 1) {
                // SET in a transaction that rolls back: undone with it.
                st.execute("SET search_path TO public");
                st.execute("SET statement_timeout = '1h'");
                db.rollback();
              } else if (r == rounds / 4 + 2) {
                // SET LOCAL: this transaction only.
                st.execute("SET LOCAL search_path TO public");
                report.check(where + " SET LOCAL", one(st.executeQuery("select name from whoami")),
                    "public");
                db.commit();
              } else if (r == rounds / 2) {
                // set_config(..., false) is a session-level SET.
                String other = "s" + ((conn + 1) % schemas);
                st.executeQuery("select set_config('search_path', '" + other + ", public', false)")
                    .close();
                want.searchPath = other + ", public";
                want.schema = other;
              } else if (r == 3 * rounds / 4) {
                st.execute("RESET statement_timeout");
                want.statementTimeout = "0";
              }
            }
            expectSettings(report, db, probe, where, want, app);
            try (Statement st = db.createStatement()) {
              seen.add(Integer.parseInt(one(st.executeQuery("select pg_backend_pid()"))));
            }
            db.commit();
            // Let the other connections' transactions in between, so this one moves.
            Thread.sleep(ThreadLocalRandom.current().nextInt(1, 6));
          }
          // Autocommit statements see the same.
          db.setAutoCommit(true);
          expectSettings(report, db, probe, "connection " + conn + " autocommit", want, app);
        }
      }));
    }
    runThreads(report, bodies, 150);
    int moved = 0;
    for (Set<Integer> seen : pidsByConnection.values()) {
      report.pids.addAll(seen);
      if (seen.size() > 1) moved++;
    }
    report.put("connections", connections);
    report.put("moved", moved);
  }

  // ---- main ----------------------------------------------------------------------------------

  public static void main(String[] args) {
    if (args.length < 2) {
      System.err.println("usage: PgJdbcCheck COMMAND JDBC_URL [ARGS...]");
      System.exit(2);
    }
    url = args[1];
    Report report = new Report();
    report.put("command", args[0]);
    try {
      switch (args[0]) {
        case "issue":
          issue(report, Integer.parseInt(args[2]), Integer.parseInt(args[3]), args[4]);
          break;
        case "concurrent":
          concurrent(report, Integer.parseInt(args[2]), Integer.parseInt(args[3]),
              Integer.parseInt(args[4]));
          break;
        case "batch":
          batch(report, args[2]);
          break;
        case "fetchsize":
          fetchsize(report);
          break;
        case "timeout":
          timeout(report);
          break;
        case "txerror":
          txerror(report);
          break;
        case "settings":
          settings(report, Integer.parseInt(args[2]), Integer.parseInt(args[3]),
              Integer.parseInt(args[4]));
          break;
        default:
          System.err.println("unknown command " + args[0]);
          System.exit(2);
      }
    } catch (SQLException e) {
      // An unexpected failure outside the per-connection guards: still a result to report.
      report.error("main", e);
    } catch (Exception e) {
      e.printStackTrace();
      report.error("main", e);
      System.out.println(report.toJson());
      System.exit(2);
    }
    System.out.println(report.toJson());
    System.exit(report.errorCount.get() == 0 ? 0 : 1);
  }
}
