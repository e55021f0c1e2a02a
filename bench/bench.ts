// npm run bench: the cost of the package on the hot path (no fault), against bare Prisma in the same
// process. Method (docs/measurements.md, "How the bench measures"):
// - time: per case × callers × latency, rounds of one block of N operations per variant, the order
//   rotating each round; the first --warmup rounds discarded; per variant block the ratio to the
//   bare blocks on either side of it; the median ratio and a bootstrap 95 % interval (blocks
//   resampled, seeded); client CPU µs/op from process.cpuUsage() over each block;
// - round trips and commands per operation, counted exactly on the wire by a proxy (bench/measure/
//   wire.ts), plus the server's status counters; a trace of one operation per case and variant;
// - the 0.5 ms case: the same through a proxy in a child process adding 0.5 ms each way, bare and
//   variants alike (never proxy vs direct);
// - the validation pings of idle-then-burst traffic, default vs tunePool settings, and the recovery
//   time after a restart.
// Prints a table; writes bench/results/latest.json and bench/results/bench-<timestamp>.json.
// Options: --blocks N (measured rounds, default 10) --warmup N (2) --ops N (per block; default:
// calibrated to --block-ms, 250) --cases a,b --callers 1,8 --rtt 0,0.5 --seed N --count-ops N (30)
// --sections hot,count,pings,recovery
import { fork, type ChildProcess } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { arch, cpus, loadavg, platform, release, totalmem } from "node:os";
import { parseArgs } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import { PrismaMariaDb } from "@prisma/adapter-mariadb";
import { PrismaClient } from "../generated/prisma/client.ts";
import { resilience, tunePool, withResilience } from "../src/index.ts";
import { startDatabase, type TestDatabase } from "../test/support/mariadb.ts";
import { CASES, CASE_NAMES, USERS, topUp, type CaseName } from "./measure/cases.ts";
import { bootstrapMedianCi, median, round } from "./measure/stats.ts";
import { WireProxy, diff, type WireCounts } from "./measure/wire.ts";

const { values } = parseArgs({
  options: {
    blocks: { type: "string", default: "10" },
    warmup: { type: "string", default: "2" },
    ops: { type: "string", default: "0" },
    "block-ms": { type: "string", default: "250" },
    cases: { type: "string", default: CASE_NAMES.join(",") },
    callers: { type: "string", default: "1,8" },
    rtt: { type: "string", default: "0,0.5" },
    seed: { type: "string", default: "1" },
    resamples: { type: "string", default: "2000" },
    "count-ops": { type: "string", default: "30" },
    sections: { type: "string", default: "hot,count,pings,recovery" },
  },
});
const list = (s: string) => s.split(",").map((x) => x.trim()).filter(Boolean);
const BLOCKS = Number(values.blocks);
const WARMUP = Number(values.warmup);
const OPS = Number(values.ops);
const BLOCK_MS = Number(values["block-ms"]);
const SEED = Number(values.seed);
const RESAMPLES = Number(values.resamples);
const COUNT_OPS = Number(values["count-ops"]);
const CALLERS = list(values.callers).map(Number);
const RTTS = list(values.rtt).map(Number);
const SECTIONS = new Set(list(values.sections));
const SELECTED = list(values.cases) as CaseName[];
for (const c of SELECTED) if (!CASE_NAMES.includes(c)) throw new TypeError(`unknown case ${c} (one of ${CASE_NAMES.join(" ")})`);
if (!(BLOCKS >= 3) || !(WARMUP >= 0) || !(OPS >= 0) || !(BLOCK_MS >= 20) || !(COUNT_OPS >= 1)) {
  throw new TypeError("--blocks must be ≥ 3, --warmup ≥ 0, --ops ≥ 0 (0: calibrated), --block-ms ≥ 20, --count-ops ≥ 1");
}
if (CALLERS.some((c) => !(c >= 1)) || RTTS.some((r) => !(r >= 0))) throw new TypeError("--callers ≥ 1, --rtt ≥ 0 (ms each way)");

// resilience: the package with its defaults (commit verification on); unverified: verifyCommits: false.
type Variant = "bare" | "passthrough" | "resilience" | "unverified";
const VARIANTS: Variant[] = ["bare", "passthrough", "resilience", "unverified"];
const COMPARED = VARIANTS.filter((v) => v !== "bare") as Exclude<Variant, "bare">[];

function makeClient(variant: Variant, url: string): any {
  if (variant === "bare") return new PrismaClient({ adapter: new PrismaMariaDb(url) });
  if (variant === "passthrough") {
    return new PrismaClient({ adapter: new PrismaMariaDb(url) }).$extends({
      query: { $allOperations: ({ args, query }) => query(args) },
    });
  }
  const adapter = withResilience(new PrismaMariaDb(url), { verifyCommits: variant === "resilience" });
  return new PrismaClient({ adapter }).$extends(resilience());
}

/** `ops` operations of a case by `callers` concurrent loops; `next` numbers them across blocks. */
async function runOps(prisma: any, name: CaseName, ops: number, callers: number, next: { i: number }) {
  let done = 0;
  const loop = async () => {
    while (done < ops) {
      done++;
      await CASES[name](prisma, next.i++);
    }
  };
  await Promise.all(Array.from({ length: Math.min(callers, ops) }, loop));
}

// Server status counters read around each counted block (their own read is subtracted).
const STATUS = ["Questions", "Com_stmt_execute", "Com_stmt_prepare", "Com_begin", "Com_commit", "Com_rollback", "Com_admin_commands", "Com_insert", "Com_update", "Com_delete", "Com_select"];
async function status(db: TestDatabase): Promise<Record<string, number>> {
  const rows = await db.admin<any[]>(
    `SELECT VARIABLE_NAME AS n, VARIABLE_VALUE AS v FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME IN (${STATUS.map(() => "?").join(",")})`,
    STATUS.map((s) => s.toUpperCase()),
  );
  const out: Record<string, number> = {};
  for (const r of rows) out[STATUS.find((s) => s.toUpperCase() === r.n)!] = Number(r.v);
  return out;
}
const sub = (a: Record<string, number>, b: Record<string, number>) => Object.fromEntries(STATUS.map((k) => [k, b[k] - a[k]]));

interface Counted {
  roundTripsPerOp: number;
  commandsPerOp: number;
  newConnectionsPerOp: number;
  /** callers 1: the fewest and most round trips of a single operation (equal when deterministic). */
  roundTripsRange?: [number, number];
  commandsByTypePerOp: Record<string, number>;
  serverPerOp: Record<string, number>;
  trace?: string[][];
}

/**
 * Exact counts: every variant through an in-process WireProxy without latency, `COUNT_OPS`
 * operations (× callers) per case after a warm-up that opens the connections and prepares the
 * statements. With one caller each operation is counted on its own, and one is traced.
 */
async function countAll(db: TestDatabase): Promise<Map<string, Counted>> {
  const proxy = await new WireProxy(db.host, db.port).listen();
  const out = new Map<string, Counted>();
  const clients = Object.fromEntries(VARIANTS.map((v) => [v, makeClient(v, proxy.urlFor(db.url))])) as Record<Variant, any>;
  try {
    // Let the pools open their connections first: that is not the operations' cost.
    for (const v of VARIANTS) await clients[v].user.count();
    const settle = performance.now();
    for (let n = -1; n !== proxy.snapshot().connections && performance.now() - settle < 10_000; ) {
      n = proxy.snapshot().connections;
      await sleep(700);
    }
    const s0 = await status(db);
    const selfCost = sub(s0, await status(db)); // what one status read adds to the counters
    for (const name of SELECTED) {
      for (const callers of CALLERS) {
        if (name === "deleteMany") await topUp((sql) => db.admin(sql), db.database, VARIANTS.length * (20 + COUNT_OPS * callers));
        for (const v of VARIANTS) {
          const next = { i: 0 };
          // Through every pooled connection (10 by default) just before: none is idle long enough
          // to be validated with a PING on borrow (the pings section measures those).
          await runOps(clients[v], name, 20, 10, next);
          let range: [number, number] | undefined;
          let trace: string[][] | undefined;
          const st0 = await status(db);
          const w0 = proxy.snapshot();
          if (callers === 1) {
            range = [Infinity, -Infinity];
            for (let k = 0; k < COUNT_OPS; k++) {
              const a = proxy.snapshot();
              if (k === 0) proxy.startTrace();
              await CASES[name](clients[v], next.i++);
              if (k === 0) trace = proxy.stopTrace();
              const f = diff(a, proxy.snapshot()).roundTrips;
              range = [Math.min(range[0], f), Math.max(range[1], f)];
            }
          } else {
            await runOps(clients[v], name, COUNT_OPS * callers, callers, next);
          }
          const d: WireCounts = diff(w0, proxy.snapshot());
          const st = sub(st0, await status(db));
          const ops = callers === 1 ? COUNT_OPS : COUNT_OPS * callers;
          out.set(`${name}/${callers}/${v}`, {
            roundTripsPerOp: round(d.roundTrips / ops),
            commandsPerOp: round(d.commands / ops),
            newConnectionsPerOp: round(d.connections / ops),
            roundTripsRange: range,
            commandsByTypePerOp: Object.fromEntries(Object.entries(d.byType).map(([k, n]) => [k, round(n / ops)])),
            serverPerOp: Object.fromEntries(STATUS.map((k) => [k, round((st[k] - selfCost[k]) / ops)])),
            trace,
          });
        }
      }
      const line = COMPARED.map((v) => `${v} ${out.get(`${name}/1/${v}`)?.roundTripsPerOp ?? "—"}`).join(", ");
      process.stderr.write(`  ${name}: round trips/op bare ${out.get(`${name}/1/bare`)?.roundTripsPerOp ?? "—"}, ${line}\n`);
    }
  } finally {
    for (const v of VARIANTS) await clients[v].$disconnect();
    await proxy.close();
  }
  return out;
}

/** The latency proxy in a child process (its CPU is not the client's). */
async function startLatencyProxy(db: TestDatabase, latencyMs: number) {
  const child: ChildProcess = fork(new URL("./measure/proxy-child.ts", import.meta.url).pathname, [db.host, String(db.port), String(latencyMs)], {
    execArgv: ["--import", "tsx"],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.once("message", (m: any) => resolve(m.port));
    child.once("exit", (code) => reject(new Error(`latency proxy exited (${code})`)));
  });
  const url = new URL(db.url);
  url.hostname = "127.0.0.1";
  url.port = String(port);
  return {
    url: url.toString(),
    counts: () =>
      new Promise<WireCounts>((resolve) => {
        child.once("message", (m: any) => resolve(m.counts));
        child.send("counts");
      }),
    close: async () => {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.send("close");
      await Promise.race([exited, sleep(3000)]);
      if (child.exitCode === null) child.kill("SIGKILL");
    },
  };
}

interface Cell {
  case: CaseName;
  callers: number;
  rttMs: number;
  opsPerBlock: number;
  ms: Record<Variant, number[]>;
  cpuUs: Record<Variant, number[]>;
  roundTrips: Record<Variant, number[]>;
  /** The measured blocks in the order they ran. */
  sequence: Array<{ v: Variant; ms: number; cpuUs: number }>;
}

/**
 * Per measured block of `v`, its figure over the bare blocks that ran just before and just after it
 * (their mean; one at the ends): with the order rotating, every variant block has a bare block on
 * each side within three blocks, and a drift that is linear over that span cancels out.
 */
function bracketedRatios(cell: Cell, v: Variant, key: "ms" | "cpuUs"): number[] {
  const seq = cell.sequence;
  const out: number[] = [];
  for (let j = 0; j < seq.length; j++) {
    if (seq[j].v !== v) continue;
    let before: number | undefined;
    let after: number | undefined;
    for (let k = j - 1; k >= 0 && before === undefined; k--) if (seq[k].v === "bare") before = seq[k][key];
    for (let k = j + 1; k < seq.length && after === undefined; k++) if (seq[k].v === "bare") after = seq[k][key];
    const ref = before !== undefined && after !== undefined ? (before + after) / 2 : (before ?? after)!;
    out.push(seq[j][key] / ref);
  }
  return out;
}

async function timeCell(db: TestDatabase, clients: Record<Variant, any>, name: CaseName, callers: number, rttMs: number, wire?: () => Promise<WireCounts>): Promise<Cell> {
  const next = { i: 0 };
  // deleteMany: enough rows for the calibration (it runs at most BLOCK_MS / 2), then for the rounds.
  const rows = (n: number) => (name === "deleteMany" ? topUp((sql) => db.admin(sql), db.database, n) : undefined);
  await rows(VARIANTS.length * 4 * callers + Math.ceil(BLOCK_MS * 40)); // ≥ 40 operations a ms
  // Calibrate the block size on bare Prisma: as many operations as take about BLOCK_MS.
  let ops = OPS;
  if (!ops) {
    for (const v of VARIANTS) await runOps(clients[v], name, 4 * callers, callers, next);
    const t0 = performance.now();
    let n = 0;
    while (performance.now() - t0 < BLOCK_MS / 2) {
      await runOps(clients.bare, name, callers, callers, next);
      n += callers;
    }
    ops = Math.max(callers * 4, Math.round((n * BLOCK_MS) / (performance.now() - t0) / callers) * callers);
  }
  await rows(VARIANTS.length * (ops + 10) * (WARMUP + BLOCKS)); // + the untimed burst before each block
  const cell: Cell = {
    case: name,
    callers,
    rttMs,
    opsPerBlock: ops,
    ms: { bare: [], passthrough: [], resilience: [], unverified: [] },
    cpuUs: { bare: [], passthrough: [], resilience: [], unverified: [] },
    roundTrips: { bare: [], passthrough: [], resilience: [], unverified: [] },
    sequence: [],
  };
  for (let r = 0; r < WARMUP + BLOCKS; r++) {
    for (let k = 0; k < VARIANTS.length; k++) {
      const v = VARIANTS[(r + k) % VARIANTS.length];
      // Untimed, through every pooled connection: they sat idle during the other blocks, and the
      // pool would validate each with a PING on its first borrow in this block.
      await runOps(clients[v], name, 10, 10, next);
      const w0 = wire && r >= WARMUP ? await wire() : undefined;
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      await runOps(clients[v], name, ops, callers, next);
      const t = performance.now() - t0;
      const c = process.cpuUsage(c0);
      if (r < WARMUP) continue;
      cell.ms[v].push(t);
      cell.cpuUs[v].push(c.user + c.system);
      cell.sequence.push({ v, ms: t, cpuUs: c.user + c.system });
      if (w0) cell.roundTrips[v].push(diff(w0, await wire!()).roundTrips);
    }
  }
  return cell;
}

/** ≤ the issue's goals for the package with verification on (1 and 8 callers). */
function goal(name: CaseName, rttMs: number): number {
  if (rttMs > 0) return 1.03;
  if (name === "findFirst" || name === "findMany") return 1.01;
  if (name === "create" || name === "update" || name === "transaction") return 1.05;
  return 1.1;
}

async function hotPath(db: TestDatabase, counted: Map<string, Counted>) {
  const rows: any[] = [];
  for (const rttMs of RTTS) {
    const proxy = rttMs > 0 ? await startLatencyProxy(db, rttMs) : undefined;
    const clients = Object.fromEntries(VARIANTS.map((v) => [v, makeClient(v, proxy?.url ?? db.url)])) as Record<Variant, any>;
    try {
      for (const name of SELECTED) {
        for (const callers of CALLERS) {
          const cell = await timeCell(db, clients, name, callers, rttMs, proxy?.counts);
          const ops = cell.opsPerBlock;
          const perOp = (v: Variant) => ({ ms: round(median(cell.ms[v]) / ops, 4), cpu: round(median(cell.cpuUs[v]) / ops, 1) });
          const line: string[] = [];
          for (const v of COMPARED) {
            const ratios = bracketedRatios(cell, v, "ms");
            const cpuRatios = bracketedRatios(cell, v, "cpuUs");
            const seed = SEED + rows.length; // one fixed stream per row
            const med = median(ratios);
            const ci = bootstrapMedianCi(ratios, RESAMPLES, seed);
            const cBare = counted.get(`${name}/${callers}/bare`);
            const cVar = counted.get(`${name}/${callers}/${v}`);
            const row: any = {
              case: name,
              callers,
              rttMs,
              variant: v,
              ratio: { median: round(med, 4), ci95: [round(ci[0], 4), round(ci[1], 4)] },
              roundTripsPerOp: { bare: cBare?.roundTripsPerOp ?? null, variant: cVar?.roundTripsPerOp ?? null },
              commandsPerOp: { bare: cBare?.commandsPerOp ?? null, variant: cVar?.commandsPerOp ?? null },
              cpuUsPerOp: { bare: perOp("bare").cpu, variant: perOp(v).cpu },
              cpuRatio: round(median(cpuRatios), 4),
              msPerOp: { bare: perOp("bare").ms, variant: perOp(v).ms },
              blocks: cell.ms[v].length,
              opsPerBlock: ops,
              ratiosPerBlock: ratios.map((x) => round(x, 4)),
              goal: goal(name, rttMs),
            };
            if (proxy) {
              const f = (w: Variant) => round(median(cell.roundTrips[w]) / ops, 3);
              row.roundTripsPerOpTimed = { bare: f("bare"), variant: f(v) };
            }
            if (cBare && cVar) {
              row.commandsByTypePerOp = { bare: cBare.commandsByTypePerOp, variant: cVar.commandsByTypePerOp };
              row.serverPerOp = { bare: cBare.serverPerOp, variant: cVar.serverPerOp };
              if (cBare.roundTripsRange) row.roundTripsRange = { bare: cBare.roundTripsRange, variant: cVar.roundTripsRange };
            }
            rows.push(row);
            line.push(`${v} ${row.ratio.median.toFixed(3)} [${row.ratio.ci95[0].toFixed(3)}, ${row.ratio.ci95[1].toFixed(3)}]`);
          }
          process.stderr.write(`  ${name} ×${callers} rtt ${rttMs}: ${line.join(", ")} (${ops} ops/block)\n`);
        }
      }
    } finally {
      for (const v of VARIANTS) await clients[v].$disconnect();
      await proxy?.close();
    }
  }
  return rows;
}

/**
 * Round trips beyond the statements themselves, per operation, in an idle-then-burst workload:
 * validation pings (Com_admin_commands) and new connections (Connections: each is a handshake and
 * the driver's set-up queries), default vs tunePool settings.
 */
async function pings(db: TestDatabase) {
  await db.setGlobal("wait_timeout", 3);
  try {
    const tuned = (await tunePool(db.url)).url!;
    const out: Record<string, unknown> = {};
    for (const [name, url] of [["default", db.url], ["tuned", tuned]] as const) {
      const prisma = makeClient("resilience", url);
      await prisma.user.count();
      await sleep(300);
      const p0 = await db.statusCounter("Com_admin_commands");
      const c0 = await db.statusCounter("Connections");
      let ops = 0;
      let errors = 0;
      for (let cycle = 0; cycle < 10; cycle++) {
        await sleep(1000); // below wait_timeout, above the driver's 500 ms validation delay
        const burst = await Promise.allSettled(Array.from({ length: 16 }, (_, i) => prisma.user.findFirst({ where: { id: 1 + i } })));
        ops += burst.length;
        errors += burst.filter((b) => b.status === "rejected").length;
      }
      const n = (await db.statusCounter("Com_admin_commands")) - p0;
      const connections = (await db.statusCounter("Connections")) - c0;
      await prisma.$disconnect();
      out[name] = { ops, errors, pings: n, newConnections: connections, pingsPerOp: round(n / ops), newConnectionsPerOp: round(connections / ops) };
    }
    return out;
  } finally {
    await db.setGlobal("wait_timeout", 28800);
  }
}

/** ms from the restarted server accepting connections to the first successful operation (5 restarts each). */
async function recovery(db: TestDatabase) {
  const out: Record<string, unknown> = {};
  for (const v of ["bare", "resilience"] as const) {
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      const prisma = makeClient(v, db.url);
      await Promise.all(Array.from({ length: 4 }, () => prisma.user.count()));
      await db.restart({ downMs: 500 });
      const up = performance.now();
      for (;;) {
        try {
          await prisma.user.count();
          break;
        } catch {
          if (performance.now() - up > 30_000) break;
        }
      }
      times.push(performance.now() - up);
      await prisma.$disconnect();
    }
    const s = [...times].sort((a, b) => a - b);
    out[v] = { min: round(s[0], 1), median: round(median(times), 1), max: round(s[s.length - 1], 1), runs: times.map((t) => round(t, 1)) };
  }
  return out;
}

function table(rows: any[]) {
  const head = ["case", "callers", "rtt", "variant", "median", "ci95", "goal", "RT/op bare→var", "cmds/op bare→var", "CPU µs/op bare→var"];
  const body = rows.map((r) => [
    r.case,
    String(r.callers),
    String(r.rttMs),
    r.variant,
    r.ratio.median.toFixed(3),
    `[${r.ratio.ci95[0].toFixed(3)}, ${r.ratio.ci95[1].toFixed(3)}]`,
    `${r.goal.toFixed(2)}${r.variant === "resilience" && r.ratio.median > r.goal ? " over" : ""}`,
    // Counted on the wire without latency; else (--sections without count) in the timed blocks.
    `${r.roundTripsPerOp.bare ?? r.roundTripsPerOpTimed?.bare ?? "—"}→${r.roundTripsPerOp.variant ?? r.roundTripsPerOpTimed?.variant ?? "—"}`,
    `${r.commandsPerOp.bare ?? "—"}→${r.commandsPerOp.variant ?? "—"}`,
    `${r.cpuUsPerOp.bare}→${r.cpuUsPerOp.variant}`,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const fmt = (cols: string[]) => cols.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd();
  return [fmt(head), ...body.map(fmt)].join("\n");
}

const started = new Date();
const load0 = loadavg();
const db = await startDatabase();
try {
  await db.admin(`INSERT INTO \`${db.database}\`.User (email, name) SELECT CONCAT('u', seq, '@bench.example'), 'bench' FROM seq_1_to_${USERS}`);
  let counted = new Map<string, Counted>();
  if (SECTIONS.has("count")) {
    console.error(`round trips and commands per operation, counted on the wire (${COUNT_OPS} operations per caller) …`);
    counted = await countAll(db);
  }
  let hot: any[] = [];
  if (SECTIONS.has("hot")) {
    console.error(`hot path: ${WARMUP} warm-up + ${BLOCKS} rounds of one block per variant, order rotating; ${OPS || `blocks of ≈ ${BLOCK_MS} ms`} …`);
    hot = await hotPath(db, counted);
  }
  let trips: unknown;
  if (SECTIONS.has("pings")) {
    console.error("validation pings per operation (idle 1 s, bursts of 16) …");
    trips = await pings(db);
  }
  let rec: unknown;
  if (SECTIONS.has("recovery")) {
    console.error("recovery after kill -9 and restart …");
    rec = await recovery(db);
  }
  const [version] = await db.admin<any[]>("SELECT VERSION() AS v");
  const pkg = async (name: string) => {
    try {
      return JSON.parse(readFileSync(new URL(`../node_modules/${name}/package.json`, import.meta.url), "utf8")).version as string;
    } catch {
      return "?";
    }
  };
  const result = {
    date: started.toISOString(),
    finished: new Date().toISOString(),
    machine: {
      cpus: cpus().length,
      cpu: cpus()[0]?.model,
      memoryGb: round(totalmem() / 2 ** 30, 1),
      platform: platform(),
      release: release(),
      arch: arch(),
      loadavg: { start: load0.map((x) => round(x, 2)), end: loadavg().map((x) => round(x, 2)) },
    },
    versions: {
      node: process.version,
      prisma: await pkg("@prisma/client"),
      adapter: await pkg("@prisma/adapter-mariadb"),
      mariadbDriver: await pkg("mariadb"),
      server: version.v,
    },
    settings: {
      blocks: BLOCKS,
      warmupRounds: WARMUP,
      opsPerBlock: OPS || `calibrated to ${BLOCK_MS} ms of bare Prisma`,
      cases: SELECTED,
      callers: CALLERS,
      rttMs: RTTS,
      seed: SEED,
      resamples: RESAMPLES,
      countOps: COUNT_OPS,
      method:
        "rounds of one block per variant, order rotating; ratio = variant block ms / mean ms of the measured bare blocks just before and just after it; median and bootstrap 95 % interval of the median over the measured rounds; round trips = replies the client waited for, counted on the wire (server bytes delivered after the client sent something since the previous reply); commands = MySQL packets with sequence 0; rttMs = latency added each way by a proxy in a child process (bare and variants alike)",
    },
    cases: hot,
    counts: Object.fromEntries(counted),
    pings: trips,
    recoveryMs: rec,
  };
  if (hot.length) console.log("\n" + table(hot));
  if (trips) console.log(`\nvalidation pings (idle 1 s, bursts of 16, wait_timeout 3): ${JSON.stringify(trips)}`);
  if (rec) console.log(`recovery after kill -9 + restart, ms to the first success (5 runs): ${JSON.stringify(rec)}`);
  mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
  const file = new URL(`./results/bench-${result.date.replace(/[:.]/g, "-")}.json`, import.meta.url);
  writeFileSync(file, JSON.stringify(result, null, 2) + "\n");
  writeFileSync(new URL("./results/latest.json", import.meta.url), JSON.stringify(result, null, 2) + "\n");
  console.log(`\nwritten: ${file.pathname} (and latest.json); load average ${load0.map((x) => x.toFixed(2)).join(" ")} → ${loadavg().map((x) => x.toFixed(2)).join(" ")}`);
} finally {
  await db.stop();
}
