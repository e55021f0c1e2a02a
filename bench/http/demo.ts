// npm run demo:http: a REST API (Express 5, the routes of Prisma's express example, four worker
// processes under node:cluster) under autocannon bursts while the database drops connections, first
// on bare Prisma 7, then with this package, with the same seed and fault schedule. Starts a throwaway
// MariaDB (or uses DATABASE_URL: then no kill -9 / restart), prints the figures side by side, writes
// an HTML report and ends with one JSON line. Exits 1 if the package's side answered any 5xx, lost an
// acknowledged write, applied a write it answered with an error, or left a counter off.
// Options: --duration ms of load schedule per side (default 20000), --connections n (default 16),
// --out path (default bench/results/demo-http-report.html).
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { demoDatabase } from "../database.ts";
import { redact } from "../../src/index.ts";
import { breakdown, renderReport, tableRows } from "./report.ts";
import { burstStarts, runHttp, type HttpMode, type HttpResult } from "./run.ts";

const here = dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    duration: { type: "string", default: "20000" },
    connections: { type: "string", default: "16" },
    out: { type: "string", default: resolve(here, "../results/demo-http-report.html") },
  },
});
const durationMs = Number(values.duration);
const connections = Number(values.connections);
if (!(durationMs >= 4000)) throw new TypeError("--duration must be at least 4000 ms");
if (!(connections >= 1 && connections <= 256)) throw new TypeError("--connections must be between 1 and 256");

const schedule = { durationMs, burstMs: 2000, idleMs: 3000 };
const WORKERS = 4;
const { db, external } = await demoDatabase();
const seed = 20261203;
const run = Date.now().toString(36);
const results: HttpResult[] = [];
try {
  for (const mode of ["bare", "package"] as HttpMode[]) {
    const label = mode === "bare" ? "bare Prisma 7" : "with prisma-extension-resilience";
    const result = await runHttp(db, {
      mode,
      ...schedule,
      workers: WORKERS,
      connections,
      killEveryMs: 250,
      waitTimeout: 2,
      downMs: 500,
      seed,
      keyPrefix: `h${mode[0]}${run}`,
      onProgress: (line) => process.stdout.write(`\r  ${label}: ${line}   `),
    });
    process.stdout.write("\n");
    results.push(result);
  }
} finally {
  await db.stop();
}

const rows = tableRows(results);
const width = Math.max(...rows.map((r) => r.label.length)) + 2;
const colW = 22;
console.log(`\n${"".padEnd(width)}${"bare Prisma 7".padEnd(colW)}with prisma-extension-resilience`);
for (const row of rows) console.log(`${row.label.padEnd(width)}${row.values[0].padEnd(colW)}${row.values[1]}`);
for (const r of results) {
  const b = breakdown(r);
  const who = r.mode === "bare" ? "bare" : "with the package";
  console.log(`\n5xx by route, ${who}: ${b.routes}\n5xx by error, ${who}: ${b.errors}\nthe KILLed connections were running, ${who}: ${b.kills}`);
  for (const c of r.counters.filter((c) => c.value !== c.acknowledged || c.value !== c.ledgerRows))
    console.log(`  counter user ${c.id}: value ${c.value}, 2xx increments ${c.acknowledged}, Ledger rows ${c.ledgerRows}`);
}

const bursts = burstStarts(schedule).length;
mkdirSync(dirname(values.out!), { recursive: true });
writeFileSync(
  values.out!,
  renderReport(results, {
    date: new Date().toISOString(),
    api: `Express 5, ${WORKERS} workers under node:cluster, one PrismaClient each (default pool)`,
    load: `autocannon, ${connections} connections, ${bursts} bursts of 2 s with 3 s idle gaps`,
    faults: "SET GLOBAL wait_timeout = 2; every 250 ms one connection running a statement KILLed; kill -9 + restart (down 500 ms) in the middle burst",
    server: external ? redact(external) : "throwaway MariaDB started by the demo",
    node: process.version,
    seed: String(seed),
  }),
);
const { timeline: _t, events: _e, ...bareRest } = results[0];
const { timeline: _t2, events: _e2, ...pkgRest } = results[1];
writeFileSync(values.out!.replace(/\.html$/, ".json"), JSON.stringify([bareRest, pkgRest], null, 2) + "\n");
console.log(`\nreport: ${values.out}`);

const line = (r: HttpResult) => ({ requests: r.requests, http5xx: r.http5xx, lost: r.lost, unackedApplied: r.unackedApplied });
const pkg = results[1];
const problems: string[] = [];
if (pkg.http5xx > 0) problems.push(`${pkg.http5xx} answers were HTTP 5xx: ${breakdown(pkg).errors}; first: ${pkg.http5xxDetails.join(" | ")}`);
if (pkg.lost > 0) problems.push(`${pkg.lost} acknowledged writes are missing`);
if (pkg.unackedApplied > 0) problems.push(`${pkg.unackedApplied} writes answered 5xx are in the database`);
if (pkg.duplicated > 0) problems.push(`${pkg.duplicated} writes were applied twice`);
if (pkg.countersExact !== pkg.counters.length) problems.push(`${pkg.counters.length - pkg.countersExact} counters are off`);
if (pkg.unanswered > 0) problems.push(`${pkg.unanswered} requests were never answered`);
if (pkg.otherStatus > 0) problems.push(`${pkg.otherStatus} answers were neither 2xx nor 5xx`);
if (pkg.workerCrashes > 0) problems.push(`${pkg.workerCrashes} worker processes died`);
if (problems.length > 0) console.error(`✖ the run with the package: ${problems.join("; ")}`);
console.log(JSON.stringify({ bare: line(results[0]), package: line(pkg) }));
if (problems.length > 0) process.exit(1);
