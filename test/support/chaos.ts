// The chaos workload: concurrent workers doing reads, single writes and interactive transactions
// while connections are killed, wait_timeout is tiny and the server is kill -9'd and restarted.
// Used by the soak test, `npm run chaos`, the demo and the benchmarks. It only ever talks to the
// loopback server the harness started, and every loop is bounded by `durationMs`.
import { AsyncLocalStorage } from "node:async_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { isOutcomeUnknown, type RetryContext } from "../../src/index.ts";
import { isChaosDb, mysqlChaosDb, type ChaosDb, type ChaosMode } from "./chaos-db.ts";
import { driverInitRejections } from "./driver-bug.ts";
import type { TestDatabase } from "./mariadb.ts";

export type { ChaosMode } from "./chaos-db.ts";

export interface ChaosOptions {
  mode: ChaosMode;
  durationMs: number;
  workers: number;
  /** Kill one random app connection this often (0: never). */
  killEveryMs: number;
  /** The server's idle-session limit for the run, in seconds (wait_timeout, idle_session_timeout; restored afterwards). */
  waitTimeout: number;
  /** When to kill -9 the server, from the start (omit: never). */
  restartAtMs?: number;
  /** How long the server stays down before it is started again. */
  downMs?: number;
  /** A restart storm: after the first restart, kill -9 and restart again this often until the end. */
  restartEveryMs?: number;
  /** Extra mariadb pool parameters for the app's URL. */
  urlParams?: Record<string, string | number>;
  /** Called about every second with the figures so far. */
  onProgress?: (p: { elapsedMs: number; ops: number; failures: number }) => void;
  /** Prefix for the keys this run writes, so runs on one database do not mix. */
  keyPrefix?: string;
  /** Options for resilience() and withResilience() in the package's modes. */
  resilience?: import("../../src/index.ts").ResilienceOptions;
  adapter?: import("../../src/index.ts").ResilientAdapterOptions;
  /** Seed for the operation mix and the choice of victims: two runs with one seed face the same schedule. */
  seed?: number;
  /**
   * `broad` (default): every kind of write an app sends (createMany, updateMany increments of
   * shared hot counters, deleteMany, raw inserts, batch and interactive transactions, deadlock-prone
   * two-counter transactions) and raw reads. `classic`: reads, creates and two-insert transactions
   * (the demo's mix).
   */
  mix?: "broad" | "classic";
}

const HOT_COUNTERS = 4;

type OpKind =
  | "read"
  | "raw-read"
  | "create"
  | "create-many"
  | "raw-insert"
  | "increment"
  | "delete"
  | "batch"
  | "transaction"
  | "hot-transaction";

// Cumulative weights of the broad mix.
const BROAD_MIX: Array<[OpKind, number]> = [
  ["read", 0.18],
  ["raw-read", 0.26],
  ["create", 0.38],
  ["create-many", 0.46],
  ["raw-insert", 0.54],
  ["increment", 0.64],
  ["delete", 0.7],
  ["batch", 0.78],
  ["transaction", 0.88],
  ["hot-transaction", 1],
];

function pickKind(mix: "broad" | "classic", r: number): OpKind {
  if (mix === "classic") return r < 0.4 ? "read" : r < 0.75 ? "create" : "transaction";
  return BROAD_MIX.find(([, upTo]) => r < upTo)![0];
}

/** The sample kind of an operation kind: reads, writes outside transactions, transactions. */
function sampleKind(kind: OpKind): OpSample["kind"] {
  if (kind === "read" || kind === "raw-read") return "read";
  if (kind === "batch" || kind === "transaction" || kind === "hot-transaction") return "transaction";
  return "write";
}

/** mulberry32: a small seeded PRNG, so that runs can be repeated. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface OpSample {
  /** ms since the start of the run when the operation started. */
  startT?: number;
  /** ms since the start of the run. */
  t: number;
  kind: "read" | "write" | "transaction";
  latencyMs: number;
  outcome: "ok" | "unknown-outcome" | "failed";
  errorClass?: string;
  /** Failed after its connection was lost on every attempt (see ChaosResult.lostOnEveryAttempt). */
  lostOnEveryAttempt?: boolean;
}

export interface ChaosEvent {
  t: number;
  what: "kill" | "server-down" | "server-up";
}

export interface ChaosResult {
  mode: ChaosMode;
  durationMs: number;
  workers: number;
  operations: number;
  byKind: Record<OpSample["kind"], number>;
  failures: number;
  failuresByClass: Record<string, number>;
  unknownOutcome: number;
  /** Unknown-outcome writes whose rows are there (the write had been applied). */
  unknownOutcomeApplied: number;
  /** Writes reported as failed (not unknown) whose rows are there anyway. */
  failedButCommitted: number;
  duplicateKeys: number;
  lostWrites: number;
  retries: number;
  killed: number;
  restarted: boolean;
  /** kill -9 and restarts done. */
  restarts: number;
  p50Ms: number;
  p99Ms: number;
  /** From the server accepting connections again to the first successful operation. */
  recoveryMs: number | null;
  /** Unhandled rejections from the mariadb driver's connection init (see driver-bug.ts). */
  driverUnhandledRejections: number;
  /** Operations of each kind of the mix. */
  byOperation: Record<string, number>;
  /** Acknowledged deleteMany calls whose rows are still there. */
  undeleted: number;
  /** Hot counters whose final value is not their acknowledged increments (plus at most the unknown ones). */
  counterMismatches: string[];
  /** Unknown outcomes whose cause is not a lost connection (an answer is never unknown). */
  unknownWithoutLostConnection: number;
  /** Unknown outcomes whose commit verification ran and could not tell (the old server out of reach). */
  unknownVerificationIncomplete: number;
  /** Retries by error class (conflict, connection-lost, unavailable). */
  retriesByClass: Record<string, number>;
  /** The first failed operations, described (codes, reasons, attempts, timing): a failing run says why. */
  failureDetails: string[];
  /** The first retries other than conflicts, described with the time they happened. */
  retryDetails: string[];
  /**
   * Operations whose connection was lost on every attempt: `retries` counted re-runs, each after a
   * lost connection, and the last attempt lost too (the contract: re-run once by default). Not a
   * failure of the package's; what they wrote must not be there.
   */
  lostOnEveryAttempt: number;
  /** Of those, the ones that changed rows anyway (must be 0: a lost connection rolled them back). */
  lostOnEveryAttemptApplied: number;
  lostOnEveryAttemptDetails: string[];
  /** Lost COMMIT replies verified, by what was found (committed, not-committed, unknown). */
  verifiedCommits: Record<string, number>;
  samples: OpSample[];
  events: ChaosEvent[];
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** Runs the workload under faults on MySQL/MariaDB (a TestDatabase) or any ChaosDb (chaos-db.ts). */
export async function runChaos(target: TestDatabase | ChaosDb, options: ChaosOptions): Promise<ChaosResult> {
  const db = isChaosDb(target) ? target : mysqlChaosDb(target);
  const classify = (error: unknown) => db.classify(error);
  const { mode, durationMs, workers } = options;
  const prefix = options.keyPrefix ?? `${mode}-${Date.now().toString(36)}`;
  const retryCount = { n: 0 };
  const retriesByClass: Record<string, number> = {};
  const verified: Record<string, number> = {};
  const retryDetails: string[] = [];
  // The re-runs of the operation running in this async context (onRetry runs inside it).
  const opRetries = new AsyncLocalStorage<RetryContext[]>();
  const retries = options.resilience?.retries ?? 1;
  const lostOnEveryAttemptKeys = new Set<string>();
  const lostOnEveryAttemptUndeleted = new Set<string>();
  const deadline = options.resilience?.deadline ?? 15_000;
  const lostOnEveryAttemptDetails: string[] = [];
  const mix = options.mix ?? "broad";
  const prisma: any = db.client(mode, {
          ...options.resilience,
          urlParams: options.urlParams,
          wrap: mode === "resilient",
          adapter: {
            ...options.adapter,
            onCommitVerified: (v) => {
              verified[v.verdict] = (verified[v.verdict] ?? 0) + 1;
              options.adapter?.onCommitVerified?.(v);
            },
          },
          onRetry: (ctx) => {
            opRetries.getStore()?.push(ctx);
            retryCount.n++;
            retriesByClass[ctx.errorClass] = (retriesByClass[ctx.errorClass] ?? 0) + 1;
            if (ctx.errorClass !== "conflict" && retryDetails.length < 20)
              retryDetails.push(`${ctx.operation} at ${Math.round(performance.now() - start)} ms, attempt ${ctx.attempt}, ${ctx.counted ? "counted" : "free"}, wait ${ctx.delayMs} ms: ${describeFailure(ctx.error)}`);
          },
        });

  const originalWaitTimeout = await db.setIdleTimeout(options.waitTimeout);

  const samples: OpSample[] = [];
  const events: ChaosEvent[] = [];
  const acknowledged = new Set<string>();
  const uncertain = new Set<string>();
  const failedKeys = new Set<string>();
  let serverDown = false;
  let serverUpAt: number | null = null;
  let firstOkAfterUp: number | null = null;
  let killed = 0;
  let restarts = 0;
  const start = performance.now();
  const now = () => performance.now() - start;
  const rejectionsBefore = driverInitRejections();
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31);
  const pickVictim = prng(seed);
  const stopAt = durationMs;

  await prisma.$connect?.();
  const hotEmails = Array.from({ length: HOT_COUNTERS }, (_, i) => `${prefix}-hot-${i}@example.com`);
  if (mix === "broad") {
    await db.insertHot(hotEmails);
  }
  const ackedIncrements = new Map(hotEmails.map((e) => [e, 0]));
  const uncertainIncrements = new Map(hotEmails.map((e) => [e, 0]));
  const deletedKeys = new Set<string>();
  const byOperation: Record<string, number> = {};
  let unknownWithoutLostConnection = 0;
  let unknownVerificationIncomplete = 0;
  const failureDetails: string[] = [];

  const worker = async (w: number) => {
    let seq = 0;
    const random = prng(seed + 1 + w);
    while (now() < stopAt) {
      const op = pickKind(mix, random());
      const kind = sampleKind(op);
      const key = `${prefix}-${w}-${seq++}`;
      // The Ledger keys this operation writes (a key must end with one row), and the hot counters it
      // increments by one each.
      let keys: string[] = [];
      let counters: string[] = [];
      const t0 = performance.now();
      let outcome: OpSample["outcome"] = "ok";
      let errorClass: string | undefined;
      byOperation[op] = (byOperation[op] ?? 0) + 1;
      const rerunsOfThisOp: RetryContext[] = [];
      let lostEveryTime = false;
      /** The key a deleteMany in flight was deleting. */
      let deleting: string | undefined;
      try {
        await opRetries.run(rerunsOfThisOp, async () => {
        switch (op) {
          case "read":
            await prisma.ledger.findMany({ where: { key: { startsWith: `${prefix}-${w}-` } }, take: 5, orderBy: { id: "desc" } });
            break;
          case "raw-read":
            await db.rawRead(prisma, `${prefix}-${w}-%`);
            break;
          case "create":
            keys = [key];
            await prisma.ledger.create({ data: { key, amount: 1 } });
            break;
          case "create-many":
            keys = [`${key}-a`, `${key}-b`];
            await prisma.ledger.createMany({ data: keys.map((k) => ({ key: k, amount: 1 })) });
            break;
          case "raw-insert":
            keys = [key];
            await db.rawInsert(prisma, key);
            break;
          case "increment":
            counters = [hotEmails[Math.floor(random() * HOT_COUNTERS)]];
            await prisma.user.updateMany({ where: { email: counters[0] }, data: { balance: { increment: 1 } } });
            break;
          case "delete": {
            keys = [`${key}-d`];
            await prisma.ledger.create({ data: { key: keys[0], amount: 1 } });
            keys = [];
            deleting = `${key}-d`;
            rerunsOfThisOp.length = 0; // the deleteMany's own re-runs, not the create's
            await prisma.ledger.deleteMany({ where: { key: `${key}-d` } });
            deletedKeys.add(`${key}-d`);
            break;
          }
          case "batch":
            keys = [`${key}-a`, `${key}-b`];
            await prisma.$transaction(keys.map((k) => prisma.ledger.create({ data: { key: k, amount: 1 } })));
            break;
          case "transaction":
            keys = [`${key}-a`, `${key}-b`];
            await prisma.$transaction(async (tx: any) => {
              await tx.ledger.create({ data: { key: keys[0], amount: 1 } });
              await tx.ledger.create({ data: { key: keys[1], amount: -1 } });
              return tx.ledger.count({ where: { key: { in: keys } } });
            });
            break;
          case "hot-transaction": {
            // Two hot counters in random order: deadlock-prone by design.
            const a = Math.floor(random() * HOT_COUNTERS);
            const b = (a + 1 + Math.floor(random() * (HOT_COUNTERS - 1))) % HOT_COUNTERS;
            counters = [hotEmails[a], hotEmails[b]];
            await prisma.$transaction(async (tx: any) => {
              for (const email of counters) await tx.user.update({ where: { email }, data: { balance: { increment: 1 } } });
            });
            break;
          }
        }
        });
        for (const k of keys) acknowledged.add(k);
        for (const c of counters) ackedIncrements.set(c, ackedIncrements.get(c)! + 1);
      } catch (error) {
        if (isOutcomeUnknown(error)) {
          outcome = "unknown-outcome";
          if (classify((error as any).cause) !== "connection-lost") unknownWithoutLostConnection++;
          if ((error as any).verificationIncomplete === true) unknownVerificationIncomplete++;
          for (const k of keys) uncertain.add(k);
          for (const c of counters) uncertainIncrements.set(c, uncertainIncrements.get(c)! + 1);
        } else if (mode !== "bare" && lostOnEveryAttempt(error, rerunsOfThisOp, retries, classify) && performance.now() - t0 < deadline) {
          // The caller sees it fail, as the contract says. Nothing of it can have committed: its
          // keys must be missing and its counters untouched (so not counted as uncertain).
          outcome = "failed";
          lostEveryTime = true;
          errorClass = `${classify(error)}:${(error as any)?.code ?? (error as any)?.name ?? "?"}`;
          for (const k of keys) lostOnEveryAttemptKeys.add(k);
          // A delete that failed this way deleted nothing: its row must still be there.
          if (deleting !== undefined) lostOnEveryAttemptUndeleted.add(deleting);
          if (lostOnEveryAttemptDetails.length < 5)
            lostOnEveryAttemptDetails.push(`${op} at ${Math.round(t0 - start)}-${Math.round(now())} ms: ${[...rerunsOfThisOp.map((c) => c.error), error].map(describeFailure).join(" | ")}`);
        } else {
          outcome = "failed";
          errorClass = `${classify(error)}:${(error as any)?.code ?? (error as any)?.name ?? "?"}`;
          if (failureDetails.length < 5) failureDetails.push(`${op} at ${Math.round(t0 - start)}-${Math.round(now())} ms (ended ${new Date().toISOString()}): ${describeFailure(error)}`);
          for (const k of keys) failedKeys.add(k);
          for (const c of counters) uncertainIncrements.set(c, uncertainIncrements.get(c)! + 1);
        }
      }
      const t = now();
      samples.push({ t, startT: t0 - start, kind, latencyMs: performance.now() - t0, outcome, errorClass, lostOnEveryAttempt: lostEveryTime || undefined });
      if (outcome === "ok" && serverUpAt !== null && firstOkAfterUp === null && t >= serverUpAt) firstOkAfterUp = t;
    }
  };

  const killer = async () => {
    if (!options.killEveryMs) return;
    while (now() < stopAt) {
      await sleep(options.killEveryMs);
      if (serverDown) continue;
      try {
        const sessions = await db.victims();
        if (sessions.length === 0) continue;
        await db.kill(sessions[Math.floor(pickVictim() * sessions.length)]);
        killed++;
        events.push({ t: now(), what: "kill" });
      } catch {
        // the server may be going down under us
      }
    }
  };

  const restarter = async () => {
    if (options.restartAtMs === undefined || !db.embedded) return;
    await sleep(options.restartAtMs);
    do {
      serverDown = true;
      events.push({ t: now(), what: "server-down" });
      await db.kill9();
      await sleep(options.downMs ?? 500);
      await db.start();
      serverUpAt = now();
      firstOkAfterUp = null;
      await db.setIdleTimeout(options.waitTimeout); // MySQL's globals do not survive a restart
      events.push({ t: serverUpAt, what: "server-up" });
      serverDown = false;
      restarts++;
      if (options.restartEveryMs) await sleep(options.restartEveryMs);
    } while (options.restartEveryMs && now() < stopAt - (options.downMs ?? 500) - 1000);
  };

  const progress = setInterval(() => {
    options.onProgress?.({
      elapsedMs: now(),
      ops: samples.length,
      failures: samples.filter((s) => s.outcome === "failed").length,
    });
  }, 1000);
  try {
    await Promise.all([...Array.from({ length: workers }, (_, w) => worker(w)), killer(), restarter()]);
  } finally {
    clearInterval(progress);
    await prisma.$disconnect().catch(() => undefined);
    await db.setIdleTimeout(originalWaitTimeout).catch(() => undefined);
  }

  // The data: every key with more than one row is a duplicated write; every acknowledged key
  // without a row is a lost one.
  const counts = await db.ledgerCounts(prefix);
  const duplicateKeys = [...counts.values()].filter((n) => n > 1).length;
  const lostWrites = [...acknowledged].filter((k) => !counts.has(k) && !deletedKeys.has(k)).length;
  const unknownOutcomeApplied = [...uncertain].filter((k) => counts.has(k)).length;
  const failedButCommitted = [...failedKeys].filter((k) => counts.has(k)).length;
  const lostOnEveryAttemptApplied =
    [...lostOnEveryAttemptKeys].filter((k) => counts.has(k)).length + [...lostOnEveryAttemptUndeleted].filter((k) => counts.get(k) !== 1).length;

  let undeleted = 0;
  for (const k of deletedKeys) if (counts.has(k)) undeleted++;
  const counterMismatches: string[] = [];
  if (mix === "broad") {
    for (const [email, value] of await db.hotBalances(hotEmails)) {
      const acked = ackedIncrements.get(email)!;
      const open = uncertainIncrements.get(email)!;
      if (value < acked || value > acked + open) counterMismatches.push(`${email}: ${value}, acknowledged ${acked} (+ up to ${open} unknown)`);
    }
  }

  const latencies = samples.map((s) => s.latencyMs).sort((a, b) => a - b);
  const failuresByClass: Record<string, number> = {};
  for (const s of samples) if (s.errorClass && !s.lostOnEveryAttempt) failuresByClass[s.errorClass] = (failuresByClass[s.errorClass] ?? 0) + 1;
  const byKind = { read: 0, write: 0, transaction: 0 };
  for (const s of samples) byKind[s.kind]++;

  return {
    mode,
    durationMs,
    workers,
    operations: samples.length,
    byKind,
    failures: samples.filter((s) => s.outcome === "failed").length,
    failuresByClass,
    unknownOutcome: samples.filter((s) => s.outcome === "unknown-outcome").length,
    unknownOutcomeApplied,
    failedButCommitted,
    duplicateKeys,
    lostWrites,
    retries: retryCount.n,
    killed,
    restarted: options.restartAtMs !== undefined && db.embedded,
    restarts,
    p50Ms: Number(percentile(latencies, 50).toFixed(2)),
    p99Ms: Number(percentile(latencies, 99).toFixed(2)),
    recoveryMs: serverUpAt !== null && firstOkAfterUp !== null ? Number((firstOkAfterUp - serverUpAt).toFixed(1)) : null,
    driverUnhandledRejections: driverInitRejections() - rejectionsBefore,
    byOperation,
    undeleted,
    counterMismatches,
    unknownWithoutLostConnection,
    unknownVerificationIncomplete,
    retriesByClass,
    failureDetails,
    retryDetails,
    lostOnEveryAttempt: samples.filter((x) => x.lostOnEveryAttempt).length,
    lostOnEveryAttemptApplied,
    lostOnEveryAttemptDetails,
    verifiedCommits: verified,
    samples,
    events,
  };
}

/**
 * One failure in a line: each layer's name, code and errno, and the package's own details (reason,
 * attempts, waitedMs). Messages are left out: Prisma's carry source lines.
 */
function describeFailure(error: unknown): string {
  const layers: string[] = [];
  let e: any = error;
  for (let i = 0; i < 6 && e && typeof e === "object"; i++) {
    const own = ["reason", "attempts", "waitedMs", "kind", "originalCode", "errno", "sqlState"]
      .filter((k) => e[k] !== undefined && typeof e[k] !== "object")
      .map((k) => `${k}=${e[k]}`);
    layers.push([e.name, e.code, ...own].filter((x) => x !== undefined).join(" "));
    e = e.meta?.driverAdapterError ?? e.cause;
  }
  return layers.join(" <- ");
}

/**
 * The one shape of failure the contract allows under chaos: a connection-lost error (not an
 * unknown outcome, not an answer) after `retries` counted re-runs that were each taken after a lost
 * connection: the operation lost its connection on every attempt that could lose one. Re-runs that
 * cost no retry (after a deadlock, a wait for a server that was down) may come between.
 */
function lostOnEveryAttempt(error: unknown, reruns: RetryContext[], retries: number, classify: (error: unknown) => string): boolean {
  if (classify(error) !== "connection-lost") return false;
  const counted = reruns.filter((c) => c.counted);
  return retries > 0 && counted.length === retries && counted.every((c) => c.errorClass === "connection-lost");
}

/**
 * How many operations may lose their connection on both attempts by chance: the expected number
 * (each operation's two attempts, each taking half its latency, each hit with the chance that one
 * of the run's kills lands on one of `workers` connections meanwhile) plus four standard
 * deviations (Poisson), and at least 2. From the operations that did not fail that way: a re-run
 * that hangs before it fails would otherwise raise its own bound.
 */
export function allowedByChance(result: Pick<ChaosResult, "samples" | "killed" | "durationMs" | "workers">): number {
  const killsPerMs = result.killed / Math.max(1, result.durationMs);
  let expected = 0;
  for (const s of result.samples) {
    if (s.lostOnEveryAttempt) continue;
    const hit = Math.min(1, (s.latencyMs / 2) * killsPerMs / Math.max(1, result.workers));
    expected += hit * hit;
  }
  return Math.max(2, Math.ceil(expected + 4 * Math.sqrt(expected)));
}

/** The figures without the per-operation samples, for printing as one JSON line. */
export function summary(result: ChaosResult): Omit<ChaosResult, "samples" | "events"> {
  const { samples: _s, events: _e, ...rest } = result;
  return rest;
}

/**
 * What makes a run with the package fail: a failed operation, a duplicate, a loss, a counter off,
 * an "unknown" that was an answer, and with withResilience any "unknown" at all.
 */
export function violations(result: ChaosResult): string[] {
  const v: string[] = [];
  const failures = result.failures - result.lostOnEveryAttempt;
  if (failures > 0) v.push(`${failures} operations failed: ${JSON.stringify(result.failuresByClass)}`);
  if (result.lostOnEveryAttemptApplied > 0) v.push(`${result.lostOnEveryAttemptApplied} operations that lost their connection on every attempt changed rows`);
  // Chance: each attempt of an operation is hit when a kill lands on its connection while it runs.
  // A slow operation (a lock wait, a loaded CI machine: p99 of 360 ms seen) is hit far more often
  // than a fast one, so the bound follows this run's own latencies and kill rate. A re-run that fails
  // for a reason of its own (a stale connection, the same fault again) would fail every operation
  // that lost its connection once: tens of them, far above it.
  const allowed = allowedByChance(result);
  if (result.lostOnEveryAttempt > allowed)
    v.push(`${result.lostOnEveryAttempt} operations lost their connection on every attempt (more than chance, ${allowed}): ${result.lostOnEveryAttemptDetails.join("; ")}`);
  if (result.duplicateKeys > 0) v.push(`${result.duplicateKeys} keys have two rows (duplicated writes)`);
  if (result.lostWrites > 0) v.push(`${result.lostWrites} acknowledged writes are missing`);
  if (result.undeleted > 0) v.push(`${result.undeleted} acknowledged deletes left their rows`);
  for (const m of result.counterMismatches) v.push(`counter ${m}`);
  if (result.unknownWithoutLostConnection > 0) v.push(`${result.unknownWithoutLostConnection} unknown outcomes without a lost connection`);
  // With withResilience, a lost COMMIT reply is verified: nothing may be left "unknown".
  if (result.mode === "resilient" && result.unknownOutcome > 0)
    v.push(`${result.unknownOutcome} outcomes reported unknown (${result.unknownVerificationIncomplete} after an incomplete verification; commit verification is on)`);
  return v;
}
