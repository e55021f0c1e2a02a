// Unit tests of the retry budget on recorded error shapes: which failures use up `retries`. The
// behaviour (a P2028 during a Galera node loss re-run within the deadline) is proven on a real
// cluster in test/cluster/galera-errors.test.ts; these pin the rule's edges.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { DatabaseUnavailableError } from "../src/index.ts";

const isDatabaseUnavailable = (e: unknown) => e instanceof DatabaseUnavailableError;
import { resolveOptions, type RetryContext } from "../src/extension/options.ts";
import { retryAfterFailure, type Attempted } from "../src/extension/retry.ts";
import { makeRecord, tag } from "../src/adapter/flight.ts";
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
async function run(errors: unknown[], what: Partial<Attempted>) {
  const seen: RetryContext[] = [];
  const options = resolveOptions({ retries: 1, deadline: 5000, backoff: { minTimeout: 1, maxTimeout: 2 }, onRetry: (c) => seen.push(c) });
  const rest = errors.slice(1);
  const attempt = async () => {
    const next = rest.shift();
    if (next !== undefined) throw next;
    return "ok";
  };
  const outcome = await retryAfterFailure(errors[0], attempt, { operation: "$transaction", scope: "transaction", readOnly: () => false, committing: () => false, startedAt: performance.now(), ...what }, options).then(
    (value) => ({ value, error: undefined as unknown }),
    (error: unknown) => ({ value: undefined, error }),
  );
  return { ...outcome, counted: seen.map((c) => c.counted) };
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
