// The chaos soak on PostgreSQL (the MySQL one is chaos.test.ts): 8 workers on the broad mix (every
// kind of write, hot counters, deadlock-prone transactions), a backend terminated every 250 ms
// (57P01), idle_session_timeout = 2 s, one crash of the whole server (kill -9) and restart, with the
// package's defaults. Nothing may fail; with the adapter wrapper nothing may be "unknown" either
// (a lost COMMIT reply is verified by its transaction id); no key may have two rows; no acknowledged
// write or delete may be missing; counters exact.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { runChaos, summary, violations, type ChaosMode } from "./support/chaos.ts";
import { postgresChaosDb } from "./support/chaos-postgres.ts";
import { startPostgres, type PostgresServer } from "./support/postgres.ts";

let server: PostgresServer;
before(async () => {
  server = await startPostgres();
  // PostgreSQL looks for a deadlock only after deadlock_timeout (1 s by default; InnoDB at once): the
  // mix's deadlock-prone transactions would hold workers a second each and leave few operations.
  await server.setSystem("deadlock_timeout", "100ms");
});
after(async () => {
  await server?.stop();
});

for (const mode of ["resilient", "resilient-unwrapped"] as ChaosMode[]) {
  test(`PostgreSQL chaos soak, ${mode}: no failure, no duplicate, no lost write`, { timeout: 60_000 }, async () => {
    const result = await runChaos(postgresChaosDb(server), {
      mode,
      durationMs: 6000,
      workers: 8,
      killEveryMs: 250,
      waitTimeout: 2,
      restartAtMs: 3000,
      downMs: 500,
      keyPrefix: `pg-${mode}-${Date.now().toString(36)}`,
    });
    console.log(JSON.stringify(summary(result)));
    // That the workload ran, not how fast (see test/chaos.test.ts: 513 seen here on a loaded machine).
    assert.ok(result.operations > 200, `the workload ran (${result.operations} operations)`);
    assert.ok(result.killed >= 10, `backends were terminated (${result.killed})`);
    assert.equal(result.restarts, 1, "the server crashed and came back once");
    assert.ok(result.retries > 0, "faults happened and were retried");
    for (const op of ["create-many", "increment", "delete", "raw-insert", "batch", "raw-read", "hot-transaction"]) {
      assert.ok((result.byOperation[op] ?? 0) > 10, `the mix ran ${op} (${result.byOperation[op] ?? 0})`);
    }
    assert.deepEqual(violations(result), []);
  });
}
