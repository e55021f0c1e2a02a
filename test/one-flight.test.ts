// A verified write outside a transaction sends its statement, its mark and the COMMIT in one flight
// (src/adapter/transaction.ts executeAndCommit, src/mysql/marks.ts countedMarkSql). Every reply of
// that flight can be lost at once; then the mark alone must tell what happened:
// - a statement the server refused (duplicate key) wrote no mark: never acknowledged, never
//   "unknown"; the re-run gets the server's own answer;
// - a statement that succeeded: the mark holds its row count, the operation resolves with it, once;
// - a connection with a prepare cache, or with the driver's `pipelining` off, sends its EXECUTE only
//   after the PREPARE's reply (src/adapter/one-flight.ts): there the mark and COMMIT must not
//   overtake it;
// - a statement with RETURNING answers rows (ROW_COUNT() is -1 after it): it takes the three-round-
//   trip path, and is neither "unknown" without a fault nor re-run after a lost COMMIT reply.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { isOutcomeUnknown } from "../src/index.ts";
import { RECENT_FAULT } from "../src/core/wrapped.ts";
import { errnoOf, withParams } from "./support/clients.ts";
import { ledgerRows, rejectionOf, uniqueKey } from "./support/data.ts";
import type { TestDatabase } from "./support/mariadb.ts";
import { faultSuite } from "./support/suite.ts";
import { happened, withProxy } from "./support/faults.ts";
import { within } from "./support/bounded.ts";

let db: TestDatabase;
const client = faultSuite((started) => (db = started), { checkDuplicates: true });

async function usersWith(email: string): Promise<number> {
  const [row] = await db.admin<any[]>("SELECT COUNT(*) AS n FROM User WHERE email = ?", [email]);
  return Number(row.n);
}

/** A one-row createMany, bounded: its count, or its error. */
function createOne(prisma: any, key: string): Promise<{ count: number } | { error: any }> {
  return within(
    prisma.ledger.createMany({ data: [{ key, amount: 1 }] }).then((r: any) => ({ count: r.count }), (e: any) => ({ error: e })),
    15_000,
    "the createMany",
  );
}

describe("one flight: statement, mark and COMMIT, every reply lost", () => {
  test("a statement the server refused (duplicate key): not acknowledged, not unknown, the server's answer; one row", async () => {
    await withProxy(db, async (proxy, url) => {
      const { prisma, retries } = client(url);
      const email = `${uniqueKey("of-dup")}@test`;
      await db.admin("INSERT INTO User (email) VALUES (?)", [email]);
      await prisma.ledger.count(); // the pool open, the commit table checked
      await sleep(200);
      const lost = proxy.loseReplyTo("COMMIT");
      const error = await rejectionOf(prisma.$executeRaw`INSERT INTO User (email) VALUES (${email})`, "the duplicate-key error");
      await happened(lost, "a COMMIT");
      assert.ok(!isOutcomeUnknown(error), `the server answered: not unknown (got ${error?.name}: ${error?.message})`);
      assert.equal(errnoOf(error), 1062, `the server's own answer (got ${error?.message})`);
      assert.equal(retries.length, 1, "re-run once after the lost flight (the mark said: not committed)");
      assert.equal(await usersWith(email), 1);
    });
  });

  test("an updateMany of 3 rows: resolves with count 3 from the mark, applied once", async () => {
    await withProxy(db, async (proxy, url) => {
      const { prisma, retries } = client(url);
      const tag = uniqueKey("of-upd");
      for (let i = 0; i < 3; i++) await db.admin("INSERT INTO User (email, name, balance) VALUES (?, ?, 0)", [`${tag}-${i}@test`, tag]);
      await prisma.ledger.count();
      await sleep(200);
      const lost = proxy.loseReplyTo("COMMIT");
      const result: any = await prisma.user.updateMany({ where: { name: tag }, data: { balance: { increment: 1 } } });
      await happened(lost, "a COMMIT");
      assert.equal(result.count, 3);
      assert.equal(retries.length, 0, "nothing re-run");
      const rows = await db.admin<any[]>("SELECT balance FROM User WHERE name = ?", [tag]);
      assert.deepEqual(rows.map((r) => Number(r.balance)), [1, 1, 1]);
    });
  });

  test("an updateMany matching nothing: resolves with count 0 (the mark is written for 0 rows too)", async () => {
    await withProxy(db, async (proxy, url) => {
      const { prisma, retries } = client(url);
      await prisma.ledger.count();
      await sleep(200);
      const lost = proxy.loseReplyTo("COMMIT");
      const result: any = await prisma.user.updateMany({ where: { name: uniqueKey("of-none") }, data: { balance: 5 } });
      await happened(lost, "a COMMIT");
      assert.equal(result.count, 0);
      assert.equal(retries.length, 0, "nothing re-run");
    });
  });

  test("BEGIN refused inside the flight (the server answers it an error), every reply lost: the statement never commits on its own; one row, never two", async () => {
    await withProxy(db, async (proxy, url) => {
      const { prisma, retries } = client(url);
      const key = uniqueKey("of-begin");
      await prisma.ledger.count();
      await sleep(200);
      // The flight's BEGIN (a COM_QUERY of "BEGIN" alone, not the fence "BEGIN NOT ATOMIC …") becomes
      // "BEGIX": the server answers 1064 and runs what follows it. Every reply from then on is lost.
      const refused = proxy.rewriteOnce(Buffer.from("\x03BEGIN"), Buffer.from("\x03BEGIX"), (after) => !after.subarray(0, 4).equals(Buffer.from(" NOT")));
      proxy.holdReplyTo("BEGIX");
      const lost = proxy.loseReplyTo("COMMIT");
      const result: any = await within(prisma.ledger.createMany({ data: [{ key, amount: 1 }] }), 15_000, "the createMany");
      await happened(refused, "the BEGIN refused");
      await happened(lost, "a COMMIT");
      assert.equal(result.count, 1);
      assert.equal(retries.length, 1, "re-run once: nothing of the first flight committed");
      await sleep(300);
      assert.equal(await ledgerRows(db, key), 1, "one row: the statement behind the refused BEGIN did not commit on its own");
    });
  });

  test("BEGIN refused inside the flight, replies delivered: the server's answer to BEGIN, nothing written, nothing re-run", async () => {
    await withProxy(db, async (proxy, url) => {
      const { prisma, retries, adapter } = client(url);
      const key = uniqueKey("of-begin-ans");
      await prisma.ledger.count();
      await sleep(200);
      const refused = proxy.rewriteOnce(Buffer.from("\x03BEGIN"), Buffer.from("\x03BEGIX"), (after) => !after.subarray(0, 4).equals(Buffer.from(" NOT")));
      const error = await rejectionOf(within(prisma.ledger.createMany({ data: [{ key, amount: 1 }] }), 15_000, "the createMany"), "BEGIN's error");
      await happened(refused, "the BEGIN refused");
      assert.ok(!isOutcomeUnknown(error), `the server answered: not unknown (got ${error?.name}: ${error?.message})`);
      assert.equal(errnoOf(error), 1064, `BEGIN's own answer (got ${error?.message})`);
      assert.equal(retries.length, 0, "a syntax error is not re-run");
      await sleep(300);
      assert.equal(await ledgerRows(db, key), 0, "nothing written");
      // The fence ended its own session (1927): not a fault of the server's.
      assert.equal((adapter as any)[RECENT_FAULT](), false, "the fence's own close is not a fault");
    });
  });

  // BEGIN and the fence both refused (each rewritten to a syntax error): the statement runs on its
  // own. Acknowledged only where the mark found no transaction (autocommit on: it committed alone).
  const refuseBoth = (proxy: { rewriteOnce: (f: Buffer, r: Buffer, a?: (after: Buffer) => boolean) => Promise<void> }) =>
    Promise.all([
      proxy.rewriteOnce(Buffer.from("\x03BEGIN"), Buffer.from("\x03BEGIX"), (after) => !after.subarray(0, 4).equals(Buffer.from(" NOT"))),
      proxy.rewriteOnce(Buffer.from("\x03BEGIN NOT"), Buffer.from("\x03BEGIX NOT")),
    ]).then(() => undefined);

  test("BEGIN and the fence both refused, replies delivered: the statement committed on its own; acknowledged once, nothing re-run", async () => {
    await withProxy(db, async (proxy, url) => {
      const { prisma, retries } = client(url);
      const key = uniqueKey("of-both");
      await prisma.ledger.count();
      await sleep(200);
      const refused = refuseBoth(proxy);
      const result: any = await within(prisma.ledger.createMany({ data: [{ key, amount: 1 }] }), 15_000, "the createMany");
      await happened(refused, "BEGIN and the fence refused");
      assert.equal(result.count, 1);
      assert.equal(retries.length, 0, "nothing re-run");
      await sleep(300);
      assert.equal(await ledgerRows(db, key), 1, "the acknowledged row is there, once");
    });
  });

  test("BEGIN and the fence both refused with autocommit=0, the COMMIT refused too: nothing committed, nothing acknowledged", async () => {
    await withProxy(db, async (proxy, url) => {
      const { prisma, retries } = client(withParams(url, { initSql: "SET@@autocommit=0" }));
      const key = uniqueKey("of-ac0");
      await prisma.ledger.count();
      await sleep(200);
      const refused = refuseBoth(proxy);
      const commitRefused = proxy.rewriteOnce(Buffer.from("\x03COMMIT"), Buffer.from("\x03COMMIX"));
      const outcome = await createOne(prisma, key);
      await happened(refused, "BEGIN and the fence refused");
      await happened(commitRefused, "the COMMIT refused");
      await sleep(300);
      assert.equal(await ledgerRows(db, key), 0, "the implicit transaction was never committed");
      assert.ok("error" in outcome, `not acknowledged (got ${JSON.stringify(outcome)})`);
      const error = (outcome as { error: any }).error;
      assert.ok(!isOutcomeUnknown(error), `the COMMIT was answered: not unknown (got ${error?.name}: ${error?.message})`);
      assert.equal(errnoOf(error), 1064, `the COMMIT's own answer (got ${error?.message})`);
      assert.equal(retries.length, 0, "a syntax error is not re-run");
    });
  });

  // The mark refused alone (its table renamed in the flight: 1146, which rolls back nothing) behind
  // a refused BEGIN and fence, the COMMIT answered OK: committed either way, by the statement alone
  // (autocommit on) or by that COMMIT (autocommit=0 opened a transaction at the statement).
  for (const autocommit of [true, false]) {
    test(`BEGIN and the fence both refused, the mark refused alone (1146), the COMMIT OK, autocommit ${autocommit ? "on" : "0"}: acknowledged once, one row, nothing re-run`, async () => {
      await withProxy(db, async (proxy, url) => {
        const { prisma, retries } = client(autocommit ? url : withParams(url, { initSql: "SET@@autocommit=0" }));
        const key = uniqueKey(`of-mark-alone-${autocommit}`);
        await prisma.ledger.count();
        await sleep(200);
        const refused = refuseBoth(proxy);
        const markRefused = proxy.rewriteOnce(Buffer.from("INTO `_resilience_commits`"), Buffer.from("INTO `_resilience_commitX`"));
        const outcome = await createOne(prisma, key);
        await happened(refused, "BEGIN and the fence refused");
        await happened(markRefused, "the mark refused");
        await sleep(300);
        assert.equal(await ledgerRows(db, key), 1, "committed, once");
        const error = (outcome as { error?: any }).error;
        assert.deepEqual(outcome, { count: 1 }, `acknowledged (got ${error?.name}: ${error?.message})`);
        assert.equal(retries.length, 0, "nothing re-run");
      });
    });
  }

  test("a fence the server cannot run (refused 1064) inside the transaction BEGIN opened: acknowledged once; later writes await BEGIN, send no fence, stay verified", async () => {
    await withProxy(db, async (proxy, url) => {
      const { prisma, retries } = client(url);
      const key = uniqueKey("of-nofence");
      await prisma.ledger.count();
      await sleep(200);
      const refused = proxy.rewriteOnce(Buffer.from("\x03BEGIN NOT"), Buffer.from("\x03BEGIX NOT"));
      const first: any = await within(prisma.ledger.createMany({ data: [{ key: `${key}-0`, amount: 1 }] }), 15_000, "the first createMany");
      await happened(refused, "the fence refused");
      assert.equal(first.count, 1);
      const fences = proxy.countClient("BEGIN NOT ATOMIC");
      for (let i = 1; i <= 3; i++) assert.equal(((await within(prisma.ledger.createMany({ data: [{ key: `${key}-${i}`, amount: 1 }] }), 15_000, "a createMany")) as any).count, 1);
      // Still verified: a lost COMMIT reply is found committed, nothing re-run.
      const lost = proxy.loseReplyTo("COMMIT");
      const last: any = await within(prisma.ledger.createMany({ data: [{ key: `${key}-4`, amount: 1 }] }), 15_000, "the last createMany");
      await happened(lost, "a COMMIT");
      fences.stop();
      assert.equal(last.count, 1);
      assert.equal(fences.count(), 0, "no fence sent once it was refused as unsupported");
      assert.equal(retries.length, 0, "nothing re-run");
      await sleep(300);
      for (let i = 0; i <= 4; i++) assert.equal(await ledgerRows(db, `${key}-${i}`), 1, `write ${i}: one row`);
    });
  });

  test("pipelining off: the mark and COMMIT do not overtake the EXECUTE; one row, acknowledged, nothing re-run", async () => {
    await withProxy(db, async (proxy, url) => {
      const { prisma, retries } = client(withParams(url, { pipelining: false }));
      const key = uniqueKey("of-nopipe");
      await prisma.ledger.count();
      await sleep(200);
      const lost = proxy.loseReplyTo("COMMIT");
      const result: any = await within(prisma.ledger.createMany({ data: [{ key, amount: 1 }] }), 15_000, "the createMany");
      await happened(lost, "a COMMIT");
      assert.equal(result.count, 1);
      assert.equal(retries.length, 0, "nothing re-run");
      await sleep(300);
      assert.equal(await ledgerRows(db, key), 1, "the acknowledged row is there, once");
    });
  });

  for (const fault of ["none", "COMMIT reply lost"] as const) {
    test(`an INSERT … RETURNING outside a transaction (${fault}): resolves, one row, nothing re-run`, async () => {
      await withProxy(db, async (proxy, url) => {
        const { prisma, retries } = client(url);
        const key = uniqueKey("of-ret");
        await prisma.ledger.count();
        await sleep(200);
        const lost = fault === "none" ? undefined : proxy.loseReplyTo("COMMIT");
        await within(prisma.$executeRaw`INSERT INTO Ledger (\`key\`, amount) VALUES (${key}, 1) RETURNING id`, 15_000, "the insert");
        if (lost) await happened(lost, "a COMMIT");
        assert.equal(retries.length, 0, "nothing re-run");
        await sleep(300);
        assert.equal(await ledgerRows(db, key), 1, "one row");
      });
    });
  }

  test("a connection with a prepare cache: the mark and COMMIT do not overtake the EXECUTE; one row, acknowledged", async () => {
    await withProxy(db, async (proxy, url) => {
      const { prisma } = client(withParams(url, { prepareCacheLength: 256 }));
      const key = uniqueKey("of-cache");
      await prisma.ledger.count();
      await sleep(200);
      const lost = proxy.loseReplyTo("COMMIT");
      const result: any = await prisma.ledger.createMany({ data: [{ key, amount: 1 }] });
      await happened(lost, "a COMMIT");
      assert.equal(result.count, 1);
      await sleep(300);
      assert.equal(await ledgerRows(db, key), 1, "the acknowledged row is there, once");
    });
  });
});
