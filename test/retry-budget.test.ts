// Unit tests of the retry budget on recorded error shapes: which failures use up `retries`. The
// behaviour (a P2028 during a Galera node loss re-run within the deadline) is proven on a real
// cluster in test/cluster/galera-errors.test.ts; these pin the rule's edges.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { DatabaseUnavailableError } from "../src/index.ts";

const isDatabaseUnavailable = (e: unknown) => e instanceof DatabaseUnavailableError;
import { resolveOptions, type RetryContext } from "../src/extension/options.ts";
import { retryAfterFailure, type Attempted } from "../src/core/retry.ts";
import { mysqlDialect } from "../src/mysql/dialect.ts";
import { tag } from "../src/core/flight.ts";
import { makeRecord } from "../src/adapter/record.ts";
import { shapes } from "./fixtures/error-shapes.ts";

const shape = (name: string) => {
  const s = shapes.find((x) => x.name === name);
  if (!s) throw new Error(`no recorded shape ${name}`);
  return s.error;
};
const P2028 = shape("P2028 unable to start a transaction");
const LOST = shape("killed during a model query (P2039 45009)");
const STALE = shape("EPIPE rebuilt by Prisma");

/** Runs the retry loop: `errors` are the failures of the first attempts, then the call succeeds. */
async function run(errors: unknown[], what: Partial<Attempted>, onAttempt?: () => void) {
  const seen: RetryContext[] = [];
  const options = resolveOptions({ retries: 1, deadline: 5000, backoff: { minTimeout: 1, maxTimeout: 2 }, onRetry: (c) => seen.push(c) });
  const rest = errors.slice(1);
  const attempt = async () => {
    onAttempt?.();
    const next = rest.shift();
    if (next !== undefined) throw next;
    return "ok";
  };
  const outcome = await retryAfterFailure(errors[0], attempt, { dialect: mysqlDialect, operation: "$transaction", scope: "transaction", readOnly: () => false, committing: () => false, startedAt: performance.now(), ...what }, options).then(
    (value) => ({ value, error: undefined as unknown }),
    (error: unknown) => ({ value: undefined, error }),
  );
  return { ...outcome, counted: seen.map((c) => c.counted), delays: seen.map((c) => c.delayMs) };
}

describe("P2028 and the retry budget", () => {
  test("without a fault around it, P2028 uses up `retries` (a busy pool): the second one gives up", async () => {
    const r = await run([P2028, P2028], { recentFault: () => false });
    assert.ok(isDatabaseUnavailable(r.error), `gave up: ${(r.error as any)?.name}`);
    assert.deepEqual(r.counted, [true]);
  });

  test("when the adapter met a fault lately, P2028 costs time only", async () => {
    const r = await run([P2028, P2028, P2028], { recentFault: () => true });
    assert.equal(r.value, "ok");
    assert.deepEqual(r.counted, [false, false, false]);
  });

  test("after this call lost its connection (its one counted retry), a P2028 costs time only", async () => {
    const r = await run([LOST, P2028, P2028], { recentFault: () => false });
    assert.equal(r.value, "ok");
    assert.deepEqual(r.counted, [true, false, false]);
  });

  test("a dead pooled connection replaced before anything was sent is no fault of the call's own (the adapter judges the close): a P2028 after it still counts", async () => {
    const r = await run([STALE, P2028, P2028], { scope: "operation", operation: "findMany", readOnly: () => true, committing: undefined, recentFault: () => false });
    assert.ok(isDatabaseUnavailable(r.error), `gave up: ${(r.error as any)?.name}`);
    assert.deepEqual(r.counted, [false, true]);
  });

  test("a connection lost while the server was down (free: the outage's time) opens the window too", async () => {
    const lost = Object.assign(new Error("socket has unexpectedly been closed"), { name: "DriverAdapterError", errno: 45009, sqlState: "08S01" });
    tag(lost, makeRecord("statement", lost, "UPDATE x SET a = 1", "UPDATE", false, { duringOutage: true }));
    const r = await run([lost, P2028, P2028], { recentFault: () => false });
    assert.equal(r.value, "ok");
    assert.deepEqual(r.counted, [false, false, false]);
  });

  test("a P2028 does not open the window for the next one", async () => {
    const r = await run([P2028, P2028], {});
    assert.ok(isDatabaseUnavailable(r.error));
    assert.deepEqual(r.counted, [true]);
  });
});

describe("lost connections and the retry budget", () => {
  const lostAt = (phase: "statement" | "begin") => {
    const e = Object.assign(new Error("read ECONNRESET"), { name: "DriverAdapterError", code: "ECONNRESET", errno: -104 });
    tag(e, makeRecord(phase, e, phase === "begin" ? "BEGIN" : "UPDATE x SET a = 1", phase === "begin" ? "BEGIN" : "UPDATE", false));
    return e;
  };

  test("two connections lost inside a transaction, no outage around them: the second is the caller's (retries: 1)", async () => {
    const second = lostAt("statement");
    const r = await run([lostAt("statement"), second], { outageAfter: () => false });
    assert.equal(r.error, second);
    assert.deepEqual(r.counted, [true]);
  });

  test("a counted loss that the server's outage explains afterwards (found down just after it) is given back", async () => {
    const losses: number[] = [];
    const r = await run([lostAt("statement"), lostAt("statement")], {
      outageAfter: (t) => {
        losses.push(t);
        return true;
      },
    });
    assert.equal(r.value, "ok");
    assert.deepEqual(r.counted, [true, true], "each looked counted when it was retried; the first was given back when the second came");
    assert.equal(losses.length, 1, "asked about the first loss only, once the budget ran out");
  });

  test("only a loss that the outage explains is given back: a third loss, long after, fails", async () => {
    const third = lostAt("statement");
    let first: number | undefined;
    const r = await run([lostAt("statement"), lostAt("statement"), third], {
      outageAfter: (t) => (first ??= t) === t,
    });
    assert.equal(r.error, third);
    assert.deepEqual(r.counted, [true, true]);
  });

  test("a connection lost at BEGIN (withResilience: nothing of the transaction ran) costs no retry", async () => {
    const r = await run([lostAt("statement"), lostAt("begin"), lostAt("begin")], {});
    assert.equal(r.value, "ok");
    assert.deepEqual(r.counted, [true, false, false]);
  });

  test("without the wrapper: a connection lost before the callback was entered costs no retry, one inside it does", async () => {
    const raw = () => Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET", errno: -104, sqlState: "HY000" });
    const third = raw();
    // inside the callback, then before it (at BEGIN), then inside it again
    const enteredAtEachFailure = [true, false, true];
    let failure = 0;
    const r = await run([raw(), raw(), third], { entered: () => enteredAtEachFailure[failure++] });
    assert.equal(r.error, third, "the third loss, inside the callback again, is over the budget");
    assert.deepEqual(r.counted, [true, false], "the first loss used the retry, the one before the callback was free");
  });

  test("a connection lost at BEGIN of another transaction inside the callback (the outer client) is not the outer one's stale connection", async () => {
    const r = await run([lostAt("begin"), lostAt("begin")], { entered: () => true });
    assert.ok(r.error, "the second loss is over the budget");
    assert.deepEqual(r.counted, [true]);
  });

  test("connections lost while opening a transaction: the first re-run at once, the next ones after a wait", async () => {
    const r = await run([lostAt("begin"), lostAt("begin"), lostAt("begin")], {});
    assert.equal(r.value, "ok");
    assert.deepEqual(r.counted, [false, false, false]);
    assert.equal(r.delays[0], 0);
    assert.ok(r.delays[1] > 0 && r.delays[2] > 0, `waits ${JSON.stringify(r.delays)}`);
  });

  test("without the wrapper: a connection lost before the callback (a restart) opens the P2028 window like any lost connection", async () => {
    const raw = Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET", errno: -104, sqlState: "HY000" });
    const r = await run([raw, P2028, P2028, P2028], { entered: () => false });
    assert.equal(r.value, "ok");
    assert.deepEqual(r.counted, [false, false, false, false]);
  });
});

describe("$disconnect() and the retry loop", () => {
  const DEADLOCK = shape("P2034 write conflict / deadlock");
  test("$disconnect() during the wait before a re-run: no re-run, the caller gets the error", async () => {
    let stopped = false;
    let attempts = 0;
    const options = resolveOptions({ retries: 1, deadline: 5000, backoff: { minTimeout: 300, maxTimeout: 300, randomize: false } });
    const started = performance.now();
    setTimeout(() => (stopped = true), 100);
    const error = await retryAfterFailure(
      DEADLOCK,
      async () => {
        attempts++;
        return "written";
      },
      { dialect: mysqlDialect, operation: "create", scope: "operation", readOnly: () => false, stopped: () => stopped, startedAt: started },
      options,
    ).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.equal(attempts, 0, "not re-run");
    assert.equal(error, DEADLOCK);
    assert.ok(performance.now() - started >= 250, "it was waiting when $disconnect() came");
  });
});
