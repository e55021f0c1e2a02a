// npm run bench: the cost of the package on the hot path (no fault), as ratios against bare
// Prisma measured in the same process, in interleaved rounds; the round trips per operation of the
// default vs tuned pool settings (server status counters); and the recovery time after a restart.
// Prints a table and writes bench/results/bench-<timestamp>.json (and latest.json).
// Options: --rounds N (default 7), --ops N (operations per variant per round, default 1500)
import { mkdirSync, writeFileSync } from "node:fs";
import { arch, cpus, platform, release } from "node:os";
import { parseArgs } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import { PrismaMariaDb } from "@prisma/adapter-mariadb";
import { PrismaClient } from "../generated/prisma/client.ts";
import { resilience, tunePool, withResilience } from "../src/index.ts";
import { startDatabase, type TestDatabase } from "../test/support/mariadb.ts";

const { values } = parseArgs({
  options: { rounds: { type: "string", default: "7" }, ops: { type: "string", default: "1500" } },
});
const ROUNDS = Number(values.rounds);
const OPS = Number(values.ops);
if (!(ROUNDS >= 3) || !(OPS >= 50)) throw new TypeError("--rounds must be ≥ 3 and --ops ≥ 50");

// resilience: the package with its defaults (commit verification on); unverified: verifyCommits: false.
type Variant = "bare" | "passthrough" | "resilience" | "unverified";
const VARIANTS: Variant[] = ["bare", "passthrough", "resilience", "unverified"];

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

interface Case {
  name: string;
  run: (prisma: any, i: number) => Promise<unknown>;
}

const USERS = 500;
let keySeq = 0;
const CASES: Case[] = [
  // findFirst, not findUnique: Prisma batches findUnique calls made in the same tick into one query.
  { name: "findFirst", run: (p, i) => p.user.findFirst({ where: { id: 1 + (i % USERS) } }) },
  { name: "create", run: (p) => p.ledger.create({ data: { key: `bench-${keySeq++}`, amount: 1 } }) },
  {
    name: "createMany",
    run: (p) => p.ledger.createMany({ data: [{ key: `bench-m-${keySeq++}`, amount: 1 }, { key: `bench-m-${keySeq++}`, amount: 1 }] }),
  },
  {
    name: "transaction",
    run: (p, i) =>
      p.$transaction(async (tx: any) => {
        const u = await tx.user.findUnique({ where: { id: 1 + (i % USERS) } });
        await tx.ledger.create({ data: { key: `bench-tx-${keySeq++}`, amount: u ? 1 : 0 } });
      }),
  },
];

/**
 * One round: OPS operations per variant, interleaved at the operation level (bare, passthrough,
 * resilience, bare, …, the order rotating), so that drift in the machine or the server touches every
 * variant alike. With `concurrency` > 1 each step is that many operations at once. Returns the total
 * ms each variant spent.
 */
async function round_(clients: Record<Variant, any>, c: Case, concurrency: number): Promise<Record<Variant, number>> {
  const total: Record<Variant, number> = { bare: 0, passthrough: 0, resilience: 0, unverified: 0 };
  const steps = Math.ceil(OPS / concurrency);
  for (let step = 0; step < steps; step++) {
    for (let k = 0; k < VARIANTS.length; k++) {
      const v = VARIANTS[(step + k) % VARIANTS.length];
      const t0 = performance.now();
      await Promise.all(Array.from({ length: concurrency }, (_, j) => c.run(clients[v], step * concurrency + j)));
      total[v] += performance.now() - t0;
    }
  }
  return total;
}

function stats(xs: number[]) {
  const s = [...xs].sort((a, b) => a - b);
  const median = s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  return { min: round(s[0]), median: round(median), max: round(s[s.length - 1]) };
}
const round = (x: number, d = 3) => Number(x.toFixed(d));

async function hotPath(db: TestDatabase) {
  const clients = Object.fromEntries(VARIANTS.map((v) => [v, makeClient(v, db.url)])) as Record<Variant, any>;
  for (const v of VARIANTS) for (const c of CASES) for (let i = 0; i < 200; i++) await c.run(clients[v], i); // warm up
  const results: any[] = [];
  for (const c of CASES) {
    for (const concurrency of [1, 8]) {
      const ms: Record<Variant, number[]> = { bare: [], passthrough: [], resilience: [], unverified: [] };
      for (let r = 0; r < ROUNDS; r++) {
        const t = await round_(clients, c, concurrency);
        for (const v of VARIANTS) ms[v].push(t[v]);
      }
      const ratio = (v: Variant) => stats(ms[v].map((x, r) => x / ms.bare[r]));
      const row = {
        case: c.name,
        concurrency,
        opsPerRound: OPS,
        bareOpsPerSec: stats(ms.bare.map((x) => (OPS / x) * 1000)),
        ratioToBare: { passthrough: ratio("passthrough"), resilience: ratio("resilience"), unverified: ratio("unverified") },
      };
      results.push(row);
      process.stderr.write(
        `  ${c.name} ×${concurrency}: passthrough ${row.ratioToBare.passthrough.median}×, resilience ${row.ratioToBare.resilience.median}×, without verification ${row.ratioToBare.unverified.median}×\n`,
      );
    }
  }
  for (const v of VARIANTS) await clients[v].$disconnect();
  return results;
}

/**
 * Round trips beyond the statements themselves, per operation, in an idle-then-burst workload:
 * validation pings (Com_admin_commands) and new connections (Connections: each is a handshake and
 * the driver's set-up queries). Prisma's prepared statements are not counted in Questions, so the
 * statements are not what is compared: both configurations send the same ones.
 */
async function roundTrips(db: TestDatabase) {
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
      const pings = (await db.statusCounter("Com_admin_commands")) - p0;
      const connections = (await db.statusCounter("Connections")) - c0;
      await prisma.$disconnect();
      out[name] = { ops, errors, pings, newConnections: connections, pingsPerOp: round(pings / ops), newConnectionsPerOp: round(connections / ops) };
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
    out[v] = { ...stats(times), runs: times.map((t) => round(t, 1)) };
  }
  return out;
}

const db = await startDatabase();
try {
  await db.admin(
    `INSERT INTO \`${db.database}\`.User (email, name) SELECT CONCAT('u', seq, '@bench.example'), 'bench' FROM seq_1_to_${USERS}`,
  );
  console.error(`hot path: ${ROUNDS} rounds × ${OPS} operations per variant, interleaved`);
  const hot = await hotPath(db);
  console.error("extra round trips per operation (idle 1 s, bursts of 16) …");
  const trips = await roundTrips(db);
  console.error("recovery after kill -9 and restart …");
  const rec = await recovery(db);
  const [version] = await db.admin<any[]>("SELECT VERSION() AS v");
  const result = {
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, cpu: cpus()[0]?.model, platform: platform(), release: release(), arch: arch() },
    versions: { node: process.version, prisma: "7.10.0", adapter: "@prisma/adapter-mariadb 7.10.0", mariadbDriver: "3.4.5", server: version.v },
    settings: { rounds: ROUNDS, opsPerRound: OPS, interleaving: "per operation (concurrency 1) or per step of 8 concurrent operations" },
    hotPath: hot,
    roundTrips: trips,
    recoveryMs: rec,
  };
  console.log("\ncase          callers  bare ops/s  passthrough ×bare (min/med/max)  resilience ×bare (min/med/max)  verifyCommits: false ×bare");
  for (const r of hot) {
    const f = (s: any) => `${s.min.toFixed(3)} / ${s.median.toFixed(3)} / ${s.max.toFixed(3)}`;
    console.log(
      `${r.case.padEnd(13)} ${String(r.concurrency).padEnd(8)} ${String(Math.round(r.bareOpsPerSec.median)).padEnd(11)} ${f(r.ratioToBare.passthrough).padEnd(32)} ${f(r.ratioToBare.resilience).padEnd(31)} ${f(r.ratioToBare.unverified)}`,
    );
  }
  console.log(`\nextra round trips (idle 1 s, bursts of 16, wait_timeout 3): ${JSON.stringify(trips)}`);
  console.log(`recovery after kill -9 + restart, ms to the first success (min/median/max of 5): ${JSON.stringify(rec)}`);
  mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
  const file = new URL(`./results/bench-${result.date.replace(/[:.]/g, "-")}.json`, import.meta.url);
  writeFileSync(file, JSON.stringify(result, null, 2) + "\n");
  writeFileSync(new URL("./results/latest.json", import.meta.url), JSON.stringify(result, null, 2) + "\n");
  console.log(`\nwritten: ${file.pathname}`);
} finally {
  await db.stop();
}
