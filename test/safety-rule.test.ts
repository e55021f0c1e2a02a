// The safety rule on wider work (README.md#the-safety-rule): an error the server answered means "not applied" and is
// re-run (deadlocks and lock-wait timeouts until the deadline), only a lost connection leaves an
// outcome open, and nothing that may have committed is re-run: not an app error thrown inside a
// transaction callback, not a transaction after a statement that commits implicitly, not a "read"
// that advances a sequence. Each test checks the data.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { isOutcomeUnknown } from "../src/index.ts";
import { withParams } from "./support/clients.ts";
import { inFlight, ledgerRows, rejectionOf, uniqueKey } from "./support/data.ts";
import type { TestDatabase } from "./support/mariadb.ts";
import { faultSuite } from "./support/suite.ts";

let db: TestDatabase;
const client = faultSuite((started) => (db = started), { checkDuplicates: true });

async function ledgerAmount(key: string): Promise<number> {
  const rows = await db.admin<any[]>(`SELECT COALESCE(SUM(amount), 0) AS s FROM \`${db.database}\`.Ledger WHERE \`key\` = ?`, [key]);
  return Number(rows[0].s);
}

/**
 * An admin transaction that holds the row lock of `second` and has written many rows (so InnoDB
 * picks the app's lighter statement as the deadlock victim). `collide()` then asks for the lock
 * of `first`, which the app's statement holds while it waits for `second`: a deadlock.
 */
async function deadlockPartner(first: string, second: string) {
  const conn = await db.adminConnection();
  await conn.query("BEGIN");
  await conn.query("INSERT INTO Ledger (`key`, amount) SELECT CONCAT('ballast-', seq), 0 FROM seq_1_to_200");
  await conn.query("UPDATE Ledger SET amount = amount + 10 WHERE `key` = ?", [second]);
  return {
    collide: () => conn.query("UPDATE Ledger SET amount = amount + 10 WHERE `key` = ?", [first]),
    finish: async () => {
      await conn.query("DELETE FROM Ledger WHERE `key` LIKE 'ballast-%'");
      await conn.query("COMMIT");
      await conn.end();
    },
  };
}

for (const wrap of [true, false]) {
  const label = wrap ? "with withResilience" : "without the adapter wrapper";

  describe(`a deadlock on an autocommit write is re-run, not reported unknown (${label})`, () => {
    const writes = {
      updateMany: (prisma: any, a: string, b: string) => prisma.ledger.updateMany({ where: { key: { in: [a, b] } }, data: { amount: { increment: 1 } } }),
      $executeRaw: (prisma: any, a: string, b: string) => prisma.$executeRaw`UPDATE Ledger SET amount = amount + 1 WHERE \`key\` IN (${a}, ${b})`,
    };
    for (const [name, write] of Object.entries(writes)) {
      test(`${name}: the deadlock victim runs again and applies once`, async () => {
        const { prisma, retries } = client(db.url, { wrap });
        const a = uniqueKey(`dl-${name}-a`);
        const b = uniqueKey(`dl-${name}-b`);
        await db.admin(`INSERT INTO \`${db.database}\`.Ledger (\`key\`, amount) VALUES (?, 0), (?, 0)`, [a, b]);
        const partner = await deadlockPartner(a, b);
        const result = inFlight(write(prisma, a, b));
        await db.waitForStatement("UPDATE");
        await sleep(100); // the app's UPDATE holds `a` and waits for `b`
        await partner.collide(); // InnoDB picks the app's statement as the victim (1213)
        await partner.finish();
        const r: any = await result;
        assert.equal(typeof r === "object" ? r.count : Number(r), 2, "the re-run updated both rows");
        assert.ok(retries.length >= 1, "it was re-run");
        assert.equal(retries[0].errorClass, "conflict");
        assert.equal(retries[0].counted, false, "a conflict does not use up `retries`");
        assert.equal(await ledgerAmount(a), 11, "the app's increment applied once, the partner's once");
        assert.equal(await ledgerAmount(b), 11);
      });
    }

    test("a lock wait timeout (1205) on an autocommit write is re-run after the lock is gone", async () => {
      const { prisma, retries } = client(withParams(db.url, { connectionLimit: 1 }), { wrap, deadline: 10_000 });
      const key = uniqueKey("lockwait");
      await db.admin(`INSERT INTO \`${db.database}\`.Ledger (\`key\`, amount) VALUES (?, 0)`, [key]);
      await prisma.$executeRaw`SET SESSION innodb_lock_wait_timeout = 1`;
      const holder = await db.adminConnection();
      await holder.query("BEGIN");
      await holder.query("UPDATE Ledger SET amount = amount + 10 WHERE `key` = ?", [key]);
      const result = inFlight(prisma.ledger.updateMany({ where: { key }, data: { amount: { increment: 1 } } }));
      await sleep(1500); // the first attempt times out waiting for the lock after 1 s
      await holder.query("COMMIT");
      await holder.end();
      assert.equal((await result).count, 1);
      assert.ok(retries.some((r) => r.errorClass === "conflict"), "the 1205 was retried as a conflict");
      assert.equal(await ledgerAmount(key), 11, "applied once");
    });
  });

  describe(`deadlocks in interactive transactions all end in success (${label})`, () => {
    test("8 workers increment two of three hot counters in random order: no failure, counters exact", async () => {
      const { prisma, retries } = client(db.url, { wrap, deadline: 20_000 });
      const keys = [uniqueKey("hot-0"), uniqueKey("hot-1"), uniqueKey("hot-2")];
      for (const k of keys) await db.admin(`INSERT INTO \`${db.database}\`.Ledger (\`key\`, amount) VALUES (?, 0)`, [k]);
      const acknowledged = new Map(keys.map((k) => [k, 0]));
      const failures: unknown[] = [];
      const stopAt = performance.now() + 3000;
      const worker = async (w: number) => {
        let i = 0;
        while (performance.now() < stopAt) {
          const first = keys[(w + i) % 3];
          const second = keys[(w + i + 1 + (i % 2)) % 3];
          i++;
          try {
            await prisma.$transaction(async (tx: any) => {
              await tx.$executeRaw`UPDATE Ledger SET amount = amount + 1 WHERE \`key\` = ${first}`;
              await sleep(2);
              await tx.$executeRaw`UPDATE Ledger SET amount = amount + 1 WHERE \`key\` = ${second}`;
            });
            acknowledged.set(first, acknowledged.get(first)! + 1);
            acknowledged.set(second, acknowledged.get(second)! + 1);
          } catch (error) {
            failures.push(error);
          }
        }
      };
      await Promise.all(Array.from({ length: 8 }, (_, w) => worker(w)));
      const conflicts = retries.filter((r) => r.errorClass === "conflict").length;
      console.log(JSON.stringify({ label, transactions: [...acknowledged.values()].reduce((a, b) => a + b) / 2, conflicts, failures: failures.length }));
      assert.deepEqual(failures.map((e: any) => `${e?.name} ${e?.code}`), [], "no transaction failed");
      assert.ok(conflicts > 0, "the workload did deadlock");
      for (const k of keys) assert.equal(await ledgerAmount(k), acknowledged.get(k), `counter ${k} equals its acknowledged increments`);
    });
  });

  describe(`errors that are not the database's never re-run a transaction (${label})`, () => {
    for (const code of ["ECONNRESET", "EPIPE", "ECONNREFUSED"]) {
      test(`an ${code} from the app's own code inside the callback: one run, rolled back, rethrown`, async () => {
        const { prisma, retries } = client(db.url, { wrap });
        const key = uniqueKey(`foreign-${code}`);
        let runs = 0;
        const thrown = Object.assign(new Error(`request to https://api.example.test failed, reason: ${code}`), { code, name: "FetchError" });
        const error = await rejectionOf(
          prisma.$transaction(async (tx: any) => {
            runs++;
            await tx.ledger.create({ data: { key } });
            throw thrown;
          }),
        );
        assert.equal(error, thrown, "the app's error comes back as it was thrown");
        assert.equal(runs, 1, "the callback ran once");
        assert.equal(retries.length, 0);
        assert.equal(await ledgerRows(db, key), 0, "its write was rolled back");
      });
    }
  });

  describe(`a transaction that committed implicitly is never re-run (${label})`, () => {
    const boundaries = {
      "CREATE TABLE": (n: string) => `CREATE TABLE IF NOT EXISTS implicit_${n} (id INT)`,
      "a raw COMMIT": () => "COMMIT",
      TRUNCATE: (n: string) => `TRUNCATE TABLE implicit_trunc_${n}`,
    };
    for (const [name, sql] of Object.entries(boundaries)) {
      test(`interactive: ${name}, then the connection is killed: the first write stays once, nothing re-runs`, async () => {
        const { prisma, retries } = client(db.url, { wrap });
        const key = uniqueKey("implicit");
        const n = key.replace(/[^a-z0-9]/gi, "_");
        await db.admin(`CREATE TABLE IF NOT EXISTS \`${db.database}\`.implicit_trunc_${n} (id INT)`);
        let runs = 0;
        const result = rejectionOf(
          prisma.$transaction(async (tx: any) => {
            runs++;
            await tx.ledger.create({ data: { key } });
            await tx.$executeRawUnsafe(sql(n));
            await tx.$queryRaw`SELECT SLEEP(5) AS implicit_probe`;
          }),
        );
        await db.waitForStatement("implicit_probe");
        await db.killConnections({ running: "implicit_probe" });
        const error = await result;
        assert.equal(runs, 1, "the callback was not run again");
        assert.equal(retries.length, 0);
        if (wrap) {
          assert.ok(isOutcomeUnknown(error), `got ${error?.name} ${error?.code}`);
          assert.equal(error.inFlight, "implicit-commit");
        }
        assert.equal(await ledgerRows(db, key), 1, "the write that committed implicitly is there once");
        await db.admin(`DROP TABLE IF EXISTS \`${db.database}\`.implicit_${n}, \`${db.database}\`.implicit_trunc_${n}`);
      });
    }

    test("batch: CREATE TABLE between the writes, killed afterwards: the first write stays once", async () => {
      const { prisma, retries } = client(db.url, { wrap });
      const key = uniqueKey("implicit-batch");
      const n = key.replace(/[^a-z0-9]/gi, "_");
      const result = rejectionOf(
        prisma.$transaction([
          prisma.ledger.create({ data: { key } }),
          prisma.$executeRawUnsafe(`CREATE TABLE IF NOT EXISTS implicit_${n} (id INT)`),
          prisma.$queryRaw`SELECT SLEEP(5) AS implicit_batch_probe`,
        ]),
      );
      await db.waitForStatement("implicit_batch_probe");
      await db.killConnections({ running: "implicit_batch_probe" });
      const error = await result;
      assert.equal(retries.length, 0, `not re-run (got ${error?.name} ${error?.code})`);
      // Without the wrapper the query hook saw the CREATE TABLE (a batch is otherwise "unknown" anyway).
      assert.ok(isOutcomeUnknown(error), `got ${error?.name} ${error?.code}`);
      assert.equal(error.inFlight, "implicit-commit");
      assert.equal(await ledgerRows(db, key), 1);
      await db.admin(`DROP TABLE IF EXISTS \`${db.database}\`.implicit_${n}`);
    });
  });
}

describe("a raw 'read' that writes is not re-run", () => {
  test("SELECT NEXT VALUE FOR seq, killed in flight: unknown outcome, the sequence advanced once", async () => {
    const { prisma, retries } = client();
    await db.admin(`CREATE SEQUENCE IF NOT EXISTS \`${db.database}\`.safety_seq NOCACHE`);
    const result = rejectionOf(prisma.$queryRawUnsafe("SELECT NEXT VALUE FOR safety_seq AS v, SLEEP(5) AS seq_probe"));
    await db.waitForStatement("seq_probe");
    await db.killConnections({ running: "seq_probe" });
    const error = await result;
    assert.ok(isOutcomeUnknown(error), `got ${error?.name} ${error?.code}`);
    assert.equal(retries.length, 0);
    const [row] = await db.admin<any[]>(`SELECT NEXT VALUE FOR \`${db.database}\`.safety_seq AS v`);
    assert.equal(Number(row.v), 2, "one value was taken by the app, not two");
    await db.admin(`DROP SEQUENCE \`${db.database}\`.safety_seq`);
  });
});

describe("P2028 (Prisma's maxWait) is not an outage", () => {
  test("30 concurrent transactions on a pool of 2: at most one retry each, each write once", async () => {
    let attempts = 0;
    const { prisma, retries } = client(withParams(db.url, { connectionLimit: 2 }), { deadline: 20_000 });
    const keys = Array.from({ length: 30 }, (_, i) => uniqueKey(`maxwait-${i}`));
    const outcomes = await Promise.allSettled(
      keys.map((key) =>
        prisma.$transaction(
          async (tx: any) => {
            attempts++;
            await tx.ledger.create({ data: { key } });
            await tx.$queryRaw`SELECT SLEEP(0.3)`;
          },
          { maxWait: 500, timeout: 5000 },
        ),
      ),
    );
    const failed = outcomes.filter((o) => o.status === "rejected") as PromiseRejectedResult[];
    const startTimeouts = retries.filter((r) => (r.error as any)?.code === "P2028");
    console.log(JSON.stringify({ callbacks: attempts, retries: retries.length, p2028Retries: startTimeouts.length, failed: failed.length }));
    assert.ok(startTimeouts.length > 0, "the pool was saturated: some transactions could not start in maxWait");
    assert.ok(retries.length <= keys.length, `at most one retry per transaction (${retries.length})`);
    assert.ok(startTimeouts.every((r) => r.counted), "each P2028 retry used up `retries`");
    for (const [i, o] of outcomes.entries()) {
      assert.equal(await ledgerRows(db, keys[i]), o.status === "fulfilled" ? 1 : 0, `key ${i}: ${o.status}`);
    }
  });
});
