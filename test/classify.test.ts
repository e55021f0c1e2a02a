// Unit tests on recorded and constructed error shapes: the classifier, the "not sent" proof, the SQL
// read-only check and option validation. Behaviour claims are proven in the fault tests; these pin
// the tables.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { classify, provesNotSent, resilience, withResilience } from "../src/index.ts";
import { mayHaveCommitted, type FlightRecord } from "../src/adapter/flight.ts";
import { resolveOptions } from "../src/extension/options.ts";
import { firstKeyword, isReadOnlySql } from "../src/adapter/sql.ts";
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

describe("provesNotSent", () => {
  for (const shape of shapes.filter((s) => s.notSent !== undefined)) {
    test(`${shape.name}: ${shape.notSent ? "not sent" : "may have been sent"}`, () => {
      assert.equal(provesNotSent(shape.error), shape.notSent);
    });
  }
});

describe("mayHaveCommitted", () => {
  const record = (r: Partial<FlightRecord>): FlightRecord => ({ phase: "statement", statement: "INSERT", readOnly: false, notSent: false, ...r });
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
  ];
  for (const sql of reads) test(`read: ${JSON.stringify(sql)}`, () => assert.equal(isReadOnlySql(sql), true));
  for (const sql of writes) test(`write: ${JSON.stringify(sql)}`, () => assert.equal(isReadOnlySql(sql), false));
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
    ["negative outageWait", { outageWait: -1 }, /`outageWait` must be a number of ms ≥ 0/],
    ["zero probeInterval", { probeInterval: 0 }, /`probeInterval` must be a number of ms ≥ 1/],
    ["string probeTimeout", { probeTimeout: "1s" }, /`probeTimeout`/],
    ["onStateChange not a function", { onStateChange: true }, /`onStateChange` must be a function/],
    ["killGhostSessions not boolean", { killGhostSessions: "yes" }, /`killGhostSessions` must be true or false/],
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
