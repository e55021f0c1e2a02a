// npm run chaos: the chaos soak. 8 workers on the broad mix for 20 s, a connection killed every
// 250 ms, wait_timeout = 2, one kill -9 and restart; once with withResilience + resilience(), once
// with resilience() alone. `--storm`: a restart storm instead (kill -9 every 4 s for 40 s). Prints one
// JSON line per run; exits 1 when a run with the package failed an operation, duplicated or lost a
// write or an increment, or (with withResilience) reported any outcome unknown.
// Options: --duration ms, --modes resilient,resilient-unwrapped,bare, --storm
import { parseArgs } from "node:util";
import { runChaos, summary, violations, type ChaosMode } from "../test/support/chaos.ts";
import { startDatabase } from "../test/support/mariadb.ts";

const { values } = parseArgs({
  options: {
    duration: { type: "string" },
    storm: { type: "boolean", default: false },
    modes: { type: "string", default: "resilient,resilient-unwrapped" },
  },
});
const storm = values.storm === true;
const durationMs = Number(values.duration ?? (storm ? 40_000 : 20_000));
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
      killEveryMs: storm ? 0 : 250,
      waitTimeout: 2,
      restartAtMs: storm ? 4000 : Math.round(durationMs / 2),
      restartEveryMs: storm ? 4000 : undefined,
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
