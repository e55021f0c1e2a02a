// The chaos soak's bound on operations that lost their connection on every attempt by chance
// (test/support/chaos.ts allowedByChance): it follows the run's own latencies, and still catches
// re-runs that fail for a reason of their own.
import assert from "node:assert/strict";
import { test } from "node:test";
import { allowedByChance } from "./support/chaos.ts";

const run = (latencies: number[]) => ({ samples: latencies.map((latencyMs) => ({ latencyMs })) as any, killed: 20, durationMs: 6000, workers: 8 });

test("fast operations (a re-run of ~10 ms): the bound stays at 2", () => {
  assert.equal(allowedByChance(run(Array(2000).fill(10))), 2);
});

test("a loaded machine's slow tail (CI: 1 400 operations, p50 17 ms, 30 of 300-500 ms): a few more allowed, not tens", () => {
  const latencies = [...Array(1370).fill(17), ...Array(30).fill(400)];
  const allowed = allowedByChance(run(latencies));
  assert.ok(allowed >= 3 && allowed <= 6, `allowed ${allowed}`);
  // Re-runs failing of their own accord fail every operation that lost a connection once (15 in that run).
  assert.ok(15 > allowed);
});

test("operations that failed that way do not raise their own bound (15 re-runs hanging 3 s each)", () => {
  const fast = Array(1400).fill(17).map((latencyMs) => ({ latencyMs }));
  const hung = Array(15).fill(3000).map((latencyMs) => ({ latencyMs, lostOnEveryAttempt: true }));
  const allowed = allowedByChance({ samples: [...fast, ...hung] as any, killed: 20, durationMs: 6000, workers: 8 });
  assert.ok(allowed < 15, `allowed ${allowed}`);
  assert.equal(allowed, 2);
});
