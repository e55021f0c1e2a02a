// Unit tests on recorded and constructed error shapes: the classifier, the "not sent" proof, the SQL
// read-only check and option validation. Behaviour claims are proven in the fault tests; these pin
// the tables.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { classify, provesNotSent, resilience, withResilience } from "../src/index.ts";
import { serverAnswered } from "../src/errors/classify.ts";
import { ResilientTransaction } from "../src/adapter/transaction.ts";
import { flightOf, makeRecord, mayHaveCommitted, tag, type FlightRecord } from "../src/adapter/flight.ts";
import { resolveOptions } from "../src/extension/options.ts";
import { firstKeyword, isAutocommitDml, isMultiStatement, isReadOnlySql, mayCommitImplicitly } from "../src/adapter/sql.ts";
import { shapes } from "./fixtures/error-shapes.ts";

describe("classify", () => {
  for (const shape of shapes) {
    test(`${shape.name} → ${shape.expected} (${shape.source})`, () => {
      assert.equal(classify(shape.error, { flavor: shape.flavor }), shape.expected);
    });
  }

  test("never uses instanceof: a copy of the error as a plain object classifies the same", () => {
    for (const shape of shapes) {
      if (typeof shape.error !== "object" || shape.error === null) continue;
      const plain = JSON.parse(JSON.stringify(shape.error, Object.getOwnPropertyNames(shape.error)));
      const meta = (shape.error as any).meta;
      if (meta?.driverAdapterError) {
        plain.meta = { ...meta, driverAdapterError: { name: "DriverAdapterError", message: meta.driverAdapterError.message, cause: meta.driverAdapterError.cause } };
      }
      if ((shape.error as any).cause !== undefined) plain.cause = (shape.error as any).cause;
      assert.equal(classify(plain, { flavor: shape.flavor }), shape.expected, shape.name);
    }
  });
});

describe("serverAnswered", () => {
  for (const shape of shapes.filter((s) => s.answered !== undefined)) {
    test(`${shape.name}: ${shape.answered ? "answered by the server (not applied)" : "no answer (outcome open)"}`, () => {
      assert.equal(serverAnswered(shape.error), shape.answered);
    });
  }
});

describe("provesNotSent", () => {
  for (const shape of shapes.filter((s) => s.notSent !== undefined)) {
    test(`${shape.name}: ${shape.notSent ? "not sent" : "may have been sent"}`, () => {
      assert.equal(provesNotSent(shape.error), shape.notSent);
    });
  }
});

describe("mayHaveCommitted", () => {
  const record = (r: Partial<FlightRecord>): FlightRecord => ({ phase: "statement", statement: "INSERT", readOnly: false, notSent: false, answered: false, committedEarlier: false, ...r });
  test("a COMMIT that may have been sent may have committed", () => {
    assert.equal(mayHaveCommitted(record({ phase: "commit", statement: "COMMIT" })), true);
  });
  test("a COMMIT the driver never sent did not", () => {
    assert.equal(mayHaveCommitted(record({ phase: "commit", statement: "COMMIT", notSent: true })), false);
  });
  test("an autocommit write may have; an autocommit read did not", () => {
    assert.equal(mayHaveCommitted(record({ phase: "autocommit" })), true);
    assert.equal(mayHaveCommitted(record({ phase: "autocommit", statement: "SELECT", readOnly: true })), false);
  });
  test("statements of an open transaction, BEGIN and ROLLBACK did not", () => {
    for (const phase of ["statement", "begin", "rollback"] as const) assert.equal(mayHaveCommitted(record({ phase })), false);
  });
  test("a COMMIT or an autocommit write the server answered with an error did not", () => {
    assert.equal(mayHaveCommitted(record({ phase: "commit", statement: "COMMIT", answered: true })), false);
    assert.equal(mayHaveCommitted(record({ phase: "autocommit", answered: true })), false);
  });
  test("after a statement that commits implicitly, anything may have committed, answered or not", () => {
    for (const phase of ["statement", "commit", "rollback"] as const) {
      assert.equal(mayHaveCommitted(record({ phase, committedEarlier: true })), true);
      assert.equal(mayHaveCommitted(record({ phase, committedEarlier: true, answered: true, notSent: true })), true);
    }
  });
});

describe("flight records on a shared error object", () => {
  test("a COMMIT's record wins over a statement's tagged earlier on the same error", () => {
    const shared = Object.assign(new Error("socket has unexpectedly been closed"), { errno: 45009, sqlState: "08S01", code: "ER_SOCKET_UNEXPECTED_CLOSE" });
    tag(shared, makeRecord("statement", shared, "INSERT INTO x VALUES (1)", "INSERT", false));
    tag(shared, makeRecord("commit", shared, "COMMIT", "COMMIT", false));
    assert.equal(flightOf(shared)?.phase, "commit");
    assert.equal(mayHaveCommitted(flightOf(shared)!), true);
  });
  test("a later harmless record does not replace one that may have committed", () => {
    const shared = Object.assign(new Error("socket has unexpectedly been closed"), { errno: 45009, sqlState: "08S01" });
    tag(shared, makeRecord("commit", shared, "COMMIT", "COMMIT", false));
    tag(shared, makeRecord("rollback", shared, "ROLLBACK", "ROLLBACK", false));
    assert.equal(flightOf(shared)?.phase, "commit");
  });
  test("a server's error answer is recorded as answered; a multi-statement text's is not", () => {
    const deadlock = Object.assign(new Error("Deadlock found"), { errno: 1213, sqlState: "40001", sqlMessage: "Deadlock found" });
    assert.equal(makeRecord("autocommit", deadlock, "UPDATE x SET a = 1", "UPDATE", false).answered, true);
    assert.equal(makeRecord("autocommit", deadlock, "INSERT INTO y VALUES (1); UPDATE x SET a = 1", "INSERT", false).answered, false);
    const lost = Object.assign(new Error("Lost connection"), { errno: 2013, sqlState: "HY000" });
    assert.equal(makeRecord("commit", lost, "COMMIT", "COMMIT", false).answered, false);
  });
});

describe("SQL read-only check", () => {
  const reads = [
    "SELECT 1",
    "  select * from User",
    "/* comment */ SELECT 1",
    "-- note\nSELECT 1",
    "(SELECT 1) UNION (SELECT 2)",
    "SHOW TABLES",
    "EXPLAIN SELECT 1",
    "WITH x AS (SELECT 1) SELECT * FROM x",
    "SELECT * FROM User FOR UPDATE",
    "SELECT 'a;b' AS x",
    "SELECT 1;",
    "SELECT \"DELETE; x\"",
    "SELECT 1 -- ; DELETE FROM x",
    "DESCRIBE Ledger",
    "EXPLAIN Ledger",
    "EXPLAIN FORMAT=JSON SELECT 1",
    "SELECT PREVIOUS VALUE FOR seq",
  ];
  const writes = [
    "INSERT INTO Ledger VALUES (1)",
    "UPDATE User SET balance = 1",
    "DELETE FROM User",
    "REPLACE INTO User VALUES (1)",
    "CALL do_things()",
    "SELECT * FROM User INTO OUTFILE '/tmp/x'",
    "SELECT NEXTVAL(seq)",
    "WITH x AS (SELECT 1) UPDATE User SET balance = 2",
    "/* SELECT */ INSERT INTO Ledger VALUES (1)",
    "",
    // issue 9: executable comments run, EXPLAIN ANALYZE / ANALYZE execute, sequences advance,
    // and a second statement can write.
    "/*!50000 INSERT INTO Ledger VALUES (1) */ SELECT 1",
    "SELECT 1 /*M! , (INSERT INTO x VALUES (1)) */",
    "EXPLAIN ANALYZE DELETE FROM Ledger",
    "ANALYZE DELETE FROM Ledger",
    "EXPLAIN DELETE FROM Ledger",
    "SELECT NEXT VALUE FOR seq",
    "SELECT 1; DELETE FROM Ledger",
    "SELECT 1;DELETE FROM Ledger",
    "SHOW TABLES; DROP TABLE Ledger",
    // a backslash in a literal escapes or not depending on sql_mode (NO_BACKSLASH_ESCAPES): not provable
    "SELECT 'C:\\', NEXTVAL(s)",
    "SELECT 'unterminated",
    "SELECT 1 --\tcomment\n; DELETE FROM Ledger",
  ];
  for (const sql of reads) test(`read: ${JSON.stringify(sql)}`, () => assert.equal(isReadOnlySql(sql), true));
  for (const sql of writes) test(`write: ${JSON.stringify(sql)}`, () => assert.equal(isReadOnlySql(sql), false));
  const implicit = [
    "TRUNCATE TABLE Ledger",
    "CREATE TABLE t (id INT)",
    "ALTER TABLE Ledger ADD COLUMN x INT",
    "DROP TABLE t",
    "LOCK TABLES Ledger WRITE",
    "UNLOCK TABLES",
    "SET autocommit = 1",
    "SET @@autocommit = 1",
    "COMMIT",
    "BEGIN",
    "START TRANSACTION",
    "ROLLBACK",
    "CALL commits_inside()",
    "GRANT SELECT ON app.* TO x",
    "INSERT INTO Ledger VALUES (1); TRUNCATE Ledger",
    "/*!40101 COMMIT */ SELECT 1",
    "ANALYZE TABLE Ledger",
    "RENAME TABLE a TO b",
    "SET STATEMENT max_statement_time=30 FOR TRUNCATE TABLE other",
    "SET DEFAULT ROLE ALL TO app",
    "SET PASSWORD = PASSWORD('x')",
    "INSERT INTO Ledger (note) VALUES ('a\\'; TRUNCATE x; --')",
  ];
  const inside = [
    "INSERT INTO Ledger VALUES (1)",
    "UPDATE Ledger SET amount = 1",
    "SELECT 1",
    "SAVEPOINT s1",
    "ROLLBACK TO SAVEPOINT s1",
    "ROLLBACK TO s1",
    "RELEASE SAVEPOINT s1",
    "SET @x = 1",
    "CREATE TEMPORARY TABLE t (id INT)",
    "DROP TEMPORARY TABLE t",
    "INSERT INTO Ledger (note) VALUES ('COMMIT; TRUNCATE x')",
    "SET STATEMENT max_statement_time=30 FOR UPDATE Ledger SET amount = 1",
    "SET SESSION innodb_lock_wait_timeout = 1",
  ];
  for (const sql of implicit) test(`may commit implicitly: ${JSON.stringify(sql)}`, () => assert.equal(mayCommitImplicitly(sql), true));
  for (const sql of inside) test(`stays in the transaction: ${JSON.stringify(sql)}`, () => assert.equal(mayCommitImplicitly(sql), false));
  test("isAutocommitDml: one INSERT/UPDATE/DELETE/REPLACE, nothing else", () => {
    for (const sql of ["INSERT INTO Ledger VALUES (1)", "  update Ledger set amount = 1", "DELETE FROM Ledger", "REPLACE INTO x VALUES (1)", "INSERT INTO x VALUES ('a;b')"]) {
      assert.equal(isAutocommitDml(sql), true, sql);
    }
    for (const sql of ["SELECT 1", "INSERT INTO x VALUES (1); DELETE FROM x", "TRUNCATE x", "CREATE TABLE x (id INT)", "/*!1 INSERT INTO x VALUES (1) */", "INSERT INTO x VALUES ('C:\\')", "CALL p()"]) {
      assert.equal(isAutocommitDml(sql), false, sql);
    }
  });
  test("multi-statement text is told apart from one statement with a ; in a string", () => {
    assert.equal(isMultiStatement("INSERT INTO x VALUES ('a;b')"), false);
    assert.equal(isMultiStatement("INSERT INTO x VALUES (1);"), false);
    assert.equal(isMultiStatement("INSERT INTO x VALUES (1); INSERT INTO x VALUES (2)"), true);
  });
  test("firstKeyword skips comments and parentheses", () => {
    assert.equal(firstKeyword("/* a */ -- b\n ( select 1)"), "SELECT");
    assert.equal(firstKeyword("COMMIT"), "COMMIT");
  });
});

describe("options", () => {
  test("defaults", () => {
    const o = resolveOptions(undefined);
    assert.equal(o.retries, 1);
    assert.equal(o.deadline, 15_000);
    assert.equal(o.retryTransactions, true);
    assert.deepEqual({ ...o.backoff }, { minTimeout: 100, maxTimeout: 2000, factor: 2, randomize: true });
    assert.ok(Object.isFrozen(o));
  });

  const bad: Array<[string, unknown, RegExp]> = [
    ["not an object", 5, /options must be an object/],
    ["unknown key", { retry: 1 }, /unknown option `retry`/],
    ["negative retries", { retries: -1 }, /`retries` must be a whole number/],
    ["fractional retries", { retries: 1.5 }, /`retries` must be a whole number/],
    ["NaN deadline", { deadline: NaN }, /`deadline` must be a number/],
    ["infinite deadline", { deadline: Infinity }, /`deadline` must be finite/],
    ["string onRetry", { onRetry: "log" }, /`onRetry` must be a function/],
    ["bad flavor", { flavor: "postgres" }, /`flavor` must be "mysql" or "mariadb"/],
    ["backoff not object", { backoff: 3 }, /`backoff` must be an object/],
    ["unknown backoff key", { backoff: { min: 1 } }, /unknown option `backoff.min`/],
    ["max below min", { backoff: { minTimeout: 500, maxTimeout: 100 } }, /maxTimeout/],
    ["factor below 1", { backoff: { factor: 0.5 } }, /`backoff.factor` must be ≥ 1/],
    ["randomize not boolean", { backoff: { randomize: "yes" } }, /`backoff.randomize` must be true or false/],
    ["retryTransactions not boolean", { retryTransactions: 1 }, /`retryTransactions` must be true or false/],
  ];
  for (const [name, value, message] of bad) {
    test(`rejects ${name} with a TypeError`, () => {
      assert.throws(() => resilience(value as any), (e: unknown) => e instanceof TypeError && message.test((e as Error).message));
    });
  }

  test("withResilience rejects what is not an adapter factory", () => {
    assert.throws(() => withResilience({} as any), TypeError);
    assert.throws(() => withResilience(null as any), TypeError);
  });

  const factory = { provider: "mysql", adapterName: "test", connect: async () => ({}) };
  const badAdapterOptions: Array<[string, unknown, RegExp]> = [
    ["not an object", 3, /options must be an object/],
    ["unknown key", { outageWaitMs: 1 }, /unknown option `outageWaitMs`/],
    ["negative outageWait", { outageWait: -1 }, /`outageWait` must be a number of ms ≥ 50/],
    ["verifyCommits not boolean", { verifyCommits: "yes" }, /`verifyCommits` must be true or false/],
    ["verifyTimeout too small", { verifyTimeout: 10 }, /`verifyTimeout` must be a number of ms ≥ 100/],
    ["zero probeInterval", { probeInterval: 0 }, /`probeInterval` must be a number of ms ≥ 1/],
    ["string probeTimeout", { probeTimeout: "1s" }, /`probeTimeout`/],
    ["onStateChange not a function", { onStateChange: true }, /`onStateChange` must be a function/],
    ["killGhostSessions not boolean", { killGhostSessions: "yes" }, /`killGhostSessions` must be true or false/],
    ["refusedMeansStopped not boolean", { refusedMeansStopped: 1 }, /`refusedMeansStopped` must be true or false/],
  ];
  for (const [name, value, message] of badAdapterOptions) {
    test(`withResilience rejects ${name} with a TypeError`, () => {
      assert.throws(() => withResilience(factory, value as any), (e: unknown) => e instanceof TypeError && message.test((e as Error).message));
    });
  }
  test("withResilience accepts its documented options and returns a factory of the same shape", () => {
    const wrapped = withResilience(factory, { outageWait: 100, probeInterval: 20, probeTimeout: 500, killGhostSessions: false, onStateChange: () => undefined });
    assert.equal(wrapped.provider, "mysql");
    assert.equal(typeof wrapped.connect, "function");
    assert.equal(withResilience(wrapped), wrapped, "wrapping twice is a no-op");
  });
});

describe("ResilientTransaction bookkeeping (unit, a fake connection whose status flag says the transaction ended)", () => {
  function fakeTransaction() {
    const conn = { info: { status: 3 }, query: async () => [] };
    const inner: any = {
      provider: "mysql",
      adapterName: "fake",
      options: {},
      conn,
      queryRaw: async () => {
        conn.info.status = 2; // the server ended the transaction: the statement ran outside it
        return { rows: [] };
      },
      executeRaw: async () => {
        await new Promise((r) => setTimeout(r, 5));
        return 1;
      },
      commit: async () => undefined,
      rollback: async () => undefined,
    };
    const handler: any = { suspect: async () => undefined, killGhost: async () => undefined };
    return new ResilientTransaction(inner, handler);
  }

  test("a read and a write in flight together: the first rejection already says a write may have committed", async () => {
    const tx = fakeTransaction();
    const both = Promise.all([tx.queryRaw({ sql: "SELECT 1" }), tx.executeRaw({ sql: "INSERT INTO x VALUES (1)" })]);
    const error = await both.then(
      () => assert.fail("expected a rejection"),
      (e) => e,
    );
    const record = flightOf(error)!;
    assert.equal(record.transactionEnded, true);
    assert.equal(record.committedEarlier, true);
    assert.equal(mayHaveCommitted(record), true);
  });

  test("a read alone outside the transaction: nothing committed, a conflict to re-run; nothing more is sent", async () => {
    const tx = fakeTransaction();
    const error = await tx.queryRaw({ sql: "SELECT 1" }).then(
      () => assert.fail("expected a rejection"),
      (e) => e,
    );
    assert.equal(classify(error), "conflict");
    assert.equal(mayHaveCommitted(flightOf(error)!), false);
    await assert.rejects(tx.executeRaw({ sql: "INSERT INTO x VALUES (1)" }));
    await assert.rejects(tx.commit());
  });
});
