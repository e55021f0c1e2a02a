// Unit tests of the PostgreSQL classifier (src/postgres/classify.ts) over recorded and constructed
// error shapes (test/fixtures/pg-error-shapes.ts), and of the dialect seam. Behaviour is proven
// against a real server in test/postgres-unwrapped.test.ts.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { classify, isAccountConnectionLimit, isTransactionStartTimeout, provesNotSent, serverAnswered, unavailableReason } from "../src/postgres/classify.ts";
import { pgDialect } from "../src/postgres/dialect.ts";
import { classify as mysqlClassify } from "../src/mysql/classify.ts";
import { pgShapes } from "./fixtures/pg-error-shapes.ts";

describe("postgres classify", () => {
  for (const shape of pgShapes) {
    test(`${shape.name} → ${shape.expected} (${shape.source})`, () => assert.equal(classify(shape.error), shape.expected));
  }
  test("never uses instanceof: a JSON copy of each shape classifies the same", () => {
    const copy = (e: any): any => {
      if (e === null || typeof e !== "object") return e;
      const out: any = {};
      for (const k of Object.getOwnPropertyNames(e)) if (k !== "stack") out[k] = copy(e[k]);
      return out;
    };
    for (const shape of pgShapes) assert.equal(classify(copy(shape.error)), shape.expected, shape.name);
  });
  test("the recorded set covers every fault the recorder produced", () => {
    assert.ok(pgShapes.filter((s) => s.source === "recorded").length >= 20);
  });
});

describe("postgres provesNotSent / serverAnswered", () => {
  for (const shape of pgShapes.filter((s) => s.notSent !== undefined)) {
    test(`${shape.name}: ${shape.notSent ? "not sent" : "may have been sent"}`, () => assert.equal(provesNotSent(shape.error), shape.notSent));
  }
  for (const shape of pgShapes.filter((s) => s.answered !== undefined)) {
    test(`${shape.name}: ${shape.answered ? "answered (not applied)" : "no answer"}`, () => assert.equal(serverAnswered(shape.error), shape.answered));
  }
  test("a lost connection is never both unsent-proven and answered", () => {
    for (const shape of pgShapes.filter((s) => s.expected === "connection-lost")) {
      assert.ok(!(provesNotSent(shape.error) && serverAnswered(shape.error)), shape.name);
    }
  });
});

describe("postgres helpers", () => {
  const byName = (part: string) => pgShapes.find((s) => s.name.includes(part))!.error;
  test("unavailableReason names the cause", () => {
    assert.equal(unavailableReason(byName("starting up")), "starting up");
    assert.equal(unavailableReason(byName("shutting down")), "shutting down");
    assert.equal(unavailableReason(byName("server stopped (immediate)")), "connection refused");
    assert.equal(unavailableReason(byName("pg-pool connect timeout")), "timed out");
    assert.equal(unavailableReason(byName("while the pool is full")), "pool timeout");
    assert.equal(unavailableReason(byName("max_connections")), "too many connections");
    assert.equal(unavailableReason(byName("role CONNECTION LIMIT")), "account connection limit");
  });
  test("isAccountConnectionLimit: a role's limit, not max_connections", () => {
    assert.equal(isAccountConnectionLimit(byName("role CONNECTION LIMIT")), true);
    assert.equal(isAccountConnectionLimit(byName("max_connections")), false);
  });
  test("isTransactionStartTimeout: P2028 'unable to start' only", () => {
    assert.equal(isTransactionStartTimeout(byName("P2028")), true);
    assert.equal(isTransactionStartTimeout(byName("deadlock")), false);
  });
  test("pgDialect is the postgres rules, frozen", () => {
    assert.equal(pgDialect.name, "postgres");
    assert.ok(Object.isFrozen(pgDialect));
    for (const shape of pgShapes) assert.equal(pgDialect.classify(shape.error), shape.expected, shape.name);
  });
  test("the MySQL classifier does not understand these shapes: why a dialect per database", () => {
    // The plain pg errors and 57P01 are "fatal" to MySQL's rules.
    assert.equal(mysqlClassify(byName("between statements")), "fatal");
    assert.equal(mysqlClassify(byName("during an autocommit create")), "fatal");
  });
});
