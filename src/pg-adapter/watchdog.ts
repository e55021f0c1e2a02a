// The silent-drop watchdog on PostgreSQL (the MySQL one: src/adapter/watchdog.ts): ONE interval per
// adapter scans the pool's clients (nothing per call). A client that has waited `silentAfter` for a
// reply without reading a byte (and with nothing left to write) makes it look its backend up over a
// side connection (pg_stat_activity by the pid of BackendKeyData): running -> never cut; idle (the
// statement never arrived, or its reply was lost) or gone -> its socket is destroyed, the call fails
// with a lost connection and the safety rule decides (flight records: record.ts). A ghost still
// idle in a transaction (it holds the transaction's locks) is then ended, identity checked.
import { setTimeout as sleep } from "node:timers/promises";
import { describeError, log } from "../core/log.ts";
import type { ServerHealth } from "../core/health.ts";
import type { PgSide, SideClient } from "./side.ts";
import { judge, type BackendRow, type Verdict, type Watch } from "./silence.ts";

// How often the watchdog scans the pool's clients.
const SCAN_MS = 250;

/** What the watchdog uses of a pg Client (node_modules/pg/lib/client.js; internals, read only). */
export interface WatchedClient {
  processID?: number | null;
  _activeQuery?: unknown;
  _ending?: boolean;
  connection?: { stream?: WatchedStream };
}
interface WatchedStream {
  bytesRead?: number;
  bytesWritten?: number;
  writableLength?: number;
  destroyed?: boolean;
  _handle?: { writeQueueSize?: number } | null;
  destroy(): void;
}

export interface PgWatchdogHost {
  readonly health: ServerHealth<PgSide>;
  readonly silentAfter: number;
  readonly probeTimeout: number;
  readonly killGhostSessions: boolean;
  /** The pool in use now (pg-pool: its `_clients`). */
  pool(): { _clients?: WatchedClient[] } | undefined;
}

interface Progress {
  bytes: number;
  written: number;
  pending: number;
  query: unknown;
}

function progressOf(client: WatchedClient): Progress {
  const s = client.connection?.stream;
  return {
    bytes: s?.bytesRead ?? -1,
    written: s?.bytesWritten ?? -1,
    pending: (s?.writableLength ?? 0) + (s?._handle?.writeQueueSize ?? 0),
    query: client._activeQuery,
  };
}
function same(a: Progress, b: Progress): boolean {
  return a.bytes === b.bytes && a.written === b.written && a.pending === b.pending && a.query === b.query;
}
function backoff(checks: number): number {
  return Math.min(1000 * 2 ** checks, 10_000);
}

interface Entry extends Progress, Watch {
  since: number;
  nextCheck: number;
  checks: number;
}

// One row per pid asked about (LEFT JOIN: a pid with no backend of ours still gets a row), with what
// tells a pooler (the side client's BackendKeyData pid is not the backend's) and a restart apart.
// Durations are measured on the server's clock only (clock_timestamp() minus its own timestamps).
const LOOKUP_SQL = `SELECT p.pid, a.state, a.backend_start::text AS started, a.state_change::text AS changed,
  (extract(epoch FROM clock_timestamp() - a.state_change) * 1000)::float8 AS idle_ms,
  (extract(epoch FROM clock_timestamp() - a.backend_start) * 1000)::float8 AS age_ms,
  (extract(epoch FROM clock_timestamp() - pg_postmaster_start_time()) * 1000)::float8 AS uptime_ms,
  pg_backend_pid() AS me
  FROM unnest($1::int[]) AS p(pid)
  LEFT JOIN pg_stat_activity a ON a.pid = p.pid AND a.usename = session_user AND a.datname = current_database()`;

// Ends the ghost only if it is the very session judged (pid, start, last change, state) and nothing
// happened on it since: our socket is destroyed by then, so nothing more of ours can reach it.
const END_GHOST_SQL = `SELECT pg_terminate_backend(pid) AS ended FROM pg_stat_activity
  WHERE pid = $1 AND backend_start::text = $2 AND state_change::text = $3 AND state = $4
  AND usename = session_user AND datname = current_database()`;

export class PgWatchdog {
  private readonly watches = new Map<WatchedClient, Entry>();
  /** Bytes each client had written when last seen with nothing to wait for. */
  private readonly idleWritten = new WeakMap<WatchedClient, number>();
  /** When each client was first seen (its backend is at least this old). */
  private readonly firstSeen = new WeakMap<WatchedClient, number>();
  private checking = false;
  private timer?: NodeJS.Timeout;

  constructor(private readonly host: PgWatchdogHost) {}

  get running(): boolean {
    return this.timer !== undefined;
  }

  start() {
    if (this.host.silentAfter <= 0 || this.timer) return;
    this.timer = setInterval(() => this.scan(), SCAN_MS);
    this.timer.unref();
  }

  stop() {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.watches.clear();
  }

  /** Every SCAN_MS: reads each client's byte counters; asks the server only about silent ones. */
  private scan() {
    const { health } = this.host;
    if (health.state !== "up" || this.checking || health.isClosed) return;
    const clients = this.host.pool()?._clients;
    if (!clients) return;
    const now = performance.now();
    const silent: WatchedClient[] = [];
    const present = new Set<WatchedClient>();
    for (const client of clients) {
      present.add(client);
      // First seen once connected (pg-pool lists a client while it connects, before its backend exists).
      if (!this.firstSeen.has(client) && typeof client.processID === "number") this.firstSeen.set(client, now);
      const stream = client.connection?.stream;
      if (!client._activeQuery || client._ending || !stream || stream.destroyed || typeof client.processID !== "number") {
        this.watches.delete(client);
        this.idleWritten.set(client, stream?.bytesWritten ?? 0);
        continue;
      }
      const p = progressOf(client);
      const w = this.watches.get(client);
      if (!w || !same(w, p)) {
        const sameQuery = w !== undefined && w.query === p.query;
        const sent = (sameQuery ? w.sent : 0) + p.written - (w ? w.written : (this.idleWritten.get(client) ?? p.written));
        this.watches.set(client, { ...p, seen: sameQuery ? w.seen : now, sent, born: this.firstSeen.get(client) ?? now, since: now, nextCheck: 0, checks: 0 });
        continue;
      }
      if (p.pending === 0 && now - w.since >= this.host.silentAfter && now >= w.nextCheck) silent.push(client);
    }
    for (const client of this.watches.keys()) if (!present.has(client)) this.watches.delete(client);
    if (silent.length === 0) return;
    this.checking = true;
    void this.check(silent)
      .catch((e) => log(`silent connection check failed (${describeError(e)})`))
      .finally(() => {
        this.checking = false;
      });
  }

  /** Asks the server about the silent clients' backends, and acts on the answers. */
  private async check(silent: WatchedClient[]) {
    const { health, probeTimeout } = this.host;
    const asked = performance.now();
    const { value: rows, result } = await health.side.with(probeTimeout, async (side) => {
      const found = (await side.query(LOOKUP_SQL, [silent.map((c) => c.processID)])).rows as BackendRow[];
      return { found, sideKeyPid: (side as { processID?: number | null }).processID };
    });
    // The server cannot be reached: the outage logic (src/core/health.ts) has that; nothing is cut.
    if (!rows || !result.ok) return;
    const verdicts = silent.map((client) => {
      const w = this.watches.get(client);
      const row = rows.found.find((r) => Number(r.pid) === client.processID);
      const verdict: Verdict = w && row ? judge(row, w, asked, rows.sideKeyPid) : "running";
      return { client, w, row, verdict };
    });
    await this.act(verdicts);
  }

  private async act(verdicts: Array<{ client: WatchedClient; w?: Entry; row?: BackendRow; verdict: Verdict }>) {
    const dead: typeof verdicts = [];
    for (const v of verdicts) {
      if (!v.w) continue;
      if (v.verdict === "running") v.w.nextCheck = performance.now() + backoff(++v.w.checks);
      else if (v.verdict === "recheck") v.w.nextCheck = performance.now() + SCAN_MS;
      else dead.push(v);
    }
    if (dead.length === 0 || this.host.health.isClosed) return;
    // Still silent now (no byte read or written, the same query): destroyed in this same tick.
    const cut = dead.filter(({ client, w }) => {
      const still = w !== undefined && this.watches.get(client) === w && same(progressOf(client), w);
      if (!still) log(`connection of backend ${client.processID} got an answer while its backend was being looked at: left alone`);
      return still;
    });
    for (const { client, verdict, row } of cut) {
      log(`connection of backend ${client.processID} silent for ${this.host.silentAfter}+ ms and its backend is ${verdict === "gone" ? "gone" : row?.state}: destroying it`);
      this.watches.delete(client);
      client.connection?.stream?.destroy();
    }
    const ghosts = cut.filter(({ verdict, row }) => verdict === "idle" && row?.state?.startsWith("idle in transaction"));
    if (ghosts.length === 0 || !this.host.killGhostSessions) return;
    await this.endGhosts(ghosts.map((g) => g.row!));
  }

  /** Ends ghosts that hold a transaction (and its locks), each only if it is the session judged. */
  private async endGhosts(rows: BackendRow[]) {
    // Let the destroyed socket's last bytes (none, on a dead link) settle first.
    await sleep(0);
    const { result } = await this.host.health.side.with(this.host.probeTimeout, async (side: SideClient) => {
      for (const r of rows) {
        const ended = (await side.query(END_GHOST_SQL, [r.pid, r.started, r.changed, r.state])).rows.some((x: any) => x.ended === true);
        if (ended) log(`ended the ghost backend ${r.pid} (idle in its transaction; pid, start and last change checked)`);
      }
    });
    if (!result.ok) log(`could not end ghost backends (${result.reason})`);
  }
}
