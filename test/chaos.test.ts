// A short chaos soak inside `npm test` (the full one is `npm run chaos`): 8 workers, a connection
// killed every 250 ms, wait_timeout = 2, one kill -9 and restart, with and without the adapter
// wrapper. Nothing may fail but with OutcomeUnknownError; no key may have two rows; no acknowledged
// write may be missing.
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
    assert.ok(result.operations > 500, `the workload ran (${result.operations} operations)`);
    assert.ok(result.killed >= 10, `connections were killed (${result.killed})`);
    assert.ok(result.retries > 0, "faults happened and were retried");
    assert.deepEqual(violations(result), []);
  });
}
