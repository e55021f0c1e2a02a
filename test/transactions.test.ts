// Transactions under real faults: re-run whole on a fresh connection, never statement by statement,
// and never after a COMMIT that may have been applied.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { isOutcomeUnknown } from "../src/index.ts";
import { withParams } from "./support/clients.ts";
import { inFlight, ledgerRows, rejectionOf, uniqueKey } from "./support/data.ts";
import type { TestDatabase } from "./support/mariadb.ts";
import { faultSuite } from "./support/suite.ts";
import { startProxy } from "./support/proxy.ts";

let db: TestDatabase;
const client = faultSuite((started) => (db = started), { checkDuplicates: true });

for (const wrap of [true, false]) {
  const label = wrap ? "with withResilience" : "without the adapter wrapper";

  describe(`interactive transaction (${label})`, () => {
    test("killed between its statements: re-run whole, the first attempt left nothing behind", async () => {
      const { prisma, retries } = client(db.url, { wrap });
      const a = uniqueKey("itx-a");
      const b = uniqueKey("itx-b");
      let runs = 0;
      const result = await prisma.$transaction(async (tx) => {
        runs++;
        await tx.ledger.create({ data: { key: a } });
        if (runs === 1) {
          const [{ id }] = await tx.$queryRaw<{ id: bigint }[]>`SELECT CONNECTION_ID() AS id`;
          await db.admin(`KILL ${id}`);
          await sleep(20);
        }
        await tx.ledger.create({ data: { key: b } });
        return runs;
      });
      assert.equal(result, 2, "the callback ran twice and the second run's result came back");
      assert.equal(retries.length, 1);
      assert.equal(retries[0].operation, "$transaction");
      assert.equal(retries[0].errorClass, "connection-lost");
      assert.equal(await ledgerRows(db, a), 1, "the first attempt's row was rolled back");
      assert.equal(await ledgerRows(db, b), 1);
    });

    test("nothing inside it is retried statement by statement", async () => {
      const { prisma, retries } = client(db.url, { wrap });
      const key = uniqueKey("itx-no-stmt-retry");
      const seen: string[] = [];
      await prisma.$transaction(async (tx) => {
        const [{ id }] = await tx.$queryRaw<{ id: bigint }[]>`SELECT CONNECTION_ID() AS id`;
        if (seen.length === 0) {
          await db.admin(`KILL ${id}`);
          await sleep(20);
        }
        try {
          await tx.ledger.create({ data: { key } });
          seen.push("ok");
        } catch (e) {
          seen.push("failed");
          throw e;
        }
      });
      assert.deepEqual(seen, ["failed", "ok"], "the failed statement surfaced inside the callback, then the whole callback ran again");
      assert.equal(retries.length, 1);
      assert.equal(await ledgerRows(db, key), 1);
    });

    test("COMMIT reply lost (verifyCommits: false): typed unknown-outcome error, not re-run, the rows are there once", async () => {
      const proxy = await startProxy(db.host, db.port);
      try {
        const { prisma, retries } = client(withParams(proxy.urlFor(db.url), { connectionLimit: 2 }), { wrap, adapter: { verifyCommits: false } });
        const key = uniqueKey("itx-commit-lost");
        let runs = 0;
        await prisma.user.count();
        const lost = proxy.loseReplyTo("COMMIT");
        const error = await rejectionOf(
          prisma.$transaction(async (tx) => {
            runs++;
            await tx.ledger.create({ data: { key } });
            await tx.ledger.create({ data: { key: `${key}-2` } });
          }),
          "an unknown-outcome error",
        );
        await lost;
        assert.ok(isOutcomeUnknown(error), `got ${error}`);
        assert.equal(error.inFlight, "commit");
        assert.equal(error.operation, "$transaction");
        assert.equal(runs, 1, "the callback was not run again");
        assert.equal(retries.length, 0);
        await sleep(300);
        assert.equal(await ledgerRows(db, key), 1);
        assert.equal(await ledgerRows(db, `${key}-2`), 1);
      } finally {
        await proxy.close();
      }
    });

    test("a deadlock (conflict) re-runs the losing transaction whole", async () => {
      const { prisma, retries } = client(db.url, { wrap });
      const u1 = await prisma.user.create({ data: { email: `${uniqueKey("d1")}@example.com` } });
      const u2 = await prisma.user.create({ data: { email: `${uniqueKey("d2")}@example.com` } });
      const key = uniqueKey("deadlock");
      let bothLocked!: () => void;
      const gate = new Promise<void>((r) => (bothLocked = r));
      let arrived = 0;
      const arrive = async () => {
        if (++arrived === 2) bothLocked();
        await Promise.race([gate, sleep(2000)]);
      };
      const transfer = (from: number, to: number, label: string) =>
        prisma.$transaction(async (tx) => {
          await tx.user.update({ where: { id: from }, data: { balance: { decrement: 1 } } });
          await arrive();
          await tx.user.update({ where: { id: to }, data: { balance: { increment: 1 } } });
          await tx.ledger.create({ data: { key: `${key}-${label}` } });
        });
      await Promise.all([transfer(u1.id, u2.id, "x"), transfer(u2.id, u1.id, "y")]);
      assert.equal(retries.length, 1, "one of the two lost the deadlock and ran again");
      assert.equal(retries[0].errorClass, "conflict");
      const users = await db.admin<any[]>(`SELECT id, balance FROM \`${db.database}\`.User WHERE id IN (?, ?)`, [u1.id, u2.id]);
      assert.deepEqual(users.map((u) => Number(u.balance)), [0, 0], "each transfer applied exactly once");
      assert.equal(await ledgerRows(db, `${key}-x`), 1);
      assert.equal(await ledgerRows(db, `${key}-y`), 1);
    });
  });

  describe(`batch transaction (${label})`, () => {
    test("killed during its second statement: re-run whole, each write once", async () => {
      const { prisma, retries } = client(db.url, { wrap });
      const key = uniqueKey("batch");
      const lock = await db.adminConnection();
      await lock.query("LOCK TABLES `Post` WRITE");
      const batch = inFlight(prisma.$transaction([prisma.ledger.create({ data: { key } }), prisma.post.count()]));
      await db.waitForStatement("FROM `Post`");
      await db.killConnections({ running: "FROM `Post`" });
      await sleep(50);
      await lock.query("UNLOCK TABLES");
      await lock.end();
      const [row, posts] = await batch;
      assert.equal(row.key, key);
      assert.equal(posts, 0);
      assert.equal(retries.length, 1);
      assert.equal(await ledgerRows(db, key), 1);
    });
  });
}

describe("the package's own typed errors are final", () => {
  test("an OutcomeUnknownError thrown inside a transaction callback never re-runs it (no adapter wrapper)", async () => {
    // The callback writes through the outer client (the README warns against it): that autocommit
    // INSERT reaches the server, its reply is lost, the outer client reports OutcomeUnknownError.
    // Re-running the transaction would repeat a write that may have committed.
    const proxy = await startProxy(db.host, db.port);
    try {
      const { prisma, retries } = client(withParams(proxy.urlFor(db.url), { connectionLimit: 2 }), { wrap: false });
      const key = uniqueKey("typed-final");
      let runs = 0;
      await prisma.user.count();
      const lost = proxy.loseReplyTo("INSERT INTO `Ledger`");
      const error = await rejectionOf(
        prisma.$transaction(async (tx) => {
          runs++;
          await tx.user.count();
          await prisma.ledger.createMany({ data: [{ key }] });
        }),
        "an unknown-outcome error",
      );
      await lost;
      assert.ok(isOutcomeUnknown(error), `got ${error}`);
      assert.equal(runs, 1, "the transaction was not re-run");
      assert.equal(retries.length, 0);
      await sleep(300);
      assert.ok((await ledgerRows(db, key)) <= 1, "never written twice");
    } finally {
      await proxy.close();
    }
  });
});

describe("options", () => {
  test("retryTransactions: false leaves a failed transaction to the caller", async () => {
    const { prisma, retries } = client(db.url, { retryTransactions: false });
    const key = uniqueKey("no-tx-retry");
    let runs = 0;
    const error: any = await prisma
      .$transaction(async (tx) => {
        runs++;
        await tx.ledger.create({ data: { key } });
        const [{ id }] = await tx.$queryRaw<{ id: bigint }[]>`SELECT CONNECTION_ID() AS id`;
        await db.admin(`KILL ${id}`);
        await sleep(20);
        await tx.ledger.create({ data: { key: `${key}-2` } });
      })
      .catch((e) => e);
    assert.ok(error instanceof Error);
    assert.equal(runs, 1);
    assert.equal(retries.length, 0);
    assert.equal(await ledgerRows(db, key), 0, "the server rolled the transaction back");
  });

  test("retries: 0 turns retrying off for single operations too", async () => {
    const { prisma, retries } = client(db.url, { retries: 0 });
    const read = inFlight(prisma.$queryRaw`SELECT SLEEP(0.3), 'no_retry_marker'`);
    await db.waitForStatement("no_retry_marker");
    await db.killConnections({ running: "no_retry_marker" });
    await assert.rejects(read);
    assert.equal(retries.length, 0);
  });

  test("a nested tx.$transaction runs inside the outer one and is re-run with it", async () => {
    const { prisma, retries } = client();
    const key = uniqueKey("nested");
    let runs = 0;
    await prisma.$transaction(async (tx) => {
      runs++;
      await (tx as any).$transaction(async (inner: typeof tx) => {
        await inner.ledger.create({ data: { key } });
      });
      if (runs === 1) {
        const [{ id }] = await tx.$queryRaw<{ id: bigint }[]>`SELECT CONNECTION_ID() AS id`;
        await db.admin(`KILL ${id}`);
        await sleep(20);
      }
      await tx.ledger.count();
    });
    assert.equal(runs, 2);
    assert.equal(retries.length, 1);
    assert.equal(await ledgerRows(db, key), 1);
  });
});
