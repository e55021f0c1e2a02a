// A Galera brute-force abort just before a statement the connection has not prepared yet. On
// MariaDB 10.2.4+ the mariadb driver pipelines PREPARE with an EXECUTE of statement id -1 ("the
// statement just prepared"). Measured on MariaDB 10.11 with galera-4: the PREPARE gets the 1213,
// and the EXECUTE then runs the connection's previous prepared statement (here an UPDATE
// balance + 1), with the new statement's parameters, in autocommit: a write nobody asked for,
// answered with the same 1213. A re-run of the transaction would then apply that write twice.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { errorFacts } from "../../src/mysql/classify.ts";
import { bareClient, errnoOf, trackedClients, withParams } from "../support/clients.ts";
import { inFlight, uniqueKey } from "../support/data.ts";
import { abortByConflict, startGaleraCluster, within, type GaleraCluster } from "../support/galera.ts";
import { startProxy, type FaultProxy } from "../support/proxy.ts";

let cluster: GaleraCluster;
let proxy: FaultProxy;
const log = (...a: unknown[]) => console.log("   ", ...a);
const { client, disconnectAll } = trackedClients({ deadline: 10_000 });
const bare: Array<{ $disconnect(): Promise<void> }> = [];

before(async () => {
  cluster = await startGaleraCluster();
  proxy = await startProxy("127.0.0.1", cluster.nodes[0].port);
});
afterEach(async () => {
  await disconnectAll();
  for (const b of bare.splice(0)) await b.$disconnect().catch(() => undefined);
});
after(async () => {
  await proxy?.close();
  await cluster?.stop();
});


async function newRow(): Promise<number> {
  const inserted = await cluster.nodes[0].admin<any>(`INSERT INTO \`${cluster.database}\`.User (email, balance) VALUES (?, 0)`, [`${uniqueKey("pg")}@test`]);
  return Number(inserted.insertId);
}

/**
 * Runs `transaction` on node 1 through the proxy: its first run does an UPDATE balance + 1, then a
 * statement with a SQL text new to the connection, held by the proxy while node 2 commits +100 to
 * the same row and node 1 applies it (which aborts the held transaction). Returns how it ended.
 */
async function abortBeforeNewStatement(prisma: any, id: number, key: string) {
  const [node1, node2] = cluster.nodes;
  const db = cluster.database;
  let runs = 0;
  let hold: ReturnType<FaultProxy["holdFrom"]> | undefined;
  let armed!: () => void;
  const holding = new Promise<void>((resolve) => (armed = resolve));
  const outcome = inFlight(
    prisma.$transaction(
      async (tx: any) => {
        runs++;
        await tx.ledger.create({ data: { key, amount: 1 } });
        await tx.$executeRaw`UPDATE User SET balance = balance + 1 WHERE id = ${id}`;
        // A SQL text this connection has never prepared (not in the driver's prepare cache).
        const marker = `new-stmt-${key}-${runs}`;
        if (runs === 1) {
          hold = proxy.holdFrom(marker);
          armed();
        }
        await tx.$queryRawUnsafe(`SELECT balance FROM User WHERE id = ? /* ${marker} */`, id);
        return runs;
      },
      { timeout: 10_000 },
    ),
  ).then(
    (value) => ({ value, error: undefined as unknown }),
    (error) => ({ value: undefined, error }),
  );
  try {
    await within(holding, "the first run");
    await within(hold!.seen, "holding the new statement");
    await abortByConflict(node1, node2, db, id);
  } finally {
    hold?.release();
  }
  const ended = await within(outcome, "the transaction", 15_000);
  const [row] = await node1.admin<any[]>(`SELECT balance FROM \`${db}\`.User WHERE id = ?`, [id]);
  const [ledger] = await node1.admin<any[]>(`SELECT COUNT(*) AS n FROM \`${db}\`.Ledger WHERE \`key\` = ?`, [key]);
  return { ...ended, runs, balance: Number(row.balance), rows: Number(ledger.n) };
}

// @prisma/adapter-mariadb sets prepareCacheLength=0 on a pool it builds, unless the URL or config
// says otherwise: then each statement is closed after its EXECUTE and there is no previous statement
// to re-run. With a prepare cache (set in the URL, or an app's own pool: the driver's default is 256)
// the previous statement stays open, and is re-run.
const caches = [
  { name: "Prisma's default (no prepare cache)", params: {} as Record<string, number>, ghost: false },
  { name: "prepareCacheLength=256", params: { prepareCacheLength: 256 }, ghost: true },
];

describe("a brute-force abort before a statement new to the connection", () => {
  for (const c of caches) {
    test(`${c.name}, with the package: re-run once, no write of its own outside the transaction, counter exact`, async () => {
      const id = await newRow();
      const key = uniqueKey("pg");
      const { prisma, retries } = client(withParams(proxy.urlFor(cluster.nodes[0].url), { connectionLimit: 1, ...c.params }));
      await prisma.user.count(); // the pool open, the commit table checked
      const r = await abortBeforeNewStatement(prisma, id, key);
      log(`runs ${r.runs}, retries [${retries.map((x) => `${x.errorClass} ${errorFacts(x.error).errno}`).join(", ")}], balance ${r.balance}, rows ${r.rows}`);
      assert.equal(r.error, undefined, "acknowledged");
      assert.equal(r.value, 2, "acknowledged by the re-run");
      assert.equal(r.rows, 1, "the acknowledged transaction's row is there, once");
      assert.equal(r.balance, 101, "the counter is exact: the other node's 100 and this transaction's 1, once (no ghost +1)");
      assert.equal(retries.length, 1);
      assert.equal(retries[0].errorClass, "conflict");
      assert.equal(errorFacts(retries[0].error).errno, 1213);
    });

    // What bare Prisma 7 (mariadb 3.4.5, pipelining on by default) does on the same fault: the
    // transaction fails with 1213; with a prepare cache its UPDATE ran once more, outside it.
    test(`${c.name}, bare Prisma: the transaction fails with 1213, ${c.ghost ? "and its UPDATE is applied anyway (the ghost write)" : "nothing applied"}`, async () => {
      const id = await newRow();
      const key = uniqueKey("pg");
      const prisma = bareClient(withParams(proxy.urlFor(cluster.nodes[0].url), { connectionLimit: 1, ...c.params }));
      bare.push(prisma);
      await prisma.user.count();
      const r = await abortBeforeNewStatement(prisma, id, key);
      log(`bare: error ${errnoOf(r.error)}, balance ${r.balance}, rows ${r.rows}`);
      assert.equal(errnoOf(r.error), 1213, "the transaction failed with the abort");
      assert.equal(r.rows, 0, "the failed transaction's row is not there");
      if (c.ghost) assert.equal(r.balance, 101, "the driver's EXECUTE of id -1 re-ran the UPDATE outside the failed transaction");
      else assert.equal(r.balance, 100, "the previous statement was closed: nothing re-ran");
    });
  }
});
