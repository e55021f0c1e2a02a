// The judgement after a flight whose BEGIN was refused (src/adapter/pipelined-begin.ts
// afterRefusedBegin), on hand-built error shapes of the mariadb driver (errno, sqlState, fatal as
// mariadb 3.4 sets them). Proven against a real server in test/one-flight.test.ts; here every
// combination of replies the real-server tests cannot force.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { afterRefusedBegin, type Reply } from "../src/adapter/pipelined-begin.ts";

const answered = (errno: number, sqlState = "42000") => Object.assign(new Error(`answered ${errno}`), { errno, sqlState, sqlMessage: `answered ${errno}`, fatal: false });
const lost = () => Object.assign(new Error("socket has unexpectedly been closed"), { errno: 45009, code: "ER_SOCKET_UNEXPECTED_CLOSE", sqlState: "08S01", fatal: true });
const killed = () => Object.assign(new Error("Connection was killed"), { errno: 1927, sqlState: "70100", sqlMessage: "Connection was killed", fatal: true });
const OK: Reply = { ok: {} };
const err = (e: unknown): Reply => ({ error: e });

function judge(
  begun: Reply,
  fenced: Reply,
  statement: { n: number } | { error: unknown },
  mark: { affectedRows?: number } | { error: unknown },
  { commit = true as unknown, galera = false, rollbackOnTimeout }: { commit?: unknown; galera?: boolean; rollbackOnTimeout?: boolean } = {},
) {
  const switchedOff: unknown[] = [];
  const outcome = afterRefusedBegin([begun, fenced], statement, mark, commit, { fenceFailed: (e) => switchedOff.push(e), silentAbortPossible: galera, rollbackOnTimeout });
  return { outcome, switchedOff: switchedOff.length };
}

describe("after a refused BEGIN in one flight", () => {
  test("BEGIN opened the transaction: the usual path, whatever the fence answered", () => {
    for (const fence of [OK, err(killed()), err(lost()), err(answered(1317, "70100"))]) {
      assert.equal(judge(OK, fence, { n: 1 }, { affectedRows: 1 }).outcome, undefined);
    }
  });
  test("BEGIN's reply lost: the usual path (the mark decides)", () => {
    assert.equal(judge(err(lost()), err(lost()), { error: lost() }, { error: lost() }).outcome, undefined);
  });
  test("BEGIN refused, the fence fired (1927), nothing answered after it: BEGIN's answer", () => {
    const begin = answered(1064);
    assert.deepEqual(judge(err(begin), err(killed()), { error: lost() }, { error: lost() }).outcome, { begin, refused: begin });
  });
  test("BEGIN refused, the fence's reply lost behind BEGIN's answer, nothing answered after it: BEGIN's answer", () => {
    const begin = answered(1064);
    assert.deepEqual(judge(err(begin), err(lost()), { error: lost() }, { error: lost() }).outcome, { begin, refused: begin });
  });
  test("a 1927 is not trusted when the statement answered after it: it ran, on its own", () => {
    const begin = answered(1064);
    assert.deepEqual(judge(err(begin), err(killed()), { n: 1 }, { affectedRows: 0 }).outcome, { begin, n: 1 });
  });
  test("BEGIN and the fence refused, the statement ran, the mark found no transaction: acknowledged (it committed alone)", () => {
    const begin = answered(1064);
    assert.deepEqual(judge(err(begin), err(answered(1317, "70100")), { n: 3 }, { affectedRows: 0 }).outcome, { begin, n: 3 });
  });
  test("BEGIN and the fence refused, the mark written (autocommit=0): the usual path (the COMMIT decides)", () => {
    assert.equal(judge(err(answered(1064)), err(answered(1317, "70100")), { n: 1 }, { affectedRows: 1 }).outcome, undefined);
  });
  test("BEGIN and the fence refused, the statement answered an error: its own answer", () => {
    const dup = answered(1062, "23000");
    assert.deepEqual(judge(err(answered(1064)), err(answered(1317, "70100")), { error: dup }, { affectedRows: 0 }).outcome?.["answered" as never], dup);
  });
  test("BEGIN and the fence refused, the statement's reply lost: unknown", () => {
    const outcome = judge(err(answered(1064)), err(answered(1317, "70100")), { error: lost() }, { error: lost() }).outcome;
    assert.ok(outcome && "unknown" in outcome, JSON.stringify(outcome));
  });
  test("BEGIN and the fence refused, the statement ran, the mark refused alone, the COMMIT answered OK: acknowledged (committed alone, or by that COMMIT)", () => {
    const begin = answered(1064);
    for (const mark of [answered(1146, "42S02"), answered(1142), answered(1317, "70100")]) {
      assert.deepEqual(judge(err(begin), err(answered(1317, "70100")), { n: 2 }, { error: mark }).outcome, { begin, n: 2 }, `${(mark as any).errno}`);
    }
  });
  test("BEGIN and the fence refused, the statement ran, the mark refused, the COMMIT failed: unknown (committed alone, or not at all)", () => {
    for (const commit of [lost(), answered(1180, "HY000")]) {
      const outcome = judge(err(answered(1064)), err(answered(1317, "70100")), { n: 1 }, { error: answered(1146, "42S02") }, { commit }).outcome;
      assert.ok(outcome && "unknown" in outcome, JSON.stringify(outcome));
    }
  });
  test("BEGIN and the fence refused, the statement ran, a deadlock answered to the mark: unknown (with autocommit=0 it rolled the statement back)", () => {
    for (const mark of [answered(1213, "40001"), answered(1205, "HY000"), answered(1206, "HY000")]) {
      const outcome = judge(err(answered(1064)), err(answered(1317, "70100")), { n: 1 }, { error: mark }).outcome;
      assert.ok(outcome && "unknown" in outcome, JSON.stringify(outcome));
    }
  });
  test("BEGIN and the fence refused, the statement ran, the mark refused alone, the COMMIT OK, on a Galera node: unknown (a brute-force abort can end what autocommit=0 opened silently)", () => {
    const outcome = judge(err(answered(1064)), err(answered(1317, "70100")), { n: 1 }, { error: answered(1146, "42S02") }, { galera: true }).outcome;
    assert.ok(outcome && "unknown" in outcome, JSON.stringify(outcome));
  });
  test("BEGIN and the fence refused, the statement ran, a lock wait timeout answered to the mark with innodb_rollback_on_timeout known off: acknowledged (it rolls back only the mark)", () => {
    const begin = answered(1064);
    assert.deepEqual(judge(err(begin), err(answered(1317, "70100")), { n: 1 }, { error: answered(1205, "HY000") }, { rollbackOnTimeout: false }).outcome, { begin, n: 1 });
  });
  test("BEGIN and the fence refused, the statement ran, the mark found no transaction on a Galera node: unknown (a brute-force abort can end one silently)", () => {
    const outcome = judge(err(answered(1064)), err(answered(1317, "70100")), { n: 1 }, { affectedRows: 0 }, { galera: true }).outcome;
    assert.ok(outcome && "unknown" in outcome, JSON.stringify(outcome));
  });
  test("BEGIN refused, the fence answered OK (a transaction was open after all): the usual path", () => {
    assert.equal(judge(err(answered(1064)), OK, { n: 1 }, { affectedRows: 1 }).outcome, undefined);
    assert.equal(judge(err(answered(1064)), OK, { error: lost() }, { error: lost() }).outcome, undefined);
  });
  test("BEGIN refused, the fence refused as unsupported, the statement's reply lost: unknown (it may have run on its own)", () => {
    const { outcome, switchedOff } = judge(err(answered(1064)), err(answered(1064)), { error: lost() }, { error: lost() });
    assert.ok(outcome && "unknown" in outcome, JSON.stringify(outcome));
    assert.equal(switchedOff, 1);
  });
  test("BEGIN and the fence refused, the statement provably never sent (the connection already closed): its own error, not unknown", () => {
    const unsent = Object.assign(new Error("Cannot execute new commands: connection closed"), { errno: 45013, code: "ER_CMD_CONNECTION_CLOSED", sqlState: "08S01", fatal: true });
    const outcome = judge(err(answered(1064)), err(answered(1317, "70100")), { error: unsent }, { error: unsent }).outcome;
    assert.deepEqual(outcome?.["answered" as never], unsent);
  });
  test("the path is switched off by a fence the server cannot run, not by a transient answer", () => {
    for (const errno of [1064, 1149, 1235, 1314]) assert.equal(judge(OK, err(answered(errno)), { n: 1 }, { affectedRows: 1 }).switchedOff, 1, `${errno}`);
    for (const errno of [1064, 1235]) assert.equal(judge(err(answered(1064)), err(answered(errno)), { n: 1 }, { affectedRows: 0 }).switchedOff, 1, `both refused, ${errno}`);
    for (const [errno, state] of [[1317, "70100"], [1969, "70100"], [1047, "08S01"], [1226, "42000"], [1213, "40001"]] as const) {
      assert.equal(judge(OK, err(answered(errno, state)), { n: 1 }, { affectedRows: 1 }).switchedOff, 0, `${errno}`);
    }
    assert.equal(judge(err(answered(1064)), err(killed()), { error: lost() }, { error: lost() }).switchedOff, 0, "a fence that fired works");
  });
});
