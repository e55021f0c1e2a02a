// Pins what the safety rule relies on in Prisma itself: every model operation that writes with more
// than one statement runs them inside one transaction, so an autocommit write is always the
// operation's only statement. If a Prisma upgrade changes that, this fails before users do.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { PrismaMariaDb } from "@prisma/adapter-mariadb";
import { PrismaClient } from "../generated/prisma/client.ts";
import { isReadOnlySql } from "../src/mysql/sql.ts";
import { startDatabase, type TestDatabase } from "./support/mariadb.ts";

let db: TestDatabase;
before(async () => {
  db = await startDatabase();
});
after(async () => {
  await db?.stop();
});

interface Call {
  inTransaction: boolean;
  sql: string;
}

/** An adapter factory that logs every statement and whether it ran inside a transaction. */
function recordingFactory(url: string, calls: Call[]) {
  const inner = new PrismaMariaDb(url);
  const record = (target: any, inTransaction: boolean): any =>
    new Proxy(target, {
      get(t, prop) {
        const value = t[prop];
        if (typeof value !== "function") return value;
        return (...args: any[]) => {
          if (prop === "queryRaw" || prop === "executeRaw") calls.push({ inTransaction, sql: args[0].sql });
          const result = value.apply(t, args);
          return prop === "startTransaction" ? result.then((tx: any) => record(tx, true)) : result;
        };
      },
    });
  return {
    provider: inner.provider,
    adapterName: inner.adapterName,
    connect: async () => record(await inner.connect(), false),
  };
}

test("Prisma runs multi-statement writes in a transaction; autocommit writes are single statements", async () => {
  const calls: Call[] = [];
  const prisma = new PrismaClient({ adapter: recordingFactory(db.url, calls) as any });
  try {
    const user = await prisma.user.create({ data: { email: "plans@example.com" } });
    const operations: Array<[string, () => Promise<unknown>]> = [
      ["create", () => prisma.ledger.create({ data: { key: "p1" } })],
      ["create nested", () => prisma.user.create({ data: { email: "plans2@example.com", posts: { create: [{ title: "t" }] } } })],
      ["createMany", () => prisma.ledger.createMany({ data: [{ key: "p2" }, { key: "p3" }] })],
      ["createMany, many rows", () => prisma.ledger.createMany({ data: Array.from({ length: 30_000 }, (_, i) => ({ key: `m${i}` })) })],
      ["update", () => prisma.user.update({ where: { id: user.id }, data: { balance: { increment: 1 } } })],
      ["updateMany", () => prisma.user.updateMany({ where: { id: user.id }, data: { balance: { increment: 1 } } })],
      ["upsert", () => prisma.user.upsert({ where: { email: "plans3@example.com" }, create: { email: "plans3@example.com" }, update: {} })],
      ["delete", () => prisma.ledger.delete({ where: { id: 1 } })],
      ["deleteMany", () => prisma.ledger.deleteMany({ where: { key: "p2" } })],
      ["update with nested create", () => prisma.user.update({ where: { id: user.id }, data: { posts: { create: { title: "u" } } } })],
    ];
    for (const [name, run] of operations) {
      calls.length = 0;
      await run();
      const autocommit = calls.filter((c) => !c.inTransaction);
      const writes = calls.filter((c) => !isReadOnlySql(c.sql));
      assert.ok(writes.length > 0, `${name} wrote`);
      if (autocommit.some((c) => !isReadOnlySql(c.sql))) {
        assert.equal(calls.length, 1, `${name}: an autocommit write is the operation's only statement`);
      } else {
        assert.equal(autocommit.length, 0, `${name}: every statement ran inside the transaction`);
      }
    }
  } finally {
    await prisma.$disconnect();
    await db.reset();
  }
});
