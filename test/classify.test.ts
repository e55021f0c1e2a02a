// Unit tests on recorded and constructed error shapes: the classifier, the "not sent" proof, the SQL
// read-only check and option validation. Behaviour claims are proven in the fault tests; these pin
// the tables.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { classify, provesNotSent, resilience, withResilience } from "../src/index.ts";
import { isAccountConnectionLimit, serverAnswered, unavailableReason } from "../src/mysql/classify.ts";
import { failureOf, refusalOf, type ProbeResult } from "../src/adapter/side.ts";
import { ServerHealth, type StateChange } from "../src/core/health.ts";
import { ResilientTransaction } from "../src/adapter/transaction.ts";
import { flightOf, mayHaveCommitted, tag, type FlightRecord } from "../src/core/flight.ts";
import { makeRecord } from "../src/adapter/record.ts";
import { resolveOptions } from "../src/extension/options.ts";
import { firstKeyword, isAutocommitDml, isMultiStatement, isReadOnlySql, mayCommitImplicitly } from "../src/mysql/sql.ts";
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
    // Not read-only after all (README.md#the-safety-rule): executable comments run, EXPLAIN ANALYZE / ANALYZE execute, sequences advance,
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

// Shapes for an account's answers, thread ids in the driver's text and connect-time socket errors.
// "recorded": seen on MariaDB 10.11 + mariadb 3.4.5 (a user WITH MAX_USER_CONNECTIONS, ACCOUNT LOCK,
// PASSWORD EXPIRE with disconnect_on_expired_password, a connect to a closed port); "hand-built":
// written from a recorded one (another number, another syscall) or a MySQL-only code.

/** A mariadb SqlError as the driver makes it: the header carries the thread id and the error number. */
function sqlError(errno: number, sqlState: string, message: string, threadId = -1, code = "UNKNOWN") {
  return Object.assign(new Error(`(conn:${threadId}, no: ${errno}, SQLState: ${sqlState}) ${message}`), { name: "SqlError", errno, sqlState, sqlMessage: message, code, fatal: true });
}

/** A pool timeout as @prisma/adapter-mariadb maps it (P2039 45028, the pool's last connect error as `cause` text). */
function poolTimeout(cause: string) {
  const message = "pool timeout: failed to retrieve a connection from pool after 10001ms\n    (pool connections: active=0 idle=0 limit=10)";
  const mapped = { originalCode: "45028", originalMessage: message, kind: "mysql", code: 45028, message, state: "HY000", cause };
  const driverAdapterError = Object.assign(new Error(message), { name: "DriverAdapterError", cause: mapped });
  return Object.assign(new Error(`Database error. Code: \`45028\`. Message: \`${message}\``), { name: "PrismaClientKnownRequestError", code: "P2039", clientVersion: "7.10.0", meta: { modelName: "Ledger", driverAdapterError } });
}

/** The pool's 'error' event: "Pool fails to create connection" (45061) around the connect error. */
function poolError(cause: Error) {
  return Object.assign(new Error("(conn:-1, no: 45061, SQLState: HY000) Pool fails to create connection"), { name: "SqlError", errno: 45061, sqlState: "HY000", code: "ER_POOL_NO_CONNECTION", cause });
}

const ACCOUNT_LIMIT_TEXT = "User 'limited' has exceeded the 'max_user_connections' resource (current value: 6)";
// recorded
const accountLimit = sqlError(1226, "42000", ACCOUNT_LIMIT_TEXT, 8, "ER_USER_LIMIT_REACHED");
const locked = sqlError(4151, "HY000", "Access denied, this account is locked", 8, "ER_ACCOUNT_HAS_BEEN_LOCKED");
const expired = sqlError(1862, "HY000", "Your password has expired. To log in you must change it using a client that supports expired passwords", 6, "ER_MUST_CHANGE_PASSWORD_LOGIN");
// hand-built: MySQL's number for a locked account; an hourly quota (same number, another resource)
const lockedMysql = sqlError(3118, "HY000", "Access denied for user 'limited'@'localhost'. Account is locked.", 9, "ER_ACCOUNT_HAS_BEEN_LOCKED");
const hourlyQuota = sqlError(1226, "42000", "User 'limited' has exceeded the 'max_questions' resource (current value: 100)", 8, "ER_USER_LIMIT_REACHED");

describe("an answer about the account is not an outage", () => {
  test("a side connection refused for the account's connection limit (1226, recorded) finds the server there", () => {
    assert.deepEqual(failureOf(accountLimit), { ok: true });
  });
  test("too many connections (1040, 1203; hand-built) too", () => {
    assert.deepEqual(failureOf(sqlError(1040, "08004", "Too many connections", -1, "ER_CON_COUNT_ERROR")), { ok: true });
    assert.deepEqual(failureOf(sqlError(1203, "42000", "User limited already has more than 'max_user_connections' active connections", 5)), { ok: true });
  });
  test("a locked account (4151 recorded, 3118 hand-built) is a refusal of the account: access", () => {
    assert.equal(refusalOf(locked)?.reason, "access");
    assert.equal(refusalOf(lockedMysql)?.reason, "access");
    assert.equal((failureOf(locked) as any).refusal, "access");
    assert.equal(refusalOf(poolTimeout(locked.message))?.reason, "access");
  });
  test("an expired password at login (1862, recorded) is a refusal of the account: auth", () => {
    assert.equal(refusalOf(expired)?.reason, "auth");
    assert.equal((failureOf(expired) as any).refusal, "auth");
    assert.equal(refusalOf(poolTimeout(expired.message))?.reason, "auth");
  });
  test("the account's connection limit is not a refusal, on a connection, in the pool's error event or in a pool timeout", () => {
    assert.equal(refusalOf(accountLimit), undefined);
    assert.equal(refusalOf(poolError(accountLimit)), undefined);
    assert.equal(refusalOf(poolTimeout(accountLimit.message)), undefined);
  });
  test("1226 for max_user_connections on a connection: unavailable, not sent, answered (recorded)", () => {
    assert.equal(classify(accountLimit), "unavailable");
    assert.equal(provesNotSent(accountLimit), true);
    assert.equal(serverAnswered(accountLimit), true);
    assert.equal(unavailableReason(accountLimit), "account connection limit");
  });
  test("a pool timeout whose last connect error is the account's limit: unavailable, not sent (cause recorded, wrapper hand-built)", () => {
    for (const cause of [accountLimit.message, `(conn:-1, no: 1226, SQLState: 42000) ${ACCOUNT_LIMIT_TEXT}`]) {
      const e = poolTimeout(cause);
      assert.equal(classify(e), "unavailable", cause);
      assert.equal(provesNotSent(e), true);
      assert.equal(unavailableReason(e), "account connection limit");
    }
  });
  test("the account's limit is told apart in the pool's error event, a pool timeout and on its own; other causes are not it", () => {
    assert.equal(isAccountConnectionLimit(accountLimit), true);
    assert.equal(isAccountConnectionLimit(poolError(accountLimit)), true);
    assert.equal(isAccountConnectionLimit(poolTimeout(accountLimit.message)), true);
    assert.equal(isAccountConnectionLimit(poolError(sqlError(45009, "08S01", "socket has unexpectedly been closed", 1226))), false, "thread 1226");
    assert.equal(isAccountConnectionLimit(poolTimeout("(conn:1226, no: 45009, SQLState: 08S01) socket has unexpectedly been closed")), false, "thread 1226");
    assert.equal(isAccountConnectionLimit(poolTimeout("(conn:-1, no: 1040, SQLState: 08004) Too many connections")), false, "the server's max_connections");
    assert.equal(isAccountConnectionLimit(hourlyQuota), false);
  });
  test("1226 for an hourly quota (max_questions, hand-built) is not cured by waiting: fatal", () => {
    assert.equal(classify(hourlyQuota), "fatal");
    assert.equal(classify(poolTimeout(hourlyQuota.message)), "fatal");
  });
  test("a locked account or an expired password is fatal, also behind a pool timeout", () => {
    for (const e of [locked, lockedMysql, expired]) {
      assert.equal(classify(e), "fatal", e.message);
      assert.equal(classify(poolTimeout(e.message)), "fatal", e.message);
    }
  });

  test("a side connection lost half-way is not an outage by itself: a probe decides (unit, a fake side whose probe finds the server up)", async () => {
    const changes: StateChange[] = [];
    let probes = 0;
    const side: any = { canConnect: true, probe: async (): Promise<ProbeResult> => (probes++, { ok: true }), close() {} };
    const hooks = { onDown() {}, onRefused() {}, reconnect: async () => undefined, url: () => "mysql://app:****@db:3306/app" };
    const health = new ServerHealth({ outageWait: 100, probeInterval: 20, probeTimeout: 100, onStateChange: (c) => changes.push(c) }, side, hooks);
    try {
      health.judge(failureOf(sqlError(45009, "08S01", "socket has unexpectedly been closed", 1045, "ER_SOCKET_UNEXPECTED_CLOSE")));
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(health.state, "up");
      assert.deepEqual(changes, []);
      assert.ok(probes >= 1, "a probe was made");
      // An account's answer never even needs the probe.
      health.judge(failureOf(accountLimit));
      assert.equal(health.state, "up");
      // A refused connection is still an outage.
      health.judge(failureOf(Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), { code: "ECONNREFUSED", errno: -111, syscall: "connect" })));
      assert.equal(health.state, "down");
    } finally {
      health.close();
    }
  });
});

describe("a thread id in the driver's text is not an error number", () => {
  // conn:NNNN is the connection's thread id: after a server start it passes every number.
  for (const id of [1044, 1045, 1049, 1130, 1698, 28000]) {
    const lost = `(conn:${id}, no: 45009, SQLState: 08S01) socket has unexpectedly been closed`;
    test(`a pool timeout whose last connect error is a lost socket on thread ${id}: unavailable, not a refusal (cause text recorded for thread 1045 from a mariadb pool whose connect lost its socket; other ids and the Prisma wrapper hand-built)`, () => {
      const e = poolTimeout(lost);
      assert.equal(classify(e), "unavailable");
      assert.equal(refusalOf(e), undefined);
      assert.equal(provesNotSent(e), true);
    });
    test(`the pool's error event for a lost socket on thread ${id} is not a refusal (hand-built)`, () => {
      assert.equal(refusalOf(poolError(sqlError(45009, "08S01", "socket has unexpectedly been closed", id, "ER_SOCKET_UNEXPECTED_CLOSE"))), undefined);
    });
  }
  test("the error number itself still counts: no: 1045 behind a pool timeout is fatal and a refusal (recorded)", () => {
    const e = poolTimeout("(conn:1045, no: 1045, SQLState: 28000) Access denied for user 'app'@'127.0.0.1' (using password: YES)");
    assert.equal(classify(e), "fatal");
    assert.equal(refusalOf(e)?.reason, "auth");
  });
  test("a too-many-connections answer on thread 1130 is not an access refusal (hand-built)", () => {
    const e = poolTimeout("(conn:1130, no: 1040, SQLState: 08004) Too many connections");
    assert.equal(classify(e), "unavailable");
    assert.equal(refusalOf(e), undefined);
  });
});

describe("unreachable or refused proves 'not sent' only when connecting", () => {
  const nodeError = (code: string, syscall: string, message: string) => Object.assign(new Error(message), { code, errno: -111, syscall, fatal: true, sqlState: "HY000" });
  test("ECONNREFUSED from connect() (recorded): not sent", () => {
    assert.equal(provesNotSent(nodeError("ECONNREFUSED", "connect", "connect ECONNREFUSED 127.0.0.1:1")), true);
  });
  test("EHOSTUNREACH / ENETUNREACH from connect() (hand-built): not sent", () => {
    assert.equal(provesNotSent(nodeError("EHOSTUNREACH", "connect", "connect EHOSTUNREACH 10.0.0.9:3306")), true);
    assert.equal(provesNotSent(nodeError("ENETUNREACH", "connect", "connect ENETUNREACH 10.0.0.9:3306")), true);
  });
  test("a DNS failure (getaddrinfo EAI_AGAIN, hand-built): not sent", () => {
    assert.equal(provesNotSent(nodeError("EAI_AGAIN", "getaddrinfo", "getaddrinfo EAI_AGAIN db.internal")), true);
  });
  for (const [code, syscall] of [["ECONNREFUSED", "read"], ["EHOSTUNREACH", "read"], ["ENETUNREACH", "write"], ["ENETDOWN", "read"], ["EHOSTUNREACH", "write"]]) {
    test(`${code} on an established socket (${syscall}, hand-built): may have been sent`, () => {
      const e = nodeError(code, syscall, `${syscall} ${code}`);
      assert.equal(provesNotSent(e), false);
      const record = makeRecord("commit", e, "COMMIT", "COMMIT", false);
      assert.equal(record.notSent, false);
      assert.equal(mayHaveCommitted(record), true, "a COMMIT that failed so may have committed");
    });
  }
  test("rebuilt by Prisma (code and message only): the message's syscall tells (hand-built)", () => {
    const rebuilt = (code: string, message: string) => Object.assign(new Error(message), { name: "PrismaClientKnownRequestError", code, clientVersion: "7.10.0", meta: { modelName: "Ledger" } });
    assert.equal(provesNotSent(rebuilt("ECONNREFUSED", "connect ECONNREFUSED 127.0.0.1:3306")), true);
    assert.equal(provesNotSent(rebuilt("EHOSTUNREACH", "read EHOSTUNREACH")), false);
    assert.equal(provesNotSent(rebuilt("ENETUNREACH", "write ENETUNREACH")), false);
  });
  test("EPIPE (the write itself failed) is still not sent", () => {
    assert.equal(provesNotSent(nodeError("EPIPE", "write", "write EPIPE")), true);
  });
});
