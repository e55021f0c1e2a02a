// Out of the box: `withResilience(new PrismaMariaDb(url))` and `resilience()` at their defaults (no
// socketTimeout in the URL, no tunePool), on a real MariaDB and the loopback fault proxy. Silent drops
// are bounded without cutting a long query, a wrong password is named at once, a server down at start
// is reported within the deadline, probes cost the server no aborted connect, health never stays down
// while the server answers, ghost kills match identity, and nothing is left behind.
import assert from "node:assert/strict";
import { connect as netConnect } from "node:net";
import { describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { PrismaMariaDb } from "@prisma/adapter-mariadb";
import mariadb from "mariadb";
import { PrismaClient } from "../generated/prisma/client.ts";
import { resilience, withResilience, type StateChange } from "../src/index.ts";
import { SideConnections } from "../src/adapter/side.ts";
import { withParams } from "./support/clients.ts";
import { duplicateKeys, inFlight, missingKeys, uniqueKey } from "./support/data.ts";
import { freePort, type TestDatabase } from "./support/mariadb.ts";
import { startProxy } from "./support/proxy.ts";
import { faultSuite } from "./support/suite.ts";

let db: TestDatabase;
const client = faultSuite((started) => (db = started));

/** The app URL with another password: kept away from any Prisma call line (Prisma prints source lines). */
function urlWithWrongPassword(): string {
  const u = new URL(db.url);
  u.password = "not-the-password";
  return u.toString();
}
function urlWithDatabase(name: string): string {
  const u = new URL(db.url);
  u.pathname = `/${name}`;
  return u.toString();
}
function driverConfig() {
  return { host: db.host, port: db.port, user: db.user, password: db.password, database: db.database };
}

/** Settles an operation into { ok, ms, error } (ms from `t0`). */
function settle<T>(op: PromiseLike<T>, t0 = performance.now()) {
  return Promise.resolve(op).then(
    (value) => ({ ok: true as const, value, ms: performance.now() - t0, error: undefined as any }),
    (error) => ({ ok: false as const, value: undefined, ms: performance.now() - t0, error }),
  );
}

/** A client built by hand (own adapter factory), disconnected by the caller. */
function handBuilt(factory: any, adapterOptions: Parameters<typeof withResilience>[1] = {}, options: Parameters<typeof resilience>[0] = {}) {
  const base: any = new PrismaClient({ adapter: withResilience(factory, adapterOptions) });
  return base.$extends(resilience(options)) as PrismaClient;
}

describe("the fault table of docs/faults-and-caveats.md, with the defaults", () => {
  test("traffic silently dropped for 4 s under 8 readers: every operation ends, successfully, within drop + 3 s", { timeout: 30_000 }, async () => {
    const proxy = await startProxy(db.host, db.port);
    try {
      const { prisma } = client(proxy.urlFor(db.url)); // no socketTimeout, no tunePool
      await prisma.ledger.create({ data: { key: uniqueKey("drop-seed") } });
      const outcomes: Array<{ ok: boolean; ms: number; name?: string }> = [];
      let stop = false;
      const worker = async () => {
        while (!stop) {
          const r = await settle(prisma.ledger.findMany({ take: 2 }));
          outcomes.push({ ok: r.ok, ms: r.ms, name: r.error?.name ?? r.error?.code });
        }
      };
      const load = Promise.all(Array.from({ length: 8 }, worker));
      await sleep(500);
      const dropMs = 4000;
      proxy.mode = "drop";
      proxy.dropAll();
      await sleep(dropMs);
      proxy.mode = "pass";
      await sleep(3500);
      stop = true;
      const finished = await Promise.race([load.then(() => true), sleep(10_000).then(() => false)]);
      assert.ok(finished, "every worker finished: nothing hangs");
      const slowest = Math.max(...outcomes.map((o) => o.ms));
      const failed = outcomes.filter((o) => !o.ok);
      console.log(JSON.stringify({ operations: outcomes.length, failed: failed.length, slowestMs: Math.round(slowest) }));
      assert.deepEqual(failed, [], "every operation succeeded");
      assert.ok(slowest <= dropMs + 3000, `slowest operation ${Math.round(slowest)} ms (drop ${dropMs} ms)`);
    } finally {
      await proxy.close();
    }
  });

  test("wrong password, first query: < 2 s, a typed error naming authentication, never retried, no secret printed", { timeout: 30_000 }, async () => {
    const { prisma, retries } = client(urlWithWrongPassword());
    const r = await settle(prisma.user.count());
    assert.equal(r.ok, false);
    console.log(JSON.stringify({ wrongPasswordMs: Math.round(r.ms), code: r.error.code, reason: r.error.meta?.reason }));
    assert.ok(r.ms < 2000, `failed after ${Math.round(r.ms)} ms`);
    assert.equal(r.error.code, "RESILIENCE_CONNECT_FAILED");
    assert.equal(r.error.meta?.reason, "auth");
    assert.match(r.error.message, /authentication failed/);
    assert.equal(retries.length, 0, "never retried");
    assert.ok(!String(r.error.message).includes("not-the-password") && !String(r.error.message).includes(db.password), "no password in the message");
    assert.ok(!JSON.stringify(r.error.meta).includes("not-the-password"));
    // A second call fails as fast, with the same reason.
    const again = await settle(prisma.user.count());
    assert.equal(again.error?.meta?.reason, "auth");
    assert.ok(again.ms < 2000);
  });

  test("server down when the app starts, deadline 3000: DatabaseUnavailableError within deadline + outageWait", { timeout: 30_000 }, async () => {
    const deadline = 3000;
    const outageWait = 200;
    await db.kill9();
    try {
      const { prisma } = client(db.url, { deadline });
      const r = await settle(prisma.user.count());
      console.log(JSON.stringify({ downAtStartMs: Math.round(r.ms), name: r.error?.name, reason: r.error?.reason, attempts: r.error?.attempts }));
      assert.equal(r.ok, false);
      assert.equal(r.error.name, "DatabaseUnavailableError", String(r.error));
      assert.equal(r.error.reason, "connection refused");
      assert.ok(r.error.attempts > 1, `${r.error.attempts} attempts`);
      assert.ok(r.ms <= deadline + outageWait + 150, `failed after ${Math.round(r.ms)} ms`);
    } finally {
      await db.start();
    }
  });

  test("20 app connections killed one by one, server up: Aborted_connects unchanged, every operation succeeds", { timeout: 30_000 }, async () => {
    const { prisma } = client();
    await Promise.all(Array.from({ length: 4 }, () => prisma.user.count()));
    const abortedBefore = await db.statusCounter("Aborted_connects");
    const connectionsBefore = await db.statusCounter("Connections");
    const acknowledged: string[] = [];
    for (let i = 0; i < 20; i++) {
      const key = uniqueKey("abort");
      const marker = `abort_marker_${i}`;
      const op = inFlight(prisma.$queryRawUnsafe(`SELECT SLEEP(0.5), '${marker}'`));
      await db.waitForStatement(marker);
      await db.killConnections({ running: marker });
      await op; // a read: re-run on another connection
      await prisma.ledger.create({ data: { key } });
      acknowledged.push(key);
    }
    await sleep(800); // the last probes' rechecks
    const abortedAfter = await db.statusCounter("Aborted_connects");
    const connectionsAfter = await db.statusCounter("Connections");
    console.log(JSON.stringify({ abortedBefore, abortedAfter, connections: connectionsAfter - connectionsBefore }));
    assert.ok(connectionsAfter - connectionsBefore >= 20, "the kills were probed (complete connections)");
    assert.equal(abortedAfter, abortedBefore, "no aborted connect");
    assert.deepEqual(await missingKeys(db, acknowledged), []);
    assert.deepEqual(await duplicateKeys(db), []);
  });
});

describe("silent drops without socketTimeout", () => {
  test("a long legitimate query (SELECT SLEEP(20)) is asked about, never cut", { timeout: 40_000 }, async () => {
    const { prisma, retries } = client(withParams(db.url, { connectionLimit: 1 }));
    await prisma.user.count();
    await sleep(300);
    const before = await db.statusCounter("Connections");
    const r = await settle(prisma.$queryRaw`SELECT SLEEP(20) AS s`);
    const after = await db.statusCounter("Connections");
    assert.equal(r.ok, true, String(r.error));
    assert.equal(retries.length, 0);
    assert.ok(after - before >= 1, "the watchdog asked the server over a side connection");
  });

  test("the server is reachable but the connection went silent: its idle session is found, the read re-runs; a transaction's ghost is killed", { timeout: 30_000 }, async () => {
    const proxy = await startProxy(db.host, db.port);
    let ghost: number | undefined;
    try {
      const { prisma, retries } = client(withParams(proxy.urlFor(db.url), { connectionLimit: 2 }));
      const user = await prisma.user.create({ data: { email: `${uniqueKey("silent")}@example.com` } });
      let runs = 0;
      const t0 = performance.now();
      const result = await settle(
        prisma.$transaction(async (tx) => {
          runs++;
          await tx.user.update({ where: { id: user.id }, data: { balance: { increment: 1 } } });
          if (runs === 1) {
            const [{ id }] = await tx.$queryRaw<{ id: bigint }[]>`SELECT CONNECTION_ID() AS id`;
            ghost = Number(id);
            proxy.dropAll(); // this connection goes silent; new connections pass
          }
          return tx.user.findUniqueOrThrow({ where: { id: user.id } });
        }),
        t0,
      );
      assert.equal(result.ok, true, String(result.error));
      assert.equal(runs, 2);
      assert.equal(retries.length, 1);
      assert.ok(!(await db.appConnections()).some((c) => c.id === ghost), "the ghost session was killed");
      const [row] = await db.admin<any[]>(`SELECT balance FROM \`${db.database}\`.User WHERE id = ?`, [user.id]);
      assert.equal(Number(row.balance), 1, "incremented exactly once");
      console.log(JSON.stringify({ silentTransactionMs: Math.round(result.ms) }));
    } finally {
      if (ghost !== undefined) await db.admin(`KILL ${ghost}`).catch(() => undefined);
      await proxy.close();
    }
  });
});

describe("outages noticed by the watchdog", () => {
  test("calls in flight when the server becomes unreachable fail over at once, held callers resume when it answers: reads succeed, writes neither lost nor duplicated", { timeout: 30_000 }, async () => {
    const proxy = await startProxy(db.host, db.port);
    const changes: StateChange[] = [];
    try {
      const { prisma } = client(proxy.urlFor(db.url), { adapter: { onStateChange: (c) => changes.push(c) } });
      await prisma.user.count();
      const long = inFlight(settle(prisma.$queryRaw`SELECT SLEEP(2) AS s, 'outage_marker'`));
      await db.waitForStatement("outage_marker");
      const acknowledged: string[] = [];
      const unknown: string[] = [];
      const writes = Array.from({ length: 4 }, async (_, i) => {
        const key = uniqueKey(`outage-${i}`);
        const r = await settle(prisma.ledger.create({ data: { key } }));
        if (r.ok) acknowledged.push(key);
        else if (r.error?.name === "OutcomeUnknownError") unknown.push(key);
        else throw r.error;
      });
      proxy.mode = "drop";
      proxy.dropAll();
      const moreWrites = Array.from({ length: 4 }, async (_, i) => {
        const key = uniqueKey(`outage-late-${i}`);
        const r = await settle(prisma.ledger.create({ data: { key } }));
        if (r.ok) acknowledged.push(key);
        else if (r.error?.name === "OutcomeUnknownError") unknown.push(key);
        else throw r.error;
      });
      await sleep(3000);
      proxy.mode = "pass";
      const r = await long;
      await Promise.all([...writes, ...moreWrites]);
      assert.equal(r.ok, true, String(r.error));
      assert.deepEqual(changes.map((c) => c.state), ["down", "up"], JSON.stringify(changes));
      assert.equal(changes[0].reason, "no answer");
      assert.deepEqual(await missingKeys(db, acknowledged), [], "no acknowledged write lost");
      assert.deepEqual(await duplicateKeys(db), [], "no write duplicated");
      console.log(JSON.stringify({ acknowledged: acknowledged.length, unknown: unknown.length, longReadMs: Math.round(r.ms) }));
    } finally {
      await proxy.close();
    }
  });
});

describe("refusals", () => {
  test("unknown database at startup: < 2 s, reason unknown-database, never retried", { timeout: 30_000 }, async () => {
    // With rights on it, the server says "unknown database" (without, "access denied").
    await db.admin(`GRANT ALL ON \`no_such_db\`.* TO '${db.user}'@'%'`);
    try {
      const { prisma, retries } = client(urlWithDatabase("no_such_db"));
      const r = await settle(prisma.user.count());
      assert.equal(r.ok, false);
      assert.equal(r.error.meta?.reason, "unknown-database", String(r.error));
      assert.ok(r.ms < 2000, `failed after ${Math.round(r.ms)} ms`);
      assert.equal(retries.length, 0);
      const other = client(urlWithDatabase("not_granted_db"));
      const denied = await settle(other.prisma.user.count());
      assert.equal(denied.error?.meta?.reason, "access", String(denied.error));
      assert.ok(denied.ms < 2000);
    } finally {
      await db.admin(`REVOKE ALL ON \`no_such_db\`.* FROM '${db.user}'@'%'`);
    }
  });

  test("password changed while the app runs: the next call fails < 2 s naming authentication; back once it is fixed", { timeout: 30_000 }, async () => {
    const { prisma, retries } = client();
    await prisma.user.count();
    await db.admin(`ALTER USER '${db.user}'@'%' IDENTIFIED BY 'changed-${Date.now()}'`);
    try {
      await db.killConnections("all");
      const r = await settle(prisma.user.count());
      assert.equal(r.ok, false);
      assert.equal(r.error.meta?.reason, "auth", String(r.error));
      assert.ok(r.ms < 2000, `failed after ${Math.round(r.ms)} ms`);
      assert.equal(retries.length, 0);
    } finally {
      await db.admin(`ALTER USER '${db.user}'@'%' IDENTIFIED BY '${db.password}'`);
    }
    await sleep(1100);
    assert.equal(typeof (await prisma.user.count()), "number", "works again without a restart");
  });
});

describe("a statement's own access error is not a refusal", () => {
  test("1227 from SET GLOBAL and 1044 from USE: the statement fails as it is, the app goes on", { timeout: 30_000 }, async () => {
    const { prisma, retries } = client();
    await prisma.user.count();
    const denied = await settle(prisma.$executeRawUnsafe("SET GLOBAL max_connections = 150"));
    assert.equal(denied.ok, false);
    assert.notEqual(denied.error.code, "RESILIENCE_CONNECT_FAILED", String(denied.error));
    const noDb = await settle(prisma.$executeRawUnsafe("USE not_granted_db"));
    assert.equal(noDb.ok, false);
    assert.notEqual(noDb.error.code, "RESILIENCE_CONNECT_FAILED", String(noDb.error));
    assert.equal(retries.length, 0);
    assert.equal(typeof (await prisma.user.count()), "number");
  });
});

describe("probes", () => {
  test("a probe delayed by a stalled event loop is not taken as 'no answer'", { timeout: 30_000 }, async () => {
    const side = new SideConnections(() => driverConfig(), () => undefined);
    try {
      const pending = side.probe(50);
      const until = performance.now() + 400;
      while (performance.now() < until); // the event loop is blocked well past the probe's timeout
      assert.deepEqual(await pending, { ok: true });
    } finally {
      side.close();
    }
  });
});

describe("health never stays down while the server answers", () => {
  test("external pool with disposeExternalPool: after a restart the app works again with that pool", { timeout: 30_000 }, async () => {
    const pool = mariadb.createPool({ ...driverConfig(), connectionLimit: 4, acquireTimeout: 1500 });
    const changes: StateChange[] = [];
    const prisma = handBuilt(new PrismaMariaDb(pool as any, { disposeExternalPool: true }), { onStateChange: (c) => changes.push(c) }, { deadline: 8000 });
    try {
      await prisma.user.count();
      // The adapter learns an app-made pool's settings from its new connections.
      await db.killConnections("all");
      await prisma.user.count();
      await sleep(300);
      await db.kill9();
      let started = false;
      try {
        const op = inFlight(settle(prisma.user.count())); // notices the outage while the server is down
        await sleep(800);
        await db.start();
        started = true;
        const r = await op;
        assert.equal(r.ok, true, String(r.error));
      } finally {
        if (!started) await db.start();
      }
      assert.deepEqual(changes.map((c) => c.state), ["down", "up"], JSON.stringify(changes));
      assert.equal(typeof (await prisma.user.count()), "number");
    } finally {
      await prisma.$disconnect();
    }
  });

  test("the driver's `stream` option: probes go where the app's connections go", { timeout: 30_000 }, async () => {
    const changes: StateChange[] = [];
    const config = { user: db.user, password: db.password, database: db.database, stream: () => netConnect(db.port, db.host) };
    const prisma = handBuilt(new PrismaMariaDb(config as any), { onStateChange: (c) => changes.push(c) });
    try {
      await prisma.user.count();
      const op = inFlight(prisma.$queryRaw`SELECT SLEEP(5), 'stream_marker'`);
      await db.waitForStatement("stream_marker");
      await db.killConnections({ running: "stream_marker" });
      await op;
      await sleep(700);
      assert.deepEqual(changes.map((c) => c.state), [], "never down");
      assert.equal(typeof (await prisma.user.count()), "number");
    } finally {
      await prisma.$disconnect();
    }
  });

  test("probeTimeout below a round trip: an outage noticed that way ends once the server answers", { timeout: 30_000 }, async () => {
    const proxy = await startProxy(db.host, db.port);
    proxy.delayMs = 15;
    const changes: StateChange[] = [];
    const { prisma } = client(proxy.urlFor(db.url), { deadline: 10_000, adapter: { probeTimeout: 10, onStateChange: (c) => changes.push(c) } });
    try {
      await prisma.user.count();
      const op = inFlight(prisma.$queryRaw`SELECT SLEEP(5), 'rtt_marker'`);
      await db.waitForStatement("rtt_marker");
      await db.killConnections({ running: "rtt_marker" });
      await op;
      assert.equal(typeof (await prisma.user.count()), "number");
      assert.notEqual(changes.at(-1)?.state, "down", JSON.stringify(changes));
    } finally {
      await proxy.close();
    }
  });
});

describe("ghost kills match identity", () => {
  test("after a server restart, a different client's idle session holding the same thread id survives", { timeout: 30_000 }, async () => {
    // The app reaches the server through a proxy. While the other client takes thread ids on the
    // new server, the proxy sends the app's reconnects to a closed port: otherwise the pool's own
    // reconnects race it for the very id this test needs.
    const proxy = await startProxy(db.host, db.port);
    const closed = await freePort();
    const factory = withResilience(new PrismaMariaDb(proxy.urlFor(db.url)));
    const adapter: any = await factory.connect();
    const others: mariadb.Connection[] = [];
    try {
      const tx: any = await adapter.startTransaction();
      const threadId = tx.threadId as number;
      const conn = tx.inner.conn;
      await sleep(100); // the connection's identity has been read
      proxy.route = () => ({ host: db.host, port: closed });
      await db.restart();
      // Another client of the same user takes the same thread id on the new server.
      let holder: mariadb.Connection | undefined;
      for (let i = 0; i < threadId + 5 && !holder; i++) {
        const c = await mariadb.createConnection({ ...driverConfig() });
        c.on("error", () => undefined);
        others.push(c);
        if (c.threadId === threadId) holder = c;
        if ((c.threadId ?? 0) > threadId) break;
      }
      assert.ok(holder, `no connection got thread id ${threadId} (ids: ${others.map((c) => c.threadId).join(",")})`);
      proxy.route = undefined;
      await adapter.killGhost(threadId, conn);
      assert.equal((await holder!.query("SELECT 1 AS x"))[0].x, 1, "the other client's session is alive");
    } finally {
      for (const c of others) await c.end().catch(() => undefined);
      await adapter.dispose();
      await proxy.close();
    }
  });
});

describe("nothing left behind", () => {
  test("$disconnect() during an outage: no fresh pool afterwards, no socket, no timer; dispose() twice is fine", { timeout: 30_000 }, async () => {
    const resources = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout" || r === "TCPSocketWrap").length;
    const baseline = resources();
    const { prisma } = client(db.url, { deadline: 600 });
    await prisma.user.count();
    await db.kill9();
    try {
      await settle(prisma.user.count());
      await prisma.$disconnect();
    } finally {
      await db.start();
    }
    await sleep(700);
    const app = await db.appConnections();
    assert.deepEqual(app, [], "no pool was built after $disconnect()");
    await sleep(300);
    assert.ok(resources() <= baseline, `${resources()} timers/sockets vs ${baseline} before`);
    const adapter: any = await withResilience(new PrismaMariaDb(db.url)).connect();
    await adapter.dispose();
    await adapter.dispose();
  });
});

describe("options (docs/api.md)", () => {
  test("probeInterval, probeTimeout, outageWait and silentAfter have sane minimums", { timeout: 5000 }, () => {
    const factory = new PrismaMariaDb("mysql://u@127.0.0.1:1/x");
    assert.throws(() => withResilience(factory, { probeInterval: 1 }), TypeError);
    assert.throws(() => withResilience(factory, { probeTimeout: 1 }), TypeError);
    assert.throws(() => withResilience(factory, { outageWait: 0 }), TypeError);
    assert.throws(() => withResilience(factory, { silentAfter: 5 }), TypeError);
    withResilience(factory, { probeInterval: 10, probeTimeout: 10, outageWait: 50, silentAfter: 0 });
  });

  test("outageWait at its minimum: a caller waiting for a down server does not spin", { timeout: 30_000 }, async () => {
    const { prisma, retries } = client(db.url, { deadline: 1500, adapter: { outageWait: 50 } });
    await prisma.user.count();
    await db.kill9();
    try {
      const r = await settle(prisma.user.count());
      assert.equal(r.error?.name, "DatabaseUnavailableError");
      assert.ok(retries.length <= 1500 / 50 + 5, `${retries.length} attempts`);
    } finally {
      await db.start();
    }
  });
});
