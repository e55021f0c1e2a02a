// A write the server rejected, or the driver never sent, is not an unknown outcome. The server
// answers an oversized packet with 1153 (SQLSTATE 08S01) and then closes the connection: an answer,
// nothing ran. A prepared statement executed with a parameter missing is answered 1210. None of them
// may come back as OutcomeUnknownError.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { flightOf, isOutcomeUnknown, provesNotSent, withResilience } from "../src/index.ts";
import { judge } from "../src/core/safety.ts";
import { mysqlDialect } from "../src/mysql/dialect.ts";
import { resolveOptions } from "../src/extension/options.ts";
import { ledgerRows, rejectionOf, uniqueKey } from "./support/data.ts";
import type { TestDatabase } from "./support/mariadb.ts";
import { faultSuite } from "./support/suite.ts";

let db: TestDatabase;
let packet: string;
const client = faultSuite((started) => (db = started), { checkDuplicates: true });

describe("answers and refusals at an autocommit write (verification off)", () => {
  before(async () => {
    packet = await db.getGlobal("max_allowed_packet");
    await db.setGlobal("max_allowed_packet", 65536);
  });
  after(async () => {
    await db.setGlobal("max_allowed_packet", Number(packet));
  });

  test("1153 (packet too large, 08S01) on a raw INSERT and on updateMany: the error as it is, nothing written", async () => {
    const { prisma, retries } = client(db.url, { adapter: { verifyCommits: false } });
    await prisma.ledger.count();
    const key = uniqueKey("too-large");
    const big = "x".repeat(100_000);
    const raw = await rejectionOf(prisma.$executeRawUnsafe("INSERT INTO Ledger (`key`, note) VALUES (?, ?)", key, big));
    assert.ok(!isOutcomeUnknown(raw), `got ${raw?.name}: ${raw?.message}`);
    assert.match(String(raw?.message), /1153|max_allowed_packet/);
    const many = await rejectionOf(prisma.ledger.updateMany({ where: { note: big }, data: { amount: 2 } }));
    assert.ok(!isOutcomeUnknown(many), `got ${many?.name}: ${many?.message}`);
    assert.equal(retries.length, 0);
    assert.equal(await ledgerRows(db, key), 0);
  });

  test("1210 (a parameter missing at execute): the error as it is, nothing written", async () => {
    const { prisma, retries } = client(db.url, { adapter: { verifyCommits: false } });
    await prisma.ledger.count();
    const key = uniqueKey("driver-refused");
    const error = await rejectionOf(prisma.$executeRawUnsafe("INSERT INTO Ledger (`key`, note) VALUES (?, ?)", key));
    assert.ok(!isOutcomeUnknown(error), `got ${error?.name}: ${error?.message}`);
    assert.match(String(error?.message), /1210/);
    assert.equal(retries.length, 0);
    assert.equal(await ledgerRows(db, key), 0);
  });
});

describe("a refusal on record does not replace an in-flight write's own error (fake adapter: the two errors are recorded shapes)", () => {
  test("an autocommit write whose reply never came (read EHOSTUNREACH) while the server refuses new connections: may have committed", async () => {
    let failB!: (e: unknown) => void;
    const fake: any = {
      provider: "mysql",
      adapterName: "fake",
      queryRaw: async () => ({ columnNames: [], columnTypes: [], rows: [] }),
      executeRaw: (p: { sql: string }) => {
        if (p.sql.startsWith("SELECT")) {
          // A pool timeout whose cause is a locked account (MariaDB 4151): the server refuses the app now.
          const cause = { kind: "mysql", code: 45028, state: "HY000", cause: "(conn:-1, no: 4151, SQLState: HY000) Access denied, this account is locked" };
          return Promise.reject(Object.assign(new Error("pool timeout"), { name: "DriverAdapterError", cause }));
        }
        return new Promise((_, reject) => (failB = reject));
      },
      startTransaction: async () => assert.fail("not used"),
      dispose: async () => undefined,
    };
    const adapter: any = await withResilience({ provider: "mysql", adapterName: "fake", connect: async () => fake } as any, { verifyCommits: false, silentAfter: 0 }).connect();
    try {
      const write = adapter.executeRaw({ sql: "INSERT INTO t VALUES (1)", args: [], argTypes: [] }).catch((e: unknown) => e);
      await adapter.executeRaw({ sql: "SELECT 1", args: [], argTypes: [] }).catch(() => undefined);
      failB(Object.assign(new Error("read EHOSTUNREACH"), { code: "EHOSTUNREACH", errno: -113, syscall: "read" }));
      const error: any = await write;
      assert.notEqual(error?.name, "ConnectFailedError", "not replaced by the refusal");
      assert.equal(provesNotSent(error), false);
      assert.equal(flightOf(error)?.statement, "INSERT");
      const verdict: any = judge(error, { dialect: mysqlDialect, operation: "$executeRaw", scope: "operation", readOnly: () => false, startedAt: performance.now() }, resolveOptions({}), 1);
      assert.equal(verdict.retry, false);
      assert.ok(isOutcomeUnknown(verdict.error), `unknown, got ${verdict.error?.name}`);
    } finally {
      await adapter.dispose();
    }
  });
});
