// $disconnect() while a transaction is in flight: what the app asked for is to stop. Nothing is
// re-run after it (a re-run would run the work again on a fresh pool after the app let go), and the
// package leaves no more connections open than bare Prisma does. (Prisma 7.10 itself opens a fresh
// pool when a transaction is cancelled by $disconnect(): measured 10 connections left, bare or not;
// a second $disconnect() closes them. See README, Caveats.)
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { bareClient } from "./support/clients.ts";
import { uniqueKey } from "./support/data.ts";
import type { TestDatabase } from "./support/mariadb.ts";
import { faultSuite } from "./support/suite.ts";

let db: TestDatabase;
const client = faultSuite((started) => (db = started));

async function rows(key: string): Promise<number> {
  const r = await db.admin<any[]>(`SELECT COUNT(*) AS n FROM \`${db.database}\`.Ledger WHERE \`key\` = ?`, [key]);
  return Number(r[0].n);
}

/** Starts a transaction that writes then sleeps 2 s, calls $disconnect() during the sleep; what happened. */
async function interruptByDisconnect(prisma: any) {
  await prisma.user.count();
  const key = uniqueKey("disconnect");
  const tx = prisma
    .$transaction(
      async (t: any) => {
        await t.ledger.create({ data: { key, amount: 1 } });
        await t.$queryRaw`SELECT SLEEP(2)`;
        return "committed";
      },
      { timeout: 10_000 },
    )
    .then(
      (value: unknown) => ({ value, error: undefined as unknown }),
      (error: unknown) => ({ value: undefined, error }),
    );
  await sleep(500); // the transaction is in its SLEEP
  await Promise.race([prisma.$disconnect(), sleep(10_000, undefined, { ref: false }).then(() => assert.fail("$disconnect() did not end within 10 s"))]);
  const outcome = await Promise.race([tx, sleep(15_000, undefined, { ref: false }).then(() => assert.fail("the transaction did not settle within 15 s"))]);
  await sleep(1000); // a re-run would have reconnected and written by now
  const left = (await db.appConnections()).length;
  const rows = await db.admin<any[]>(`SELECT COUNT(*) AS n FROM \`${db.database}\`.Ledger WHERE \`key\` = ?`, [key]);
  await prisma.$disconnect();
  // Gone from the server before the next measure (bounded: 5 s).
  for (const stopAt = performance.now() + 5000; (await db.appConnections()).length > 0; await sleep(50)) {
    assert.ok(performance.now() < stopAt, "a second $disconnect() closed every connection within 5 s");
  }
  return { outcome, left, rows: Number(rows[0].n) };
}

describe("$disconnect() with a transaction in flight", () => {
  for (const wrap of [true, false]) {
    test(`${wrap ? "with" : "without"} withResilience: not re-run, nothing written, no more connections left than bare Prisma leaves`, async () => {
      const { prisma, retries } = client(db.url, { wrap });
      const r = await interruptByDisconnect(prisma);
      const bareClientForComparison = bareClient(db.url);
      const bare = await interruptByDisconnect(bareClientForComparison).finally(() => bareClientForComparison.$disconnect());
      const e = r.outcome.error as any;
      console.log(`    ${wrap ? "wrapped" : "unwrapped"}: ${e ? `${e.name} ${e.code ?? ""}` : r.outcome.value}; retries ${retries.length}; rows ${r.rows}; connections left ${r.left} (bare Prisma: ${r.left === bare.left ? "the same" : bare.left})`);
      assert.ok(e, "the transaction was interrupted, not completed on a fresh pool");
      assert.equal(retries.length, 0, "nothing re-run after $disconnect()");
      assert.equal(r.rows, 0, "nothing written");
      assert.equal(bare.rows, 0);
      assert.ok(r.left <= bare.left, `connections left: ${r.left}, bare Prisma ${bare.left}`);
    });
  }
});

describe("$disconnect() while a write waits for a server that is down (a shutdown during an outage)", () => {
  for (const wrap of [true, false]) {
    test(`${wrap ? "with" : "without"} withResilience: the waiting write is given up, and does not run when the server comes back`, async () => {
      const { prisma, retries } = client(db.url, { wrap });
      await prisma.user.count();
      const key = uniqueKey("disconnect-outage");
      await db.kill9();
      let restarted = false;
      try {
        const write = prisma.ledger.create({ data: { key, amount: 1 } }).then(
          () => "written",
          (e: unknown) => `${(e as any)?.name} ${(e as any)?.code ?? ""}`,
        );
        await sleep(700); // it is waiting: held by the adapter, or between re-runs
        const retriesBefore = retries.length;
        await Promise.race([prisma.$disconnect(), sleep(10_000, undefined, { ref: false }).then(() => assert.fail("$disconnect() did not end within 10 s"))]);
        await db.start();
        restarted = true;
        const outcome = await Promise.race([write, sleep(15_000, undefined, { ref: false }).then(() => assert.fail("the write did not settle within 15 s"))]);
        await sleep(1000); // a re-run would have reached the server by now
        const n = await rows(key);
        console.log(`    ${wrap ? "wrapped" : "unwrapped"}: ${outcome}; re-runs before $disconnect ${retriesBefore}, after ${retries.length - retriesBefore}; rows ${n}`);
        assert.notEqual(outcome, "written", "the write was given up");
        assert.ok(retries.length - retriesBefore <= 1, "at most the re-run already announced when $disconnect() came");
        assert.equal(n, 0, "nothing written after $disconnect()");
      } finally {
        if (!restarted) await db.start();
      }
    });
  }
});

