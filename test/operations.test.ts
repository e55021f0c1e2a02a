// Single operations (outside transactions) under real faults, with withResilience() on the adapter:
// each fault row of docs/faults-and-caveats.md, the attempts counted through onRetry, and the data checked.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { isOutcomeUnknown } from "../src/index.ts";
import { withParams } from "./support/clients.ts";
import { inFlight, ledgerRows, rejectionOf, uniqueKey } from "./support/data.ts";
import type { TestDatabase } from "./support/mariadb.ts";
import { faultSuite } from "./support/suite.ts";
import { startProxy, type FaultProxy } from "./support/proxy.ts";

let db: TestDatabase;
const client = faultSuite((started) => (db = started), { checkDuplicates: true });

/**
 * The app's URL with a wrong password. Built here, far from any Prisma call: Prisma prints the
 * source lines around a failing call in its error message.
 */
function wrongPasswordUrl(): string {
  const u = new URL(db.url);
  u.password = "definitely-wrong";
  return withParams(u.toString(), { acquireTimeout: 1000 });
}

/** Holds LOCK TABLES … WRITE from an admin session until released: app statements on it wait. */
async function lockTable(table: string) {
  const conn = await db.adminConnection();
  await conn.query(`LOCK TABLES \`${table}\` WRITE`);
  return {
    release: async () => {
      await conn.query("UNLOCK TABLES");
      await conn.end();
    },
  };
}

describe("idle connection closed by the server (FIN)", () => {
  test("KILL of idle connections: the next operation succeeds with no retry needed", async () => {
    const { prisma, retries } = client();
    const key = uniqueKey("idle-kill");
    await prisma.ledger.create({ data: { key } });
    assert.ok((await db.killConnections("idle")).length > 0, "there were idle connections to kill");
    await sleep(50);
    assert.equal((await prisma.ledger.findMany({ where: { key } })).length, 1);
    await prisma.ledger.create({ data: { key: `${key}-2` } });
    assert.equal(retries.length, 0);
    assert.equal(await ledgerRows(db, `${key}-2`), 1);
  });
});

describe("connection reset right after its last use (ECONNRESET / EPIPE)", () => {
  let proxy: FaultProxy;
  before(async () => {
    proxy = await startProxy(db.host, db.port);
    proxy.hideServerClose = true;
  });
  after(async () => {
    await proxy.close();
  });
  const url = () => withParams(proxy.urlFor(db.url), { connectionLimit: 1 });
  /** The app's one pooled connection is the proxy's only link (side connections of the wrapper have closed). */
  async function onlyTheAppsLink() {
    const deadline = performance.now() + 2000;
    while (proxy.liveLinks > 1 && performance.now() < deadline) await sleep(10);
  }

  test("a read is retried once and succeeds", async () => {
    const { prisma, retries } = client(url());
    await prisma.user.count();
    await onlyTheAppsLink();
    assert.equal(proxy.staleAll(), 1);
    assert.equal(await prisma.user.count(), 0);
    assert.equal(retries.length, 1);
    assert.equal(retries[0].errorClass, "connection-lost");
    assert.match(String((retries[0].error as any).code), /ECONNRESET|EPIPE/);
  });

  test("a create whose BEGIN hit the dead connection is retried once: one row", async () => {
    const { prisma, retries } = client(url());
    const key = uniqueKey("begin-reset");
    await prisma.user.count();
    await onlyTheAppsLink();
    assert.equal(proxy.staleAll(), 1);
    await prisma.ledger.create({ data: { key } });
    assert.equal(retries.length, 1);
    assert.equal(await ledgerRows(db, key), 1);
  });

  test("the server killed the connection (its FIN hidden): the next read is retried once", async () => {
    const { prisma, retries } = client(url());
    await prisma.user.count();
    await db.killConnections("all");
    assert.equal(await prisma.user.count(), 0);
    assert.equal(retries.length, 1);
  });
});

describe("connection killed during a model query (P2039 45009)", () => {
  test("a read blocked on a lock, killed: retried once, succeeds", async () => {
    const { prisma, retries } = client();
    const key = uniqueKey("read-kill");
    await prisma.ledger.create({ data: { key } });
    const lock = await lockTable("Ledger");
    const read = inFlight(prisma.ledger.findMany({ where: { key } }));
    await db.waitForStatement("FROM `Ledger`");
    await db.killConnections({ running: "FROM `Ledger`" });
    await sleep(50);
    await lock.release();
    assert.equal((await read).length, 1);
    assert.equal(retries.length, 1);
    assert.equal((retries[0].error as any).code, "P2039");
    assert.equal(retries[0].operation, "findMany");
    assert.equal(retries[0].model, "Ledger");
  });

  test("a create killed at its INSERT (inside Prisma's transaction): retried once, exactly one row", async () => {
    const { prisma, retries } = client();
    const key = uniqueKey("create-kill");
    const lock = await lockTable("Ledger");
    const write = inFlight(prisma.ledger.create({ data: { key } }));
    await db.waitForStatement("INSERT INTO `Ledger`");
    await db.killConnections({ running: "INSERT INTO `Ledger`" });
    await sleep(50);
    await lock.release();
    const row = await write;
    assert.equal(row.key, key);
    assert.equal(retries.length, 1);
    assert.equal(await ledgerRows(db, key), 1);
  });

  test("an update killed at its UPDATE: retried once, applied once", async () => {
    const { prisma, retries } = client();
    const user = await prisma.user.create({ data: { email: `${uniqueKey("u")}@example.com` } });
    const lock = await lockTable("User");
    const write = inFlight(prisma.user.update({ where: { id: user.id }, data: { balance: { increment: 5 } } }));
    await db.waitForStatement("`User`");
    await db.killConnections({ running: "`User`" });
    await sleep(50);
    await lock.release();
    assert.equal((await write).balance, 5);
    assert.equal(retries.length, 1);
    const [row] = await db.admin<any[]>(`SELECT balance FROM \`${db.database}\`.User WHERE id = ?`, [user.id]);
    assert.equal(Number(row.balance), 5, "incremented once, not twice");
  });

  test("an autocommit write killed in flight is NOT retried: typed unknown-outcome error (verifyCommits: false)", async () => {
    const { prisma, retries } = client(db.url, { adapter: { verifyCommits: false } });
    const key = uniqueKey("autocommit-kill");
    const lock = await lockTable("Ledger");
    const write = rejectionOf(prisma.ledger.createMany({ data: [{ key }] }), "an unknown-outcome error");
    await db.waitForStatement("INSERT INTO `Ledger`");
    await db.killConnections({ running: "INSERT INTO `Ledger`" });
    await lock.release();
    const error = await write;
    assert.ok(isOutcomeUnknown(error), `got ${error}`);
    assert.equal(error.inFlight, "autocommit");
    assert.equal(error.statement, "INSERT");
    assert.equal(error.operation, "createMany");
    assert.equal((error.cause as any).code, "P2039");
    assert.equal(retries.length, 0);
    // It was killed while waiting for the lock, so it never ran: the caller was told "unknown", not "failed".
    assert.equal(await ledgerRows(db, key), 0);
  });
});

describe("connection killed during a raw query (P2010)", () => {
  test("$queryRaw SELECT killed: retried once, succeeds", async () => {
    const { prisma, retries } = client();
    const read = inFlight(prisma.$queryRaw<{ v: number }[]>`SELECT SLEEP(0.5) AS v, 'raw_marker' AS m`);
    await db.waitForStatement("raw_marker");
    // Only the first run is killed; the retry sleeps its 0.5 s and answers.
    await db.killConnections({ running: "raw_marker" });
    const rows = await read;
    assert.equal(rows.length, 1);
    assert.equal(retries.length, 1);
    assert.equal((retries[0].error as any).code, "P2010");
    assert.equal(retries[0].operation, "$queryRaw");
  });

  test("$executeRaw INSERT killed: not retried, unknown outcome, no duplicate (verifyCommits: false)", async () => {
    const { prisma, retries } = client(db.url, { adapter: { verifyCommits: false } });
    const key = uniqueKey("raw-insert-kill");
    const lock = await lockTable("Ledger");
    const write = rejectionOf(prisma.$executeRaw`INSERT INTO Ledger (\`key\`, amount) VALUES (${key}, 1)`, "an unknown-outcome error");
    await db.waitForStatement("INSERT INTO Ledger");
    await db.killConnections({ running: "INSERT INTO Ledger" });
    await lock.release();
    const error = await write;
    assert.ok(isOutcomeUnknown(error), `got ${error}`);
    assert.equal(retries.length, 0);
    assert.ok((await ledgerRows(db, key)) <= 1);
  });
});

describe("COMMIT reply lost", () => {
  test("a create whose COMMIT reached the server but whose reply was lost: typed error, no retry, one row (verifyCommits: false)", async () => {
    const proxy = await startProxy(db.host, db.port);
    try {
      const { prisma, retries } = client(withParams(proxy.urlFor(db.url), { connectionLimit: 2 }), { adapter: { verifyCommits: false } });
      const key = uniqueKey("commit-lost");
      await prisma.user.count();
      const lost = proxy.loseReplyTo("COMMIT");
      const error = await rejectionOf(prisma.ledger.create({ data: { key } }), "an unknown-outcome error");
      await lost;
      assert.ok(isOutcomeUnknown(error), `got ${error}`);
      assert.equal(error.inFlight, "commit");
      assert.equal(error.operation, "create");
      assert.equal(error.model, "Ledger");
      assert.match(error.message, /may or may not have been applied/);
      assert.equal(retries.length, 0, "never retried");
      await sleep(300);
      assert.equal(await ledgerRows(db, key), 1, "the COMMIT was applied: exactly one row");
    } finally {
      await proxy.close();
    }
  });
});

describe("errors that must pass through unchanged", () => {
  test("unique constraint violation: P2002, zero retries", async () => {
    const { prisma, retries } = client();
    const email = `${uniqueKey("dup")}@example.com`;
    await prisma.user.create({ data: { email } });
    const error: any = await prisma.user.create({ data: { email } }).catch((e) => e);
    assert.equal(error.name, "PrismaClientKnownRequestError");
    assert.equal(error.code, "P2002");
    assert.equal(retries.length, 0);
  });

  test("syntax error: P2010 with 1064, zero retries", async () => {
    const { prisma, retries } = client();
    const error: any = await prisma.$queryRawUnsafe("SELEC 1").catch((e) => e);
    assert.equal(error.code, "P2010");
    assert.match(error.message, /1064/);
    assert.equal(retries.length, 0);
  });

  test("wrong password: fails once, not retried, a ConnectFailedError naming authentication", async () => {
    const { prisma, retries } = client(wrongPasswordUrl());
    const started = performance.now();
    const error: any = await prisma.user.count().catch((e) => e);
    const elapsed = performance.now() - started;
    assert.equal(error.name, "ConnectFailedError");
    assert.equal(error.code, "RESILIENCE_CONNECT_FAILED");
    assert.equal(error.reason, "auth");
    assert.match(String(error.message), /1045|Access denied|authentication failed/);
    assert.ok(!String(error.message).includes("definitely-wrong"), "no password in the message");
    assert.equal(retries.length, 0);
    assert.ok(elapsed < 2000, `named at once (${Math.round(elapsed)} ms), no retries`);
  });
});

describe("server restart", () => {
  test("kill -9 and restart: the next operations succeed, data intact", async () => {
    if (!db.embedded) throw new Error("needs an embedded server");
    const { prisma, retries } = client();
    const key = uniqueKey("restart");
    await prisma.ledger.create({ data: { key } });
    await db.restart();
    assert.equal((await prisma.ledger.findMany({ where: { key } })).length, 1);
    await prisma.ledger.create({ data: { key: `${key}-after` } });
    assert.ok(retries.length <= 1, `at most one retry (${retries.length})`);
    assert.equal(await ledgerRows(db, key), 1);
    assert.equal(await ledgerRows(db, `${key}-after`), 1);
  });

  test("server down, back while the first attempt waits: succeeds after one retry (unavailable)", async () => {
    if (!db.embedded) throw new Error("needs an embedded server");
    const { prisma, retries } = client(withParams(db.url, { acquireTimeout: 1000 }));
    const key = uniqueKey("down");
    await prisma.user.count();
    await db.kill9();
    const write = inFlight(prisma.ledger.create({ data: { key } }));
    await sleep(1300);
    await db.start();
    const row = await write;
    assert.equal(row.key, key);
    assert.ok(retries.length >= 1, "retried while the server was down");
    assert.ok(retries.every((r) => r.errorClass === "unavailable" || r.errorClass === "connection-lost"));
    assert.equal(await ledgerRows(db, key), 1);
  });
});
