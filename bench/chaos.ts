// npm run chaos: the chaos soak. 8 workers for 20 s, a connection killed every 250 ms,
// wait_timeout = 2, one kill -9 and restart; once with withResilience + resilience(), once with
// resilience() alone. Prints one JSON line per run; exits 1 when a run with the package failed an
// operation with anything but OutcomeUnknownError, duplicated a write or lost one.
// Options: --duration ms, --modes resilient,resilient-unwrapped,bare
import { parseArgs } from "node:util";
import { runChaos, summary, violations, type ChaosMode } from "../test/support/chaos.ts";
import { startDatabase } from "../test/support/mariadb.ts";

const { values } = parseArgs({
  options: {
    duration: { type: "string", default: "20000" },
    modes: { type: "string", default: "resilient,resilient-unwrapped" },
  },
});
const durationMs = Number(values.duration);
if (!Number.isFinite(durationMs) || durationMs < 2000) throw new TypeError("--duration must be a number of ms ≥ 2000");
const modes = values.modes!.split(",") as ChaosMode[];
for (const m of modes) {
  if (!["bare", "resilient", "resilient-unwrapped"].includes(m)) throw new TypeError(`unknown mode ${m}`);
}

const db = await startDatabase();
let failed = false;
try {
  for (const mode of modes) {
    const result = await runChaos(db, {
      mode,
      durationMs,
      workers: 8,
      killEveryMs: 250,
      waitTimeout: 2,
      restartAtMs: Math.round(durationMs / 2),
      downMs: 500,
      onProgress: (p) => process.stderr.write(`\r${mode}: ${(p.elapsedMs / 1000).toFixed(0)} s, ${p.ops} ops, ${p.failures} failed   `),
    });
    process.stderr.write("\n");
    console.log(JSON.stringify(summary(result)));
    const v = mode === "bare" ? [] : violations(result);
    for (const line of v) console.error(`✖ ${mode}: ${line}`);
    if (v.length > 0) failed = true;
  }
} finally {
  await db.stop();
}
process.exit(failed ? 1 : 0);
