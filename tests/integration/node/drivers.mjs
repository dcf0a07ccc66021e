// node-postgres (npm `pg`) named queries and postgres.js (npm `postgres`, which prepares every
// query by default) run concurrently through a pooler; prints one JSON summary on stdout.
//
// Usage: node drivers.mjs HOST PORT USER PASSWORD DATABASE
// Run by tests/integration/test_transaction_drivers.py, which asserts on the summary. Every
// result is checked here; a wrong value counts as a mismatch, a thrown error as an error (the
// first few messages are kept). Bounded: a fixed number of queries, and a watchdog timer.

import pg from "pg";
import postgres from "postgres";

const [host, portText, user, password, database] = process.argv.slice(2);
const port = Number(portText);

const PG_CLIENTS = 6;
const PG_ROUNDS = 4;
const PG_STATEMENTS = 10; // distinct named queries per client
const PJS_CONNECTIONS = 4;
const PJS_QUERIES = 200;

const watchdog = setTimeout(() => {
  console.error("drivers.mjs: watchdog expired after 90 s");
  process.exit(3);
}, 90_000);

function newReport() {
  return { queries: 0, mismatches: 0, errors: 0, messages: [], pids: new Set(), moved: 0 };
}

function fail(report, what) {
  report.errors += 1;
  if (report.messages.length < 5) report.messages.push(String(what));
}

function check(report, actual, expected, what) {
  report.queries += 1;
  if (JSON.stringify(actual) !== JSON.stringify(expected)) {
    report.mismatches += 1;
    if (report.messages.length < 5) {
      const got = JSON.stringify(actual);
      report.messages.push(`${what}: got ${got}, want ${JSON.stringify(expected)}`);
    }
  }
}

// ---- node-postgres: {name, text, values} on several clients at once ----------------------------
// pg sends Parse for a name only the first time its connection uses it, then just Bind/Execute:
// the pooler must make the statement exist on whichever backend the later uses land on.
async function pgClient(id, report) {
  const client = new pg.Client({ host, port, user, password, database });
  await client.connect();
  const seenOn = new Map(); // statement name -> backend pids it ran on
  try {
    for (let round = 0; round < PG_ROUNDS; round++) {
      for (let k = 0; k < PG_STATEMENTS; k++) {
        const name = `q${k}`;
        const res = await client.query({
          name,
          text: `SELECT $1::int + ${k} AS v, $2::text AS tag, pg_backend_pid() AS pid`,
          values: [id * 100 + round, `c${id}`],
        });
        check(report, [res.rows[0].v, res.rows[0].tag], [id * 100 + round + k, `c${id}`], name);
        report.pids.add(res.rows[0].pid);
        if (!seenOn.has(name)) seenOn.set(name, new Set());
        seenOn.get(name).add(res.rows[0].pid);
      }
      // A transaction of named queries: one backend from BEGIN to COMMIT.
      await client.query("BEGIN");
      await client.query({
        name: "ins",
        text: "INSERT INTO node_pg (client, round) VALUES ($1, $2)",
        values: [id, round],
      });
      const inTx = await client.query({
        name: "count",
        text: "SELECT count(*)::int AS n FROM node_pg WHERE client = $1",
        values: [id],
      });
      check(report, inTx.rows[0].n, round + 1, "count in transaction");
      await client.query("COMMIT");
    }
    // A named query with a wrong parameter makes an error; the client stays usable.
    try {
      await client.query({ name: "bad", text: "SELECT 1 / $1::int AS v", values: [0] });
      fail(report, "division by zero did not fail");
    } catch (e) {
      check(report, e.code, "22012", "division by zero");
    }
    const after = await client.query({
      name: "q0",
      text: "SELECT $1::int + 0 AS v, $2::text AS tag, pg_backend_pid() AS pid",
      values: [7, "z"],
    });
    check(report, after.rows[0].v, 7, "after error");
  } finally {
    await client.end();
  }
  for (const pids of seenOn.values()) if (pids.size > 1) report.moved += 1;
}

// ---- postgres.js: prepared statements by default, a small pool of its own ----------------------
async function postgresJs(report) {
  const sql = postgres({ host, port, user, password, database, max: PJS_CONNECTIONS,
                         idle_timeout: 0, connect_timeout: 10, onnotice: () => {} });
  try {
    const jobs = [];
    for (let i = 0; i < PJS_QUERIES; i++) {
      const kind = i % 4;
      jobs.push((async () => {
        try {
          if (kind === 0) {
            const [row] = await sql`SELECT ${i}::int * 3 AS v, pg_backend_pid() AS pid`;
            report.pids.add(row.pid);
            check(report, row.v, i * 3, "v");
          } else if (kind === 1) {
            const rows = await sql`SELECT g AS g, ${"p" + i}::text || g AS s
                                   FROM generate_series(1, ${(i % 5) + 1}::int) g`;
            const want = [];
            for (let g = 1; g <= (i % 5) + 1; g++) want.push({ g, s: `p${i}${g}` });
            check(report, rows.map((r) => ({ g: r.g, s: r.s })), want, "series");
          } else if (kind === 2) {
            const n = await sql.begin(async (tx) => {
              await tx`INSERT INTO node_pjs (i) VALUES (${i})`;
              const [r] = await tx`SELECT count(*)::int AS n FROM node_pjs WHERE i = ${i}`;
              return r.n;
            });
            check(report, n, 1, "transaction");
          } else {
            const [row] = await sql`SELECT ${"text-" + i}::text AS t, ${i % 2 === 0}::bool AS b`;
            check(report, [row.t, row.b], [`text-${i}`, i % 2 === 0], "text/bool");
          }
        } catch (e) {
          fail(report, e.message);
        }
      })());
    }
    await Promise.all(jobs);
    // An error in the middle, then the same connections keep working.
    try {
      await sql`SELECT 1 / ${0}::int`;
      fail(report, "division by zero did not fail");
    } catch (e) {
      check(report, e.code, "22012", "division by zero");
    }
    const [row] = await sql`SELECT count(*)::int AS n FROM node_pjs`;
    check(report, row.n, PJS_QUERIES / 4, "rows inserted");
  } finally {
    await sql.end({ timeout: 5 });
  }
}

function summary(report) {
  return { queries: report.queries, mismatches: report.mismatches, errors: report.errors,
           messages: report.messages, backends: report.pids.size, moved: report.moved };
}

async function main() {
  const setup = new pg.Client({ host, port, user, password, database });
  await setup.connect();
  await setup.query("DROP TABLE IF EXISTS node_pg, node_pjs");
  await setup.query("CREATE TABLE node_pg (client int, round int)");
  await setup.query("CREATE TABLE node_pjs (i int)");
  await setup.end();

  const pgReport = newReport();
  const pjsReport = newReport();
  const pgJobs = [];
  for (let id = 0; id < PG_CLIENTS; id++) {
    pgJobs.push(pgClient(id, pgReport).catch((e) => fail(pgReport, e.message)));
  }
  // Both drivers at once, so their statements share the same few backends.
  await Promise.all([...pgJobs, postgresJs(pjsReport).catch((e) => fail(pjsReport, e.message))]);

  const verify = new pg.Client({ host, port, user, password, database });
  await verify.connect();
  const rows = (await verify.query("SELECT count(*)::int AS n FROM node_pg")).rows[0].n;
  await verify.end();

  console.log(JSON.stringify({ pg: { ...summary(pgReport), rows,
                                      clients: PG_CLIENTS, rounds: PG_ROUNDS,
                                      statements: PG_STATEMENTS },
                               postgres: { ...summary(pjsReport), planned: PJS_QUERIES } }));
  clearTimeout(watchdog);
}

main().catch((e) => {
  console.error(`drivers.mjs: ${e.stack || e}`);
  process.exit(2);
});
