// Exactly-once (docs/exactly-once.md): when the reply to a COMMIT is lost, the adapter wrapper finds out whether
// it committed (the old session gone, then its commit mark) instead of reporting "unknown".
// COMMIT delivered, reply lost → the operation resolves with its result, one row, no re-run.
// COMMIT swallowed before the server → re-run once, one row. A silent drop at COMMIT with the server
// still holding the session → the session is ended before the mark is read.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { isOutcomeUnknown } from "../src/index.ts";
import { withParams } from "./support/clients.ts";
import { inFlight, ledgerRows, rejectionOf, uniqueKey } from "./support/data.ts";
import type { TestDatabase } from "./support/mariadb.ts";
import { faultSuite } from "./support/suite.ts";
import { happened, withProxy } from "./support/faults.ts";

let db: TestDatabase;
const client = faultSuite((started) => (db = started), { checkDuplicates: true });

/** The operations under test: each writes `key` (one Ledger row per key) and returns its result. */
const operations: Record<string, (prisma: any, key: string) => Promise<unknown>> = {
  create: (prisma, key) => prisma.ledger.create({ data: { key, amount: 1 } }),
  "interactive $transaction": (prisma, key) =>
    prisma.$transaction(async (tx: any) => {
      await tx.ledger.create({ data: { key, amount: 1 } });
      return "callback result";
    }),
  "batch $transaction": (prisma, key) => prisma.$transaction([prisma.ledger.create({ data: { key, amount: 1 } }), prisma.ledger.count({ where: { key } })]),
  createMany: (prisma, key) => prisma.ledger.createMany({ data: [{ key, amount: 1 }] }),
  $executeRaw: (prisma, key) => prisma.$executeRaw`INSERT INTO Ledger (\`key\`, amount) VALUES (${key}, 1)`,
};


for (const [name, operation] of Object.entries(operations)) {
  describe(`exactly-once: ${name}`, () => {
    test("COMMIT delivered, its reply lost: resolves with its result, one row, nothing re-run", async () => {
      await withProxy(db, async (proxy, url) => {
        const { prisma, retries } = client(url);
        const key = uniqueKey(`eo-lost-${name.replace(/\W/g, "")}`);
        await prisma.ledger.count(); // the pool is open, the commit table checked
        await sleep(200);
        const lost = proxy.loseReplyTo("COMMIT");
        const result: any = await operation(prisma, key);
        await happened(lost, "a COMMIT");
        if (name === "create") assert.equal(result.key, key);
        if (name === "interactive $transaction") assert.equal(result, "callback result");
        if (name === "batch $transaction") assert.equal(result[1], 1);
        if (name === "createMany") assert.equal(result.count, 1);
        if (name === "$executeRaw") assert.equal(result, 1);
        assert.equal(retries.length, 0, "nothing was re-run");
        assert.equal(await ledgerRows(db, key), 1);
      });
    });

    test("COMMIT swallowed before it reached the server: re-run once, one row", async () => {
      await withProxy(db, async (proxy, url) => {
        const { prisma, retries } = client(url);
        const key = uniqueKey(`eo-swallow-${name.replace(/\W/g, "")}`);
        await prisma.ledger.count();
        await sleep(200);
        const swallowed = proxy.swallow("COMMIT");
        await operation(prisma, key);
        await happened(swallowed, "a COMMIT");
        assert.equal(retries.length, 1, "re-run once");
        assert.equal(retries[0].errorClass, "connection-lost");
        assert.equal(await ledgerRows(db, key), 1);
      });
    });
  });
}

describe("exactly-once: the old session is ended before the mark is read", () => {
  test("silent drop at COMMIT (socketTimeout 1 s), the server still holding the session and its lock: ended, then re-run once", async () => {
    await withProxy(db, async (proxy, url) => {
      const { prisma, retries } = client(withParams(url, { socketTimeout: 1000 }));
      const user = await prisma.user.create({ data: { email: `${uniqueKey("eo-ghost")}@example.com` } });
      await sleep(200);
      let runs = 0;
      const started = performance.now();
      const result = await prisma.$transaction(async (tx: any) => {
        runs++;
        await tx.user.update({ where: { id: user.id }, data: { balance: { increment: 1 } } });
        if (runs === 1) proxy.dropAll(); // the COMMIT (and its mark) go nowhere; the session keeps its row lock
        return runs;
      });
      const tookMs = performance.now() - started;
      assert.equal(result, 2, "the first run was found not committed and the callback ran again");
      assert.equal(retries.length, 1);
      // Had the old session not been ended first, the re-run would wait for its row lock (innodb_lock_wait_timeout, 50 s).
      assert.ok(tookMs < 10_000, `done in ${Math.round(tookMs)} ms`);
      const [row] = await db.admin<any[]>(`SELECT balance FROM \`${db.database}\`.User WHERE id = ?`, [user.id]);
      assert.equal(Number(row.balance), 1, "applied once");
    });
  });

  test("a write cut off while the server is still running it (lock wait, socketTimeout): ended and seen gone, then exactly once", async () => {
    const { prisma, retries } = client(withParams(db.url, { socketTimeout: 1000, connectionLimit: 2 }), { deadline: 10_000 });
    const key = uniqueKey("eo-orphan");
    await db.admin(`INSERT INTO \`${db.database}\`.Ledger (\`key\`, amount) VALUES (?, 0)`, [key]);
    await prisma.ledger.count();
    const holder = await db.adminConnection();
    await holder.query("BEGIN");
    await holder.query("UPDATE Ledger SET amount = amount + 10 WHERE `key` = ?", [key]);
    const write = inFlight(prisma.ledger.updateMany({ where: { key }, data: { amount: { increment: 1 } } }));
    await sleep(1600); // the first attempt's socket timed out at 1 s, while the server still waits for the lock
    await holder.query("COMMIT");
    await holder.end();
    const result = await write;
    assert.equal(result.count, 1);
    assert.ok(retries.length >= 1, "the cut-off attempt was found not committed and re-run");
    const rows = await db.admin<any[]>(`SELECT amount FROM \`${db.database}\`.Ledger WHERE \`key\` = ?`, [key]);
    assert.equal(Number(rows[0].amount), 11, "the app's increment applied exactly once");
  });
});

describe("exactly-once: the mark's own failures", () => {
  test("a lock wait timeout (1205) on the mark fails only the mark: the COMMIT behind it decides, one row, nothing re-run", async () => {
    const { prisma, retries } = client(withParams(db.url, { connectionLimit: 1 }), { deadline: 10_000 });
    await prisma.$executeRaw`SET SESSION innodb_lock_wait_timeout = 1`;
    const holder = await db.adminConnection();
    await holder.query("BEGIN");
    await holder.query("SELECT * FROM _resilience_commits FOR UPDATE"); // every row and gap: the mark waits
    const key = uniqueKey("eo-mark-1205");
    try {
      const row = await prisma.ledger.create({ data: { key } });
      assert.equal(row.key, key);
    } finally {
      await holder.query("ROLLBACK");
      await holder.end();
    }
    assert.equal(retries.length, 0, "not re-run: the COMMIT succeeded");
    assert.equal(await ledgerRows(db, key), 1);
  });

  test("a transaction that only read, its COMMIT reply lost: nothing to lose, re-run once", async () => {
    await withProxy(db, async (proxy, url) => {
      const { prisma, retries } = client(url);
      await prisma.ledger.count();
      await sleep(200);
      let runs = 0;
      const lost = proxy.loseReplyTo("COMMIT");
      const result = await prisma.$transaction(async (tx: any) => {
        runs++;
        return tx.ledger.count({ where: { key: "no-such-key" } });
      });
      await happened(lost, "a COMMIT");
      assert.equal(result, 0);
      assert.equal(runs, 2, "re-run, not reported unknown");
      assert.equal(retries.length, 1);
    });
  });
});

describe("exactly-once: verification off", () => {
  test("verifyCommits: false: a lost COMMIT reply is OutcomeUnknownError, as before", async () => {
    await withProxy(db, async (proxy, url) => {
      const { prisma, retries } = client(url, { adapter: { verifyCommits: false } });
      const key = uniqueKey("eo-off");
      await prisma.ledger.count();
      const lost = proxy.loseReplyTo("COMMIT");
      const error = await rejectionOf(prisma.ledger.create({ data: { key } }));
      await happened(lost, "a COMMIT");
      assert.ok(isOutcomeUnknown(error), `got ${error?.name}`);
      assert.equal(retries.length, 0);
      await sleep(300);
      assert.equal(await ledgerRows(db, key), 1);
    });
  });
});
