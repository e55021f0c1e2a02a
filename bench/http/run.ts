// One side of the HTTP demo: four API workers (bench/http/server.ts) under node:cluster, autocannon
// bursts of requests that each carry a key of their own, connections KILLed while they run a
// statement, a tiny wait_timeout and one kill -9 + restart of the server. Afterwards every request's
// status is compared with what is in the database.
import cluster, { type Worker } from "node:cluster";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import autocannon from "autocannon";
import { prng } from "../../test/support/chaos.ts";
import { freePort, type TestDatabase } from "../../test/support/mariadb.ts";

export type HttpMode = "bare" | "package";

export interface HttpOptions {
  mode: HttpMode;
  /** The load schedule: bursts of `burstMs` every `burstMs + idleMs` for about this long. */
  durationMs: number;
  burstMs: number;
  idleMs: number;
  workers: number;
  /** autocannon connections (each sends its next request once the previous one is answered). */
  connections: number;
  killEveryMs: number;
  waitTimeout: number;
  downMs: number;
  seed: number;
  keyPrefix: string;
  onProgress?: (line: string) => void;
}

type Op = "feed" | "read-post" | "signup" | "create-post" | "publish" | "delete" | "increment";
const WRITES: Op[] = ["signup", "create-post", "publish", "delete", "increment"];

// Cumulative weights of the mix.
const MIX: Array<[Op, number]> = [
  ["feed", 0.2],
  ["read-post", 0.35],
  ["signup", 0.5],
  ["create-post", 0.65],
  ["publish", 0.75],
  ["delete", 0.82],
  ["increment", 1],
];

export interface RequestRecord {
  key: string;
  op: Op;
  route: string;
  /** ms since the start of the run: sent, answered. */
  sentT: number;
  t?: number;
  status?: number;
  /** What the server said failed (bench/http/server.ts describe()). */
  error?: { class?: string; name?: string; code?: string; layers?: string; message?: string; retries?: string[] };
  /** The post a publish or delete was for, the user a counter increment was for. */
  target?: number;
}

export interface HttpEvent {
  t: number;
  what: "kill" | "server-down" | "server-up" | "load-start" | "load-end" | "worker-crash";
}

export interface HttpResult {
  mode: HttpMode;
  durationMs: number;
  requests: number;
  ok: number;
  http5xx: number;
  otherStatus: number;
  /** Sent, never answered (autocannon timeout or connection error). */
  unanswered: number;
  /** Acknowledged (2xx) writes whose effect is missing. */
  lost: number;
  /** Writes answered 5xx whose effect is in the database. */
  unackedApplied: number;
  /** Writes never answered whose effect is in the database (neither acknowledged nor refused). */
  unansweredApplied: number;
  /** Keys with more than one row: a write applied twice. */
  duplicated: number;
  byOp: Record<string, { requests: number; http5xx: number }>;
  /** 5xx by what failed: class, Prisma code and the driver's code. */
  http5xxByError: Record<string, number>;
  /** The first 5xx answers in full (route, time, error layers and message). */
  http5xxDetails: string[];
  counters: Array<{ id: number; value: number; acknowledged: number; ledgerRows: number }>;
  countersExact: number;
  killed: number;
  /** What the KILLed connections were running (statement start, server state). */
  killedStatements: Record<string, number>;
  restarts: number;
  workerCrashes: number;
  driverInitRejections: number;
  /** Re-runs by the package (its onRetry), all workers. */
  retries: number;
  autocannonErrors: number;
  autocannonTimeouts: number;
  p50Ms: number;
  p99Ms: number;
  /** Per answered request: time and status, for the chart. */
  timeline: Array<{ t: number; status: number }>;
  events: HttpEvent[];
}


function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

const SERVER = fileURLToPath(new URL("./server.ts", import.meta.url));
const SEED_POSTS = 3000;
const AUTHORS = 8;
// The counter rows increments spread over. Few hot rows make transactions queue for their row
// locks, and a connection "running a statement" is then mostly one waiting for a lock (with 4 rows,
// most KILLs hit that UPDATE): 16 rows keep the KILLs spread over every route.
const COUNTERS = 16;

/** The bursts of a schedule: at least two, so that the idle gap between them is always there. */
export function burstStarts(o: Pick<HttpOptions, "durationMs" | "burstMs" | "idleMs">): number[] {
  const cycle = o.burstMs + o.idleMs;
  const n = Math.max(2, Math.floor((o.durationMs + o.idleMs) / cycle));
  return Array.from({ length: n }, (_, i) => i * cycle);
}

async function seed(db: TestDatabase, prefix: string) {
  const t = (name: string) => `\`${db.database}\`.\`${name}\``;
  const emails = [...Array.from({ length: AUTHORS }, (_, i) => `${prefix}-author-${i}@example.com`), ...Array.from({ length: COUNTERS }, (_, i) => `${prefix}-counter-${i}@example.com`)];
  await db.admin(`INSERT INTO ${t("User")} (email, name) VALUES ${emails.map(() => "(?, 'seed')").join(", ")}`, emails);
  const users = await db.admin<any[]>(`SELECT id, email FROM ${t("User")} WHERE email IN (?)`, [emails]);
  const idOf = new Map(users.map((u) => [u.email as string, Number(u.id)]));
  const authorEmails = emails.slice(0, AUTHORS);
  const counterIds = emails.slice(AUTHORS).map((e) => idOf.get(e)!);
  for (let from = 0; from < SEED_POSTS; from += 500) {
    const rows = Array.from({ length: Math.min(500, SEED_POSTS - from) }, (_, i) => [`${prefix}-seed-${from + i}`, idOf.get(authorEmails[(from + i) % AUTHORS])!]);
    await db.admin(`INSERT INTO ${t("Post")} (title, authorId) VALUES ${rows.map(() => "(?, ?)").join(", ")}`, rows.flat());
  }
  const posts = await db.admin<any[]>(`SELECT id FROM ${t("Post")} WHERE title LIKE ? ORDER BY id`, [`${prefix}-seed-%`]);
  return { authorEmails, counterIds, postIds: posts.map((p) => Number(p.id)) };
}

/** Forks `n` API workers and keeps them at `n`: a worker that dies is counted and replaced. */
function startWorkers(n: number, env: Record<string, string>, onCrash: () => void) {
  cluster.setupPrimary({ exec: SERVER });
  const workers = new Set<Worker>();
  const stats: Array<{ driverInitRejections: number; retries: number }> = [];
  let stopping = false;
  let readyCount = 0;
  let onReady: () => void = () => undefined;
  const fork = () => {
    const w = cluster.fork(env);
    workers.add(w);
    w.on("message", (m: any) => {
      if (m?.type === "ready") {
        readyCount++;
        onReady();
      } else if (m?.type === "stats") stats.push(m);
    });
    w.on("exit", (code, signal) => {
      workers.delete(w);
      if (stopping) return;
      onCrash();
      console.error(`\n  a ${env.HTTP_DEMO_MODE} worker exited (${signal ?? code}); forking another`);
      fork();
    });
  };
  for (let i = 0; i < n; i++) fork();
  return {
    stats,
    async ready(timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      while (readyCount < n) {
        if (Date.now() > deadline) throw new Error(`the API workers did not start within ${timeoutMs} ms`);
        await new Promise<void>((resolve) => {
          onReady = resolve;
          setTimeout(resolve, 200);
        });
      }
    },
    /** Asks each worker to finish what it is answering and exit; kills the ones that do not within the bound. */
    async stop(timeoutMs = 30_000) {
      stopping = true;
      const exits = [...workers].map((w) => new Promise((resolve) => (w.isDead() ? resolve(undefined) : w.once("exit", resolve))));
      for (const w of workers) w.send({ type: "shutdown" });
      const timer = setTimeout(() => {
        for (const w of workers) w.process.kill("SIGKILL");
      }, timeoutMs);
      await Promise.all(exits);
      clearTimeout(timer);
    },
  };
}

export async function runHttp(db: TestDatabase, o: HttpOptions): Promise<HttpResult> {
  const prefix = o.keyPrefix;
  const data = await seed(db, prefix);
  const random = prng(o.seed);
  const pickVictim = prng(o.seed + 1);
  // Each seeded post is published at most once and deleted at most once, by different requests.
  const half = Math.floor(data.postIds.length / 2);
  const publishQueue = data.postIds.slice(0, half);
  const deleteQueue = data.postIds.slice(half);

  const originalWaitTimeout = await db.getGlobal("wait_timeout");
  await db.setGlobal("wait_timeout", o.waitTimeout);

  let workerCrashes = 0;
  const events: HttpEvent[] = [];
  let start = performance.now();
  const now = () => performance.now() - start;
  const port = await freePort();
  const pool = startWorkers(
    o.workers,
    { HTTP_DEMO_MODE: o.mode, HTTP_DEMO_PORT: String(port), DATABASE_URL: db.url },
    () => {
      workerCrashes++;
      events.push({ t: now(), what: "worker-crash" });
    },
  );

  const records = new Map<string, RequestRecord>();
  let n = 0;
  let autocannonErrors = 0;
  let autocannonTimeouts = 0;
  let killed = 0;
  const killedStatements: Record<string, number> = {};
  let restarts = 0;
  let serverDown = false;
  let loadOver = false;

  /** The next request of the mix, with its key, as autocannon will send it. */
  const nextRequest = (req: autocannon.Request): autocannon.Request => {
    const key = `${prefix}-${n++}`;
    const r = random();
    let op = MIX.find(([, upTo]) => r < upTo)![0];
    if ((op === "publish" && publishQueue.length === 0) || (op === "delete" && deleteQueue.length === 0)) op = "feed";
    const rec: RequestRecord = { key, op, route: "", sentT: now() };
    let method: autocannon.Request["method"] = "GET";
    let path = "/feed";
    let body: unknown;
    switch (op) {
      case "feed":
        path = "/feed?take=10";
        break;
      case "read-post":
        path = `/post/${data.postIds[Math.floor(random() * data.postIds.length)]}`;
        break;
      case "signup":
        method = "POST";
        path = "/signup";
        body = { key, email: `${key}@example.com`, name: "demo", posts: [{ title: `${key}-p` }] };
        break;
      case "create-post":
        method = "POST";
        path = "/post";
        body = { key, title: key, body: "demo", authorEmail: data.authorEmails[Math.floor(random() * AUTHORS)] };
        break;
      case "publish":
        rec.target = publishQueue.shift()!;
        method = "PUT";
        path = `/publish/${rec.target}`;
        body = { key };
        break;
      case "delete":
        rec.target = deleteQueue.shift()!;
        method = "DELETE";
        path = `/post/${rec.target}`;
        break;
      case "increment":
        rec.target = data.counterIds[Math.floor(random() * COUNTERS)];
        method = "PUT";
        path = `/user/${rec.target}/increment`;
        body = { key };
        break;
    }
    rec.route = `${method} ${path.replace(/\/\d+/g, "/:id").replace(/\?.*$/, "")}`;
    records.set(key, rec);
    const headers: Record<string, string> = { ...(req.headers as Record<string, string>), "x-request-key": key };
    if (body !== undefined) headers["content-type"] = "application/json";
    return { ...req, method, path, headers, body: body === undefined ? undefined : JSON.stringify(body) };
  };

  const onResponse = (status: number, body: string, _ctx: object, headers: autocannon.Request["headers"]) => {
    const key = Object.entries(headers ?? {}).find(([k]) => k.toLowerCase() === "x-request-key")?.[1];
    const rec = typeof key === "string" ? records.get(key) : undefined;
    if (!rec) return;
    rec.status = status;
    rec.t = now();
    if (status >= 500) {
      try {
        rec.error = JSON.parse(body).error;
      } catch {
        rec.error = { message: body.slice(0, 200) };
      }
    }
  };

  /** One burst: autocannon for `burstMs`, then each connection stops after its answer in flight. */
  const allClients: any[] = [];
  const burst = async () => {
    const clients: any[] = [];
    const instance = autocannon({
      url: `http://127.0.0.1:${port}`,
      connections: o.connections,
      pipelining: 1,
      // Longer than any wait the API may have (the pool's 10 s acquire timeout, the package's 15 s
      // deadline), so that a slow answer is an answer, not a timeout.
      timeout: 40,
      duration: o.burstMs / 1000 + 60,
      sampleInt: 100,
      setupClient: (client) => {
        clients.push(client);
        allClients.push(client);
      },
      requests: [{ setupRequest: nextRequest, onResponse }],
    });
    (instance as any).on("reqError", () => undefined);
    events.push({ t: now(), what: "load-start" });
    await sleep(o.burstMs);
    events.push({ t: now(), what: "load-end" });
    // autocannon's own `responseMax`: a client at its limit ends instead of sending more.
    for (const c of clients) c.responseMax = Math.max(1, c.reqsMade);
    const result = await instance;
    autocannonErrors += result.errors;
    autocannonTimeouts += result.timeouts;
  };

  const starts = burstStarts(o);
  const restartAt = starts[Math.floor(starts.length / 2)] + Math.min(700, o.burstMs / 2);

  // Every `killEveryMs`, one connection running a statement is KILLed: the processlist is read until
  // one is (statements take a millisecond or two), for at most `killWindowMs` of the period, so that
  // two kills are always most of a period apart. None in the idle gaps, where nothing runs.
  const killWindowMs = Math.min(100, o.killEveryMs / 2);
  const killer = async () => {
    let next = now();
    while (!loadOver) {
      next += o.killEveryMs;
      await sleep(Math.max(0, next - now()));
      while (!serverDown && !loadOver && now() < next + killWindowMs) {
        try {
          const running = (await db.appConnections()).filter((c) => c.command === "Query" || c.command === "Execute");
          if (running.length > 0) {
            const victim = running[Math.floor(pickVictim() * running.length)];
            await db.admin(`KILL ${victim.id}`);
            killed++;
            events.push({ t: now(), what: "kill" });
            const what = `${(victim.info ?? "").replace(/\s+/g, " ").slice(0, 40)} [${victim.state ?? ""}]`;
            killedStatements[what] = (killedStatements[what] ?? 0) + 1;
            break;
          }
        } catch {
          // the statement ended first (unknown thread), or the server is going down under us
        }
        await sleep(5);
      }
    }
  };

  let phase = "load";
  const restarter = async () => {
    if (!db.embedded) return;
    await sleep(Math.max(0, restartAt - now()));
    serverDown = true;
    events.push({ t: now(), what: "server-down" });
    phase = "kill -9";
    await db.kill9();
    phase = "server down";
    await sleep(o.downMs);
    phase = "server starting";
    await db.start();
    phase = "SET GLOBAL after restart";
    await db.setGlobal("wait_timeout", o.waitTimeout); // globals do not survive a restart
    events.push({ t: now(), what: "server-up" });
    serverDown = false;
    restarts++;
    phase = "load";
  };

  // A bound on the whole side: anything stuck ends the demo with what was stuck, not a hang.
  const boundMs = starts.at(-1)! + o.burstMs + 90_000;
  let bound: NodeJS.Timeout | undefined;
  const stuck = new Promise<never>((_, reject) => {
    bound = setTimeout(() => {
      const open = [...records.values()].filter((r) => r.status === undefined);
      const clients = allClients.filter((c) => !c.destroyed).map((c) => `${c.reqsMade}/${c.responseMax ?? "-"}`);
      reject(
        new Error(
          `the ${o.mode} side did not finish within ${boundMs / 1000} s: ${phase}, server ${serverDown ? "down" : "up"}, ` +
            `${open.length} requests unanswered (${open.slice(0, 5).map((r) => `${r.route} sent at ${Math.round(r.sentT)} ms`).join(", ")}), ` +
            `autocannon clients still running (sent/limit): ${clients.join(" ") || "none"}`,
        ),
      );
    }, boundMs);
  });

  let progress: NodeJS.Timeout | undefined;
  try {
    await pool.ready();
    // Each worker's first requests load Prisma's query engine and fill its pool: one second of
    // reads, not counted, so that the run measures the faults and not the cold start.
    await autocannon({ url: `http://127.0.0.1:${port}`, connections: o.connections, duration: 1, requests: [{ method: "GET", path: "/feed?take=10" }] });
    start = performance.now();
    progress = setInterval(() => {
      let failed = 0;
      for (const r of records.values()) if (r.status !== undefined && r.status >= 500) failed++;
      o.onProgress?.(`${(now() / 1000).toFixed(0).padStart(3)} s, ${records.size} requests, ${failed} answered 5xx`);
    }, 1000);
    const faults = Promise.all([killer(), restarter()]);
    const load = (async () => {
      const bursts: Promise<void>[] = [];
      for (const s of starts) {
        await sleep(Math.max(0, s - now()));
        bursts.push(burst());
      }
      await Promise.all(bursts);
      loadOver = true;
      await faults;
    })();
    // A fault that fails (the server does not come back) ends the side at once.
    await Promise.race([load, stuck, faults.then(() => load)]);
  } finally {
    loadOver = true;
    clearTimeout(bound);
    clearInterval(progress);
    await pool.stop();
    await db.setGlobal("wait_timeout", Number(originalWaitTimeout)).catch(() => undefined);
  }
  const durationMs = now();

  // The database, compared with the answers.
  const t = (name: string) => `\`${db.database}\`.\`${name}\``;
  const all = [...records.values()];
  const users = new Set((await db.admin<any[]>(`SELECT email FROM ${t("User")} WHERE email LIKE ?`, [`${prefix}-%`])).map((r) => r.email as string));
  const titles = new Map<string, number>();
  for (const r of await db.admin<any[]>(`SELECT title, COUNT(*) AS n FROM ${t("Post")} WHERE title LIKE ? GROUP BY title`, [`${prefix}-%`]))
    titles.set(r.title, Number(r.n));
  const postBodies = new Map<number, string | null>();
  for (const r of await db.admin<any[]>(`SELECT id, body FROM ${t("Post")} WHERE id IN (?)`, [data.postIds])) postBodies.set(Number(r.id), r.body);
  const ledger = new Map<string, number>();
  for (const r of await db.admin<any[]>(`SELECT \`key\`, COUNT(*) AS n FROM ${t("Ledger")} WHERE \`key\` LIKE ? GROUP BY \`key\``, [`${prefix}-%`]))
    ledger.set(r.key, Number(r.n));

  let duplicated = 0;
  /** Whether a write's effect is in the database (and counts writes applied twice). */
  const applied = (r: RequestRecord): boolean => {
    switch (r.op) {
      case "signup": {
        const n = titles.get(`${r.key}-p`) ?? 0;
        if (n > 1) duplicated++;
        return users.has(`${r.key}@example.com`);
      }
      case "create-post": {
        const n = titles.get(r.key) ?? 0;
        if (n > 1) duplicated++;
        return n > 0;
      }
      case "publish":
        return postBodies.get(r.target!) === `published ${r.key}`;
      case "delete":
        return !postBodies.has(r.target!);
      case "increment": {
        const n = ledger.get(r.key) ?? 0;
        if (n > 1) duplicated++;
        return n > 0;
      }
      default:
        return false;
    }
  };
  let lost = 0;
  let unackedApplied = 0;
  let unansweredApplied = 0;
  for (const r of all) {
    if (!WRITES.includes(r.op)) continue;
    const isApplied = applied(r);
    if (r.status === undefined) {
      if (isApplied) unansweredApplied++;
    } else if (r.status >= 200 && r.status < 300) {
      if (!isApplied) lost++;
    } else if (r.status >= 500 && isApplied) unackedApplied++;
  }

  const counterRows = await db.admin<any[]>(`SELECT id, balance FROM ${t("User")} WHERE id IN (?)`, [data.counterIds]);
  const counters = counterRows.map((row) => {
    const id = Number(row.id);
    const mine = all.filter((r) => r.op === "increment" && r.target === id);
    return {
      id,
      value: Number(row.balance),
      acknowledged: mine.filter((r) => r.status !== undefined && r.status >= 200 && r.status < 300).length,
      ledgerRows: mine.reduce((sum, r) => sum + (ledger.get(r.key) ?? 0), 0),
    };
  });

  const byOp: HttpResult["byOp"] = {};
  const http5xxByError: Record<string, number> = {};
  const http5xxDetails: string[] = [];
  for (const r of all) {
    const route = (byOp[r.route] ??= { requests: 0, http5xx: 0 });
    route.requests++;
    if (r.status === undefined || r.status < 500) continue;
    route.http5xx++;
    const e = r.error ?? {};
    const layers = (e.layers ?? "").split(" <- ");
    const what = `${e.class ?? "?"}: ${[e.name, e.code].filter(Boolean).join(" ")}${layers.length > 1 ? ` <- … ${layers.at(-1)}` : ""}`;
    http5xxByError[what] = (http5xxByError[what] ?? 0) + 1;
    if (http5xxDetails.length < 8)
      http5xxDetails.push(
        `${r.route} at ${Math.round(r.sentT)}-${Math.round(r.t!)} ms: ${e.layers ?? "?"} (${e.message ?? ""})` +
          (e.retries?.length ? `; after re-runs: ${e.retries.join("; ")}` : ""),
      );
  }
  const latencies = all.filter((r) => r.t !== undefined).map((r) => r.t! - r.sentT).sort((a, b) => a - b);
  return {
    mode: o.mode,
    durationMs,
    requests: all.length,
    ok: all.filter((r) => r.status !== undefined && r.status >= 200 && r.status < 300).length,
    http5xx: all.filter((r) => r.status !== undefined && r.status >= 500).length,
    otherStatus: all.filter((r) => r.status !== undefined && (r.status < 200 || (r.status >= 300 && r.status < 500))).length,
    unanswered: all.filter((r) => r.status === undefined).length,
    lost,
    unackedApplied,
    unansweredApplied,
    duplicated,
    byOp,
    http5xxByError,
    http5xxDetails,
    counters,
    countersExact: counters.filter((c) => c.value === c.acknowledged && c.value === c.ledgerRows).length,
    killed,
    killedStatements,
    restarts,
    workerCrashes,
    driverInitRejections: pool.stats.reduce((sum, s) => sum + s.driverInitRejections, 0),
    retries: pool.stats.reduce((sum, s) => sum + (s.retries ?? 0), 0),
    autocannonErrors,
    autocannonTimeouts,
    p50Ms: Number(percentile(latencies, 50).toFixed(1)),
    p99Ms: Number(percentile(latencies, 99).toFixed(1)),
    timeline: all.filter((r) => r.t !== undefined).map((r) => ({ t: r.t!, status: r.status! })),
    events,
  };
}
