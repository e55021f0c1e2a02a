// Proves the test harness itself: each fault helper really does what it says, so a fault test that
// passes is not passing because its fault never happened.
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import mariadb from "mariadb";
import { bareClient } from "./support/clients.ts";
import { driverInitRejections, isDriverInitRejection, markAsSetupFailure } from "./support/driver-bug.ts";
import { requireServerBinaries, startDatabase, type TestDatabase } from "./support/mariadb.ts";
import { startProxy, type FaultProxy } from "./support/proxy.ts";

let db: TestDatabase;

async function connect(opts: Partial<mariadb.ConnectionConfig> = {}) {
  const conn = await mariadb.createConnection({
    host: db.host,
    port: db.port,
    user: db.user,
    password: db.password,
    database: db.database,
    ...opts,
  });
  // A connection killed while idle reports it as an 'error' event; the tests look at queries.
  conn.on("error", () => undefined);
  return conn;
}

/** Settles to "pending" if the promise has not settled within ms. */
async function settleWithin<T>(p: Promise<T>, ms: number): Promise<{ state: "fulfilled" | "rejected" | "pending"; value?: unknown }> {
  return await Promise.race([
    p.then(
      (value) => ({ state: "fulfilled" as const, value }),
      (value) => ({ state: "rejected" as const, value }),
    ),
    sleep(ms).then(() => ({ state: "pending" as const })),
  ]);
}

before(async () => {
  db = await startDatabase();
});
after(async () => {
  if (process.env.DEBUG_HARNESS) console.log((db as any).tailLog());
  await db?.stop();
});

describe("server", () => {
  test("fails at once, saying how to install, when mariadbd is missing", () => {
    const empty = mkdtempSync(join(tmpdir(), "no-mariadb-"));
    assert.throws(() => requireServerBinaries([empty]), /apt-get install -y mariadb-server/);
  });

  test("starts with the migration applied and serves Prisma", async () => {
    const tables = await db.admin<any[]>(`SHOW TABLES FROM \`${db.database}\``);
    assert.deepEqual(tables.map((r) => Object.values(r)[0]).sort(), ["Ledger", "Post", "User", "_resilience_commits"]);
    const prisma = bareClient(db.url);
    try {
      const user = await prisma.user.create({ data: { email: "harness@example.com" } });
      assert.equal((await prisma.user.findUniqueOrThrow({ where: { id: user.id } })).email, "harness@example.com");
    } finally {
      await prisma.$disconnect();
      await db.reset();
    }
  });
});

describe("driver-bug filter", () => {
  test("tolerates only the mariadb init socket error shapes, and only from a connection's set-up", () => {
    const marked = <T extends object>(e: T): T => (markAsSetupFailure(e), e);
    const socket = () => Object.assign(new Error("read ECONNRESET"), { errno: -104, code: "ECONNRESET", fatal: true, sqlState: "HY000" });
    assert.equal(isDriverInitRejection(marked(socket())), true);
    assert.equal(isDriverInitRejection(socket()), false, "the same shape from a query is not swallowed");
    assert.equal(isDriverInitRejection(marked(new Error("read ECONNRESET"))), false);
    assert.equal(isDriverInitRejection(marked(Object.assign(new Error("x"), { code: "P2002", fatal: true, sqlState: "HY000" }))), false);
    assert.equal(isDriverInitRejection(marked(Object.assign(new Error("x"), { errno: 1045, code: "ER_ACCESS_DENIED_ERROR", fatal: true, sqlState: "HY000" }))), false);
    assert.equal(isDriverInitRejection("ECONNRESET"), false);
    const closed = () => Object.assign(new Error("socket has unexpectedly been closed"), { errno: 45009, code: "ER_SOCKET_UNEXPECTED_CLOSE", fatal: true, sqlState: "08S01" });
    assert.equal(isDriverInitRejection(marked(closed())), true);
    assert.equal(isDriverInitRejection(closed()), false);
    assert.equal(isDriverInitRejection(marked({ ...closed(), fatal: false })), false);
    assert.equal(isDriverInitRejection(marked(Object.assign(new Error("x"), { errno: 45013, code: "ER_CMD_CONNECTION_CLOSED", fatal: true, sqlState: "08S01" }))), false);
  });

  test("a real reset during a connection's init queries: the driver's unhandled rejection is tolerated and counted", async () => {
    const proxy = await startProxy(db.host, db.port);
    try {
      const before = driverInitRejections();
      // timezone: "auto" makes the driver ask the server's time zone among its init queries; the
      // proxy forwards that query and resets the client's side before the answer.
      const lost = proxy.loseReplyTo("system_time_zone");
      const connecting = mariadb
        .createConnection({ host: proxy.host, port: proxy.port, user: db.user, password: db.password, database: db.database, timezone: "auto" })
        .then(
          () => assert.fail("the connection should have failed"),
          (e: any) => e,
        );
      await lost;
      const error = await connecting;
      await sleep(100); // the driver's second rejection surfaces as unhandled on a later tick
      assert.equal(driverInitRejections(), before + 1, "exactly one unhandled rejection, tolerated");
      assert.equal(isDriverInitRejection(error), true);
    } finally {
      await proxy.close();
    }
  });

  // Why the harness never sets the driver's queryTimeout (test/support/galera.ts state()): mariadb
  // sends `SET max_statement_time` at connect and leaves that query's failure unhandled
  // (Connection.executeSessionTimeout, 3.4.5 to 3.5.4). The filter does not tolerate it: it would
  // fail the running test (seen in CI while a Galera node restarted). Here it is caught apart.
  test("a real reset during queryTimeout's SET max_statement_time: the driver leaves a 45039 rejection unhandled (not tolerated)", async () => {
    const proxy = await startProxy(db.host, db.port);
    const saved = process.listeners("unhandledRejection");
    const unhandled: any[] = [];
    process.removeAllListeners("unhandledRejection");
    process.on("unhandledRejection", (reason) => void unhandled.push(reason));
    try {
      const lost = proxy.loseReplyTo("max_statement_time");
      // The connection is left alone (no destroy(): that alone fails the SET, and its KILL can leave
      // a rejection of its own); only the proxy's reset may fail it.
      const connecting = mariadb
        .createConnection({ host: proxy.host, port: proxy.port, user: db.user, password: db.password, database: db.database, queryTimeout: 2000 })
        .then(
          (conn) => (conn.on("error", () => undefined), conn),
          (e: any) => e,
        );
      await lost;
      const conn = await connecting;
      const ours = () => unhandled.filter((r) => r?.errno === 45039 && r?.code === "ER_INITIAL_TIMEOUT_ERROR");
      for (const deadline = Date.now() + 3000; ours().length === 0 && Date.now() < deadline; ) await sleep(20);
      await sleep(100);
      if (typeof conn?.destroy === "function") conn.destroy();
      assert.equal(ours().length, 1, `one unhandled 45039 (got ${unhandled.map((r) => r?.code ?? String(r)).join(", ") || "none"})`);
      assert.match(ours()[0].message, /setting session queryTimeout: .*(ECONNRESET|closed|socket)/i, "failed by the reset");
      assert.equal(isDriverInitRejection(ours()[0]), false, "not a shape the filter tolerates");
    } finally {
      process.removeAllListeners("unhandledRejection");
      for (const l of saved) process.on("unhandledRejection", l);
      await proxy.close();
    }
  });

  test("a real reset of a query on an established connection has the same shape and is NOT tolerated", async () => {
    const proxy = await startProxy(db.host, db.port);
    try {
      const conn = await connect({ host: proxy.host, port: proxy.port });
      const query = conn.query("SELECT SLEEP(3) AS query_probe").then(
        () => assert.fail("the query should have failed"),
        (e: any) => e,
      );
      await db.waitForStatement("query_probe");
      proxy.resetAll();
      const error = await query;
      assert.equal(error.code, "ECONNRESET");
      assert.equal(error.fatal, true);
      assert.equal(isDriverInitRejection(error), false);
      await conn.destroy();
    } finally {
      await proxy.close();
    }
  });
});

describe("killConnections", () => {
  test("all: the connection is gone from the processlist and the client sees it", async () => {
    const conn = await connect();
    const id = conn.threadId;
    assert.ok((await db.appConnections()).some((r) => r.id === id));
    const killed = await db.killConnections("all");
    assert.ok(killed.includes(id!));
    assert.ok(!(await db.appConnections()).some((r) => r.id === id));
    await assert.rejects(conn.query("SELECT 1"));
    await conn.destroy();
  });

  test("idle: kills sleeping connections and spares a busy one", async () => {
    const idle = await connect();
    const busy = await connect();
    const running = busy.query("SELECT SLEEP(1.5)");
    await sleep(200);
    const killed = await db.killConnections("idle");
    assert.ok(killed.includes(idle.threadId!));
    assert.ok(!killed.includes(busy.threadId!));
    const rows = await running;
    assert.equal(Number(rows[0]["SLEEP(1.5)"]), 0, "the busy connection's query completed");
    await busy.end();
    await idle.destroy();
  });

  test("running: kills only the connection running the matching statement", async () => {
    const a = await connect();
    const b = await connect();
    const started = Date.now();
    const victim = a.query("SELECT SLEEP(10) AS marker_victim");
    victim.catch(() => undefined); // asserted below; keep the rejection from counting as unhandled
    const bystander = b.query("SELECT SLEEP(1) AS marker_bystander");
    await sleep(200);
    const killed = await db.killConnections({ running: "marker_victim" });
    assert.deepEqual(killed, [a.threadId]);
    await assert.rejects(victim);
    assert.ok(Date.now() - started < 5000, "the killed query ended long before its SLEEP(10)");
    await bystander; // untouched
    await a.destroy();
    await b.end();
  });
});

describe("setGlobal", () => {
  test("wait_timeout really closes idle connections", async () => {
    const before = await db.getGlobal("wait_timeout");
    await db.setGlobal("wait_timeout", 1);
    try {
      assert.equal(await db.getGlobal("wait_timeout"), "1");
      const conn = await connect();
      const id = conn.threadId;
      await sleep(2500);
      assert.ok(!(await db.appConnections()).some((r) => r.id === id), "server closed the idle connection");
      await assert.rejects(conn.query("SELECT 1"));
      await conn.destroy();
    } finally {
      await db.setGlobal("wait_timeout", Number(before));
    }
  });
});

describe("kill -9 and restart", () => {
  test("the server really dies, comes back on the same port and datadir, with its data", async () => {
    await db.admin(`INSERT INTO \`${db.database}\`.Ledger (\`key\`, amount) VALUES ('survives-restart', 1)`);
    const uptimeBefore = await db.statusCounter("Uptime");
    await sleep(1100); // let Uptime grow past the restarted server's
    const conn = await connect();
    await db.kill9();
    await assert.rejects(conn.query("SELECT 1"), "a connection to the killed server fails");
    await assert.rejects(connect({ connectTimeout: 500 }), "nothing listens while it is down");
    await db.start();
    const uptimeAfter = await db.statusCounter("Uptime");
    assert.ok(uptimeAfter < uptimeBefore + 1, `Uptime restarted (${uptimeBefore} → ${uptimeAfter})`);
    const rows = await db.admin<any[]>(`SELECT COUNT(*) AS n FROM \`${db.database}\`.Ledger WHERE \`key\` = 'survives-restart'`);
    assert.equal(Number(rows[0].n), 1);
    const fresh = await connect();
    assert.deepEqual(await fresh.query("SELECT 1 AS one"), [{ one: 1 }]);
    await fresh.end();
    await conn.destroy();
    await db.reset();
  });
});

describe("proxy", () => {
  let proxy: FaultProxy;
  before(async () => {
    proxy = await startProxy(db.host, db.port);
  });
  after(async () => {
    await proxy.close();
  });

  const viaProxy = (opts: Partial<mariadb.ConnectionConfig> = {}) => connect({ host: proxy.host, port: proxy.port, ...opts });

  test("passes traffic through", async () => {
    const conn = await viaProxy();
    assert.deepEqual(await conn.query("SELECT 41 + 1 AS answer"), [{ answer: 42 }]);
    await conn.end();
  });

  test("resetAll: the client gets a reset", async () => {
    const conn = await viaProxy();
    await conn.query("SELECT 1");
    assert.equal(proxy.resetAll(), 1);
    const err: any = await conn.query("SELECT 1").catch((e) => e);
    assert.ok(err instanceof Error, "query failed after the reset");
    assert.match(`${(err as any).code} ${err.message}`, /ECONNRESET|EPIPE|closed/i);
    await conn.destroy();
  });

  test("dropAll: a raw query goes unanswered and the server keeps the session", async () => {
    const conn = await viaProxy();
    const id = conn.threadId;
    assert.equal(proxy.dropAll(), 1);
    const outcome = await settleWithin(conn.query("SELECT 1"), 1000);
    assert.equal(outcome.state, "pending", "no answer, no error: a silent drop");
    assert.ok((await db.appConnections()).some((r) => r.id === id), "server still holds the session");
    // Not conn.destroy(): with a query in flight it would send KILL over a new connection. The
    // session is killed here and the client socket goes when the proxy closes.
    await db.killConnections("all");
  });

  test("delay adds latency to each round trip", async () => {
    const conn = await viaProxy();
    proxy.delayMs = 150;
    try {
      const t = performance.now();
      await conn.query("SELECT 1");
      assert.ok(performance.now() - t >= 290, "request and reply each delayed");
    } finally {
      proxy.delayMs = 0;
    }
    await conn.end();
  });

  test("loseReplyTo: the statement reaches the server, its reply never reaches the client", async () => {
    const conn = await viaProxy();
    await conn.query("BEGIN");
    await conn.query("INSERT INTO Ledger (`key`, amount) VALUES ('lost-reply', 1)");
    const lost = proxy.loseReplyTo("COMMIT");
    await assert.rejects(conn.query("COMMIT"));
    await lost;
    await sleep(300);
    const rows = await db.admin<any[]>(`SELECT COUNT(*) AS n FROM \`${db.database}\`.Ledger WHERE \`key\` = 'lost-reply'`);
    assert.equal(Number(rows[0].n), 1, "the COMMIT was applied although the client saw an error");
    await conn.destroy();
    await db.reset();
  });
});
