// The silent-drop watchdog never cuts a statement it cannot prove silent, on real MariaDB servers:
// a connection whose session it cannot identify (CONNECTION_ID() is not the handshake's thread id,
// as behind ProxySQL or MaxScale) while the side connection reaches another server, and a large
// statement the server is still reading over a slow uplink (the server shows `Sleep` until it has
// the whole packet).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { withParams } from "./support/clients.ts";
import { uniqueKey } from "./support/data.ts";
import { startDatabase, type TestDatabase } from "./support/mariadb.ts";
import { startProxy } from "./support/proxy.ts";
import { faultSuite } from "./support/suite.ts";

let db: TestDatabase;
const client = faultSuite((started) => (db = started), { checkDuplicates: true });

function settle<T>(op: PromiseLike<T>) {
  const t0 = performance.now();
  return Promise.resolve(op).then(
    (value) => ({ ok: true as const, value, ms: performance.now() - t0, error: undefined as any }),
    (error) => ({ ok: false as const, value: undefined, ms: performance.now() - t0, error }),
  );
}

describe("a connection without a session identity", () => {
  let other: TestDatabase;
  before(async () => {
    other = await startDatabase();
    // The same account on the second server: the side connections log in there.
    await other.admin(`ALTER USER '${other.user}'@'%' IDENTIFIED BY ?`, [db.password]);
  });
  after(async () => {
    await other?.stop();
  });

  test("a lock wait silent for 2.5 s, with the side connection on another server, completes once and is never cut", { timeout: 30_000 }, async () => {
    const proxy = await startProxy(db.host, db.port);
    // The app's one pooled connection (the proxy's first) reaches `db`; every later connection (the
    // side connections) reaches `other`, as behind a TCP balancer over two servers.
    proxy.route = (n) => (n === 1 ? { host: db.host, port: db.port } : { host: other.host, port: other.port });
    // CONNECTION_ID() differs from the handshake's thread id (as behind a multiplexing proxy): the
    // connection's session cannot be identified.
    await db.admin(`GRANT BINLOG REPLAY ON *.* TO '${db.user}'@'%'`);
    await db.setGlobal("init_connect", "SET @@session.pseudo_thread_id = 4242424");
    // Thread ids on `db` well above any on `other`: no session there has the app's thread id.
    for (let i = 0; i < 60; i++) await (await db.adminConnection()).end();
    const lock = await db.adminConnection();
    try {
      const { prisma, retries } = client(withParams(proxy.urlFor(db.url), { connectionLimit: 1 }));
      const [seen] = await prisma.$queryRaw<{ id: bigint; port: number }[]>`SELECT CONNECTION_ID() AS id, @@port AS port`;
      assert.equal(Number(seen.id), 4242424, "CONNECTION_ID() is not the thread id");
      assert.equal(Number(seen.port), db.port, "the app's connection reached the first server");
      const user = await prisma.user.create({ data: { email: `${uniqueKey("noid")}@example.com` } });
      await lock.query("BEGIN");
      await lock.query("SELECT id FROM User WHERE id = ? FOR UPDATE", [user.id]);
      const release = sleep(2500).then(() => lock.query("COMMIT"));
      const checksBefore = await other.statusCounter("Connections");
      const r = await settle(prisma.user.update({ where: { id: user.id }, data: { balance: { increment: 1 } } }));
      await release;
      const checks = (await other.statusCounter("Connections")) - checksBefore;
      console.log(JSON.stringify({ ok: r.ok, ms: Math.round(r.ms), retries: retries.length, sideConnections: checks, error: r.error ? String(r.error.message).slice(0, 200) : null }));
      assert.equal(r.ok, true, `the update completed: ${r.error}`);
      assert.ok(r.ms >= 2000, `it waited for the lock (${Math.round(r.ms)} ms)`);
      assert.ok(checks >= 1, "the watchdog asked (over a side connection to the other server)");
      assert.equal(retries.length, 0, "not re-run");
      const [row] = await db.admin<any[]>(`SELECT balance FROM \`${db.database}\`.User WHERE id = ?`, [user.id]);
      assert.equal(Number(row.balance), 1, "incremented exactly once");
    } finally {
      await lock.end().catch(() => undefined);
      await db.setGlobal("init_connect", "");
      await db.admin(`REVOKE BINLOG REPLAY ON *.* FROM '${db.user}'@'%'`);
      await proxy.close();
    }
  });
});

describe("a large statement over a slow uplink", () => {
  // 60 000 bytes (TEXT holds 65 535) at 24 KB/s: the server reads the statement for about 2.5 s,
  // more than twice silentAfter.
  const BODY = 60_000;
  for (const variant of ["create", "unwrapped"] as const) {
    const what = variant === "create" ? "post.create() (defaults)" : "an unwrapped raw INSERT (verifyCommits: false)";
    test(`${what} of a 60 KB body is not cut while the server reads it: one row, no retry, no OutcomeUnknownError`, { timeout: 30_000 }, async () => {
      const proxy = await startProxy(db.host, db.port);
      proxy.throttleUp = 24 * 1024;
      try {
        const { prisma, retries } = client(proxy.urlFor(db.url), variant === "unwrapped" ? { adapter: { verifyCommits: false } } : {});
        const author = await prisma.user.create({ data: { email: `${uniqueKey("big")}@example.com` } });
        const title = uniqueKey("big");
        const body = "b".repeat(BODY);
        const r = await settle<unknown>(
          variant === "create"
            ? prisma.post.create({ data: { title, body, authorId: author.id }, select: { id: true } })
            : prisma.$executeRaw`INSERT INTO Post (title, body, authorId) VALUES (${title}, ${body}, ${author.id})`,
        );
        console.log(JSON.stringify({ variant, ok: r.ok, ms: Math.round(r.ms), retries: retries.length, error: r.error ? `${r.error.name}: ${String(r.error.message).slice(0, 160)}` : null }));
        assert.equal(r.ok, true, `the write succeeded: ${r.error?.name} ${r.error}`);
        assert.ok(r.ms >= 1500, `the statement took longer than silentAfter to send (${Math.round(r.ms)} ms)`);
        assert.equal(retries.length, 0, "not re-run");
        const rows = await db.admin<any[]>(`SELECT LENGTH(body) AS n FROM \`${db.database}\`.Post WHERE title = ?`, [title]);
        assert.equal(rows.length, 1, "exactly one row");
        assert.equal(Number(rows[0].n), BODY, "the whole body");
      } finally {
        await proxy.close();
      }
    });
  }
});

describe("a large statement whose reply is lost", () => {
  // It runs 0.5 s, so the server answers after the watchdog has first seen it waiting: the session
  // has been idle for less time than the statement has waited.
  test("the server has answered it (idle since): the connection is cut and the read re-runs", { timeout: 30_000 }, async () => {
    const proxy = await startProxy(db.host, db.port);
    try {
      const { prisma, retries } = client(withParams(proxy.urlFor(db.url), { connectionLimit: 2 }));
      await prisma.$queryRawUnsafe("SELECT 1");
      // The reply to this 60 KB statement never comes back on its connection (held until the end).
      const held = proxy.holdReplyTo("SELECT 'held-large'");
      const big = "q".repeat(60_000);
      const r = await settle(
        Promise.race([
          prisma.$queryRawUnsafe<{ n: bigint }[]>("SELECT 'held-large' AS m, SLEEP(0.5) AS s, LENGTH(?) AS n", big),
          sleep(10_000, "still waiting", { ref: false }).then((v) => Promise.reject(new Error(v))),
        ]),
      );
      held.release();
      console.log(JSON.stringify({ ok: r.ok, ms: Math.round(r.ms), retries: retries.length, error: r.error ? String(r.error.message).slice(0, 160) : null }));
      assert.equal(r.ok, true, `the read succeeded: ${r.error}`);
      assert.equal(Number((r.value as any)[0].n), 60_000);
      assert.equal(retries.length, 1, "re-run once, after the watchdog cut the connection");
    } finally {
      await proxy.close();
    }
  });
});
