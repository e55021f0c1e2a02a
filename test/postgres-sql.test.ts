// Unit tests of PostgreSQL's SQL text rules (src/postgres/sql.ts): read-only, several statements,
// statements that end a transaction, autocommit DML. "When unsure: no" is checked as often as "yes".
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { firstKeyword, isAutocommitDml, isMultiStatement, isReadOnlySql, mayCommitImplicitly } from "../src/postgres/sql.ts";

const PRISMA_SELECT = 'SELECT "public"."User"."id", "public"."User"."email" FROM "public"."User" WHERE "public"."User"."id" = $1 LIMIT $2 OFFSET $3';
const PRISMA_INSERT = 'INSERT INTO "public"."Ledger" ("key","amount") VALUES ($1,$2) RETURNING "public"."Ledger"."id"';

describe("isReadOnlySql", () => {
  const yes = [
    PRISMA_SELECT,
    "SELECT 1",
    "  select now()",
    "(SELECT 1) UNION (SELECT 2)",
    "VALUES (1), (2)",
    'TABLE "User"',
    "SHOW statement_timeout",
    "WITH t AS (SELECT 1 AS x) SELECT x FROM t",
    "EXPLAIN SELECT 1",
    "EXPLAIN INSERT INTO t VALUES (1)", // planned, not run
    "SELECT 'a;INSERT' AS s",
    "SELECT $$; DELETE FROM t$$",
    "SELECT 1 -- ; DELETE FROM t",
    'SELECT "update" FROM t',
    "SELECT E'it\\'s'",
  ];
  const no = [
    PRISMA_INSERT,
    "SELECT * FROM t FOR UPDATE",
    "SELECT * FROM t FOR NO KEY UPDATE",
    "SELECT * FROM t FOR SHARE",
    "SELECT * FROM t FOR KEY SHARE",
    "SELECT * INTO newtable FROM t",
    "SELECT nextval('s')",
    "SELECT setval('s', 5)",
    "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
    "WITH t AS (SELECT 1) INSERT INTO u SELECT * FROM t",
    "EXPLAIN ANALYZE SELECT 1",
    "EXPLAIN ANALYSE SELECT 1",
    "EXPLAIN (ANALYZE, BUFFERS) DELETE FROM t",
    "SELECT 1; SELECT 2",
    "SELECT 1; DELETE FROM t",
    "SELECT 'unterminated",
    "SELECT $$unterminated",
    "SELECT 1 /* unterminated",
    "SELECT 'a\\'; DELETE FROM t; --'", // a backslash in a plain literal: opaque
    "DELETE FROM t",
    "CALL p()",
    "DO $$ BEGIN END $$",
    "",
  ];
  for (const sql of yes) test(`read-only: ${sql}`, () => assert.equal(isReadOnlySql(sql), true));
  for (const sql of no) test(`not read-only: ${JSON.stringify(sql)}`, () => assert.equal(isReadOnlySql(sql), false));
});

describe("isMultiStatement", () => {
  test("one statement, trailing ; and comments", () => {
    for (const sql of [PRISMA_SELECT, "SELECT 1;", "SELECT ';'", "SELECT $tag$;$tag$", "SELECT 1 /* ; /* nested ; */ ; */", 'SELECT 1 AS ";"', "SELECT 1 -- ;\n"]) {
      assert.equal(isMultiStatement(sql), false, sql);
    }
  });
  test("two statements, or unreadable text", () => {
    for (const sql of ["SELECT 1; SELECT 2", "INSERT INTO t VALUES (1);COMMIT", "SELECT $a$ x $a$; DELETE FROM t", "SELECT 1 /* /* */ ; DELETE", "SELECT 'x"]) {
      assert.equal(isMultiStatement(sql), true, sql);
    }
  });
  test("$1 is a parameter, not a dollar quote; a$b$ is an identifier", () => {
    assert.equal(isMultiStatement("SELECT $1; SELECT $2"), true);
    assert.equal(isMultiStatement("SELECT a$b$ FROM t WHERE x = $1"), false);
  });
});

describe("mayCommitImplicitly", () => {
  const commits = ["COMMIT", "commit work", "END", "END TRANSACTION", "COMMIT AND CHAIN", "PREPARE TRANSACTION 'x'", "COMMIT PREPARED 'x'", "ROLLBACK PREPARED 'x'", "ABORT", "SELECT 1; COMMIT", "SELECT 'x", "FROBNICATE"];
  // A plain ROLLBACK commits nothing, but what follows it runs on its own and commits alone.
  const ends = ["ROLLBACK", "ROLLBACK WORK", "ROLLBACK AND CHAIN"];
  const stays = [PRISMA_SELECT, PRISMA_INSERT, "UPDATE t SET x = 1", "MERGE INTO t USING u ON true WHEN MATCHED THEN DELETE", "SAVEPOINT a", "RELEASE SAVEPOINT a", "ROLLBACK TO SAVEPOINT a", "ROLLBACK TO a", "ROLLBACK WORK TO SAVEPOINT a", "SET LOCAL statement_timeout = 100", "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", "CREATE TABLE x (id int)", "DROP TABLE x", "TRUNCATE t", "ALTER TABLE t ADD COLUMN y int", "LOCK TABLE t", "PREPARE q AS SELECT 1", "EXECUTE q", "CALL p()", "DO $$ BEGIN COMMIT; END $$"];
  for (const sql of [...commits, ...ends]) test(`ends the transaction: ${sql}`, () => assert.equal(mayCommitImplicitly(sql), true));
  for (const sql of stays) test(`stays in it: ${sql}`, () => assert.equal(mayCommitImplicitly(sql), false));
});

describe("isAutocommitDml and firstKeyword", () => {
  test("single writes", () => {
    for (const sql of [PRISMA_INSERT, "UPDATE t SET x = 1", "delete from t", "MERGE INTO t USING u ON true WHEN MATCHED THEN DELETE", "WITH s AS (SELECT 1) INSERT INTO t SELECT * FROM s", "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d"]) {
      assert.equal(isAutocommitDml(sql), true, sql);
    }
  });
  test("not one: reads, DDL, several statements, unreadable", () => {
    for (const sql of [PRISMA_SELECT, "WITH s AS (SELECT 1) SELECT * FROM s", "CREATE TABLE x (id int)", "INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)", "INSERT INTO t VALUES ('x"]) {
      assert.equal(isAutocommitDml(sql), false, sql);
    }
  });
  test("firstKeyword", () => {
    assert.equal(firstKeyword(" /* c */ commit"), "COMMIT");
    assert.equal(firstKeyword("(select 1)"), "SELECT");
    assert.equal(firstKeyword(PRISMA_INSERT), "INSERT");
    assert.equal(firstKeyword(""), "");
  });
});
