// A Galera brute-force abort at the end of a transaction: another node commits a conflicting
// update of the same row while the transaction's last commands (the commit mark or guard, the
// COMMIT) are held by a fault proxy in front of its node. The abort rolls the transaction back, so
// it must be re-run, never acknowledged: the counter is exact and the acknowledged row is there.
// Measured on MariaDB 10.11 with galera-4: the first command after the abort gets 1213, whichever
// it is (the mark, the COMMIT, the guard); a COMMIT after its mark is not answered OK.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { errorFacts } from "../../src/mysql/classify.ts";
import { trackedClients, withParams } from "../support/clients.ts";
import { inFlight, uniqueKey } from "../support/data.ts";
import { abortByConflict, startGaleraCluster, within, type GaleraCluster } from "../support/galera.ts";
import { startProxy, type FaultProxy } from "../support/proxy.ts";

let cluster: GaleraCluster;
let proxy: FaultProxy;
const log = (...a: unknown[]) => console.log("   ", ...a);
const { client, disconnectAll } = trackedClients({ deadline: 10_000 });

before(async () => {
  cluster = await startGaleraCluster();
  proxy = await startProxy("127.0.0.1", cluster.nodes[0].port);
});
afterEach(async () => {
  await disconnectAll();
});
after(async () => {
  await proxy?.close();
  await cluster?.stop();
});


const cases = [
  { name: "the COMMIT held, its mark applied (verification on)", marker: "COMMIT", verifyCommits: true },
  { name: "the mark held (verification on)", marker: "INSERT INTO `_resilience_commits`", verifyCommits: true },
  { name: "the guard and the COMMIT held (verification off)", marker: "@@in_transaction AS t", verifyCommits: false },
];

describe("a brute-force abort before the COMMIT is re-run, never acknowledged", () => {
  for (const c of cases) {
    test(`${c.name}: re-run once, counter exact, the row there`, async () => {
      const [node1, node2] = cluster.nodes;
      const db = cluster.database;
      const inserted = await node1.admin<any>(`INSERT INTO \`${db}\`.User (email, balance) VALUES (?, 0)`, [`${uniqueKey("bf")}@test`]);
      const id = Number(inserted.insertId);
      const key = uniqueKey("bf");
      const { prisma, retries } = client(withParams(proxy.urlFor(node1.url), { connectionLimit: 1 }), { adapter: { verifyCommits: c.verifyCommits } });
      await prisma.user.count(); // the pool open, the commit table checked
      let runs = 0;
      let hold: ReturnType<FaultProxy["holdFrom"]> | undefined;
      let armed!: () => void;
      const holding = new Promise<void>((resolve) => (armed = resolve));
      const done = inFlight(
        prisma.$transaction(
          async (tx: any) => {
            runs++;
            await tx.user.update({ where: { id }, data: { balance: { increment: 1 } } });
            await tx.ledger.create({ data: { key, amount: 1 } });
            if (runs === 1) {
              hold = proxy.holdFrom(c.marker);
              armed();
            }
            return runs;
          },
          { timeout: 10_000 },
        ),
      );
      try {
        await within(holding, "the first run");
        await within(hold!.seen, `holding ${c.marker}`);
        // Another node updates the same row: applying it on node1 aborts the held transaction.
        await abortByConflict(node1, node2, db, id);
      } finally {
        hold?.release();
      }
      const result = await within(done, "the transaction", 15_000);
      const [row] = await node1.admin<any[]>(`SELECT balance FROM \`${db}\`.User WHERE id = ?`, [id]);
      const [ledger] = await node1.admin<any[]>(`SELECT COUNT(*) AS n FROM \`${db}\`.Ledger WHERE \`key\` = ?`, [key]);
      log(`${c.marker}: runs ${runs}, retries [${retries.map((r) => `${r.errorClass} ${errorFacts(r.error).errno}`).join(", ")}], balance ${row.balance}, rows ${ledger.n}`);
      assert.equal(Number(ledger.n), 1, "the acknowledged transaction's row is there, once");
      assert.equal(Number(row.balance), 101, "the counter is exact: the other node's 100 and this transaction's 1, once");
      assert.equal(result, 2, "acknowledged by the re-run");
      assert.equal(retries.length, 1);
      assert.equal(retries[0].errorClass, "conflict");
      // MariaDB 10.11 answers the first command after the abort (the held one) with 1213.
      assert.equal(errorFacts(retries[0].error).errno, 1213);
    });
  }
});

// A verified write outside a transaction goes in one flight: its statement, its mark, the COMMIT
// (src/adapter/transaction.ts executeAndCommit). The abort lands after the statement ran and before
// the mark: the mark is answered 1213, nothing committed, the write is re-run once.
describe("a brute-force abort inside a one-flight write (verification on)", () => {
  test("an autocommit UPDATE ($executeRaw), its mark and COMMIT held: re-run once, counter exact", async () => {
    const [node1, node2] = cluster.nodes;
    const db = cluster.database;
    const inserted = await node1.admin<any>(`INSERT INTO \`${db}\`.User (email, balance) VALUES (?, 0)`, [`${uniqueKey("bf1")}@test`]);
    const id = Number(inserted.insertId);
    const { prisma, retries } = client(withParams(proxy.urlFor(node1.url), { connectionLimit: 1 }));
    await prisma.user.count(); // the pool open, the commit table checked
    const hold = proxy.holdFrom("INSERT INTO `_resilience_commits`");
    const done = inFlight(prisma.$executeRaw`UPDATE User SET balance = balance + 1 WHERE id = ${id}`);
    try {
      await within(hold.seen, "holding the mark");
      await abortByConflict(node1, node2, db, id);
    } finally {
      hold.release();
    }
    const result = await within(done, "the write", 15_000);
    const [row] = await node1.admin<any[]>(`SELECT balance FROM \`${db}\`.User WHERE id = ?`, [id]);
    log(`one flight: retries [${retries.map((r) => `${r.errorClass} ${errorFacts(r.error).errno}`).join(", ")}], balance ${row.balance}`);
    assert.equal(result, 1, "acknowledged by the re-run");
    assert.equal(Number(row.balance), 101, "the counter is exact: the other node's 100 and this write's 1, once");
    assert.equal(retries.length, 1);
    assert.equal(retries[0].errorClass, "conflict");
  });
});
