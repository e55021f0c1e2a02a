// A short chaos soak inside `npm test` (the full one is `npm run chaos`): 8 workers on the broad mix
// (every kind of write, hot counters, deadlock-prone transactions), a connection killed every
// 250 ms, wait_timeout = 2, one kill -9 and restart, with and without the adapter wrapper. Nothing
// may fail but with OutcomeUnknownError for a write really in flight on a lost connection; no key
// may have two rows; no acknowledged write or delete may be missing; counters exact.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { runChaos, summary, violations, type ChaosMode } from "./support/chaos.ts";
import { startDatabase, type TestDatabase } from "./support/mariadb.ts";

let db: TestDatabase;
before(async () => {
  db = await startDatabase();
});
after(async () => {
  await db?.stop();
});

for (const mode of ["resilient", "resilient-unwrapped"] as ChaosMode[]) {
  test(`chaos soak, ${mode}: no failure, no duplicate, no lost write`, async () => {
    const result = await runChaos(db, {
      mode,
      durationMs: 6000,
      workers: 8,
      killEveryMs: 250,
      waitTimeout: 2,
      restartAtMs: 3000,
      downMs: 500,
    });
    console.log(JSON.stringify(summary(result)));
    // That the workload ran, not how fast: CI at 3cda263 ran 485 (unwrapped 799, both half their usual
    // on a slow machine), with every data check clean. The mix check below asks > 10 of each kind.
    assert.ok(result.operations > 200, `the workload ran (${result.operations} operations)`);
    assert.ok(result.killed >= 10, `connections were killed (${result.killed})`);
    assert.ok(result.retries > 0, "faults happened and were retried");
    for (const op of ["create-many", "increment", "delete", "raw-insert", "batch", "raw-read", "hot-transaction"]) {
      assert.ok((result.byOperation[op] ?? 0) > 10, `the mix ran ${op} (${result.byOperation[op] ?? 0})`);
    }
    assert.deepEqual(violations(result), []);
  });
}

test("restart storm, resilient: kill -9 every 3 s under the broad mix: nothing fails, nothing is unknown", async () => {
  const result = await runChaos(db, {
    mode: "resilient",
    durationMs: 12_000,
    workers: 8,
    killEveryMs: 0,
    waitTimeout: 2,
    restartAtMs: 2000,
    restartEveryMs: 3000,
    downMs: 500,
  });
  console.log(JSON.stringify(summary(result)));
  assert.ok(result.restarts >= 3, `the server was restarted (${result.restarts} times)`);
  assert.ok(result.operations > 500, `the workload ran (${result.operations} operations)`);
  assert.deepEqual(violations(result), []);
});
