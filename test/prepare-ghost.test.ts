// A PREPARE that fails before the server registers the statement: at max_prepared_stmt_count
// (1461). The mariadb driver pipelines the PREPARE of a statement new to the connection with an
// EXECUTE of statement id -1; measured on MariaDB 10.11, that EXECUTE then re-runs the connection's
// previous prepared statement (kept open by the driver's prepare cache), with the new statement's
// parameters. The same happens after a Galera brute-force abort (test/cluster/prepare-ghost.test.ts).
import assert from "node:assert/strict";
import { afterEach, describe, test } from "node:test";
import { bareClient, errnoOf, withParams } from "./support/clients.ts";
import { rejectionOf, uniqueKey } from "./support/data.ts";
import type { TestDatabase } from "./support/mariadb.ts";
import { faultSuite } from "./support/suite.ts";

let db: TestDatabase;
const client = faultSuite((started) => (db = started));
const log = (...a: unknown[]) => console.log("   ", ...a);
const bare: Array<{ $disconnect(): Promise<void> }> = [];
afterEach(async () => {
  for (const b of bare.splice(0)) await b.$disconnect().catch(() => undefined);
});

/** An UPDATE balance + 1 (acknowledged), then a new statement while no statement can be prepared. */
async function newStatementAtTheLimit(prisma: any) {
  const inserted = await db.admin<any>(`INSERT INTO \`${db.database}\`.User (email, balance) VALUES (?, 200)`, [`${uniqueKey("pg")}@test`]);
  const id = Number(inserted.insertId);
  await prisma.user.count();
  assert.equal(await prisma.$executeRaw`UPDATE User SET balance = balance + 1 WHERE id = ${id}`, 1);
  const [{ n }] = await db.admin<any[]>("SELECT VARIABLE_VALUE AS n FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'PREPARED_STMT_COUNT'");
  assert.ok(Number(n) >= 1, "the UPDATE is still prepared (the prepare cache keeps it)");
  let error: unknown;
  await db.admin(`SET GLOBAL max_prepared_stmt_count = ${Number(n)}`);
  try {
    error = await rejectionOf(prisma.$queryRawUnsafe(`SELECT balance FROM User WHERE id = ? /* ${uniqueKey("new")} */`, id), "1461");
  } finally {
    await db.admin("SET GLOBAL max_prepared_stmt_count = DEFAULT");
  }
  const [row] = await db.admin<any[]>(`SELECT balance FROM \`${db.database}\`.User WHERE id = ?`, [id]);
  return { errno: errnoOf(error), balance: Number(row.balance) };
}

describe("a PREPARE refused at max_prepared_stmt_count (prepareCacheLength=256)", () => {
  test("with the package: 1461, and only the acknowledged UPDATE applied", async () => {
    const { prisma } = client(withParams(db.url, { connectionLimit: 1, prepareCacheLength: 256 }));
    const r = await newStatementAtTheLimit(prisma);
    log(`errno ${r.errno}, balance ${r.balance}`);
    assert.equal(r.errno, 1461);
    assert.equal(r.balance, 201, "200 and the acknowledged +1, once (no ghost re-run of the UPDATE)");
  });

  test("bare Prisma: 1461, and the UPDATE ran a second time", async () => {
    const prisma = bareClient(withParams(db.url, { connectionLimit: 1, prepareCacheLength: 256 }));
    bare.push(prisma);
    const r = await newStatementAtTheLimit(prisma);
    log(`bare: errno ${r.errno}, balance ${r.balance}`);
    assert.equal(r.errno, 1461);
    assert.equal(r.balance, 202, "the driver's EXECUTE of id -1 re-ran the UPDATE");
  });
});
