// withResilience(): wraps a Prisma driver adapter factory (e.g. `new PrismaMariaDb(url)`) so that
// every failed call says what had reached the server (see flight.ts). It delegates everything and
// adds no work to a call that succeeds: one state check and one `.catch` per call. What watches the
// connections (the silent-drop watchdog) is one interval per adapter that scans the pool's
// connections, never a timer per call.
import { classify, errorFacts, provesNotSent, isAccountConnectionLimit, isReadOnlyAnswer, isWsrepNotReady, serverAnswered } from "../errors/classify.ts";
import type { FlightPhase } from "./flight.ts";
import { ServerHealth } from "./health.ts";
import { setTimeout as sleep } from "node:timers/promises";
import { describeError, log } from "../log.ts";
import { recordVerification } from "../telemetry.ts";
import { resolveAdapterOptions, type ResilientAdapterOptions, type ResolvedAdapterOptions } from "./options.ts";
import {
  capturePool,
  redactedUrl,
  refusalOf,
  flavorOf,
  isSessionRow,
  processlist,
  restartOf,
  sameServer,
  sessionIdentityOf,
  sessionRowSql,
  sessionSql,
  SideConnections,
  type ConnOptions,
  type Flavor,
  type ProbeTarget,
  type SessionIdentity,
  type SideConnection,
} from "./side.ts";
import { isAutocommitDml } from "./sql.ts";
import { ResilientTransaction, tagged, type FailureHandler } from "./transaction.ts";
import { ClusterNodes } from "./nodes.ts";
import { serializePrepares } from "./prepare.ts";
import { markKey, prepareCommitTable, verifyCommit, type CommitVerdict } from "./verify.ts";
import type { AdapterLike, SqlQueryLike } from "./types.ts";

/** Any Prisma SQL driver adapter factory: `PrismaMariaDb`, or one of your own. */
export interface AdapterFactoryLike {
  readonly provider: string;
  readonly adapterName: string;
  connect(): Promise<any>;
}

const WRAPPED = Symbol.for("prisma-extension-resilience.wrapped");
/** On the wrapped factory: did its adapter meet a fault lately (the extension asks after a P2028)? */
export const RECENT_FAULT = Symbol.for("prisma-extension-resilience.recentFault");
/** The factory's answer to "was the server found down just after a connection lost at time t?" */
export const OUTAGE_AFTER = Symbol.for("prisma-extension-resilience.outageAfter");
/** The factory's answer to "which server is this, mariadb or mysql?" (for telemetry), once a connection told. */
export const DB_SYSTEM = Symbol.for("prisma-extension-resilience.dbSystem");
/**
 * A killed server closes its connections before its listening socket, in no set order: the probe made
 * the moment a connection dies can still be accepted, and the rechecks find the server down up to
 * RECHECK_MS later. A loss followed that closely by an outage was the outage's.
 */
const OUTAGE_AFTER_LOSS_MS = 1500;
// How long after a fault (a pooled connection closed under us, an unavailable server, a "not
// ready"/"read-only" answer) a transaction that cannot start within maxWait is taken for that
// fault's (Galera evicts a dead node after 5-15 s; meanwhile wsrep_sync_wait holds every BEGIN),
// not for a busy pool.
const RECENT_FAULT_MS = 15_000;
// A first connect that has not answered after this long (a healthy server answers SELECT VERSION()
// in milliseconds) makes the adapter probe: a server down at start is noticed now, not after the
// pool's acquireTimeout.
const STARTUP_GRACE_MS = 250;
// How often the watchdog scans the pool's connections.
const SCAN_MS = 250;
// Side work (a session check, a ghost kill) never outlives this: its connection is destroyed.
const SIDE_WORK_MS = 2000;
// dispose() waits this long at most for the pools to end (mariadb's pool.end() itself gives busy
// connections 10 s, then destroys them).
const POOL_END_MS = 11_000;

/** True when the factory (or adapter) was made by withResilience(). */
export function isResilientAdapter(value: unknown): boolean {
  return typeof value === "object" && value !== null && (value as any)[WRAPPED] === true;
}

/**
 * A command this large (bytes written since the connection was last seen before it) may still be on
 * its way to the server after silentAfter: the server shows `Sleep` until it has read the whole
 * packet, over a slow link for seconds (more than certainly fits in flight at once).
 */
const LARGE_COMMAND_BYTES = 16 * 1024;

/** What the watchdog remembers about a pool connection that is waiting for a reply. */
interface Watch extends WaitState {
  /**
   * When the command it waits on was first seen (kept across progress): the server had finished
   * every command before it by then (their replies had arrived).
   */
  seen: number;
  /** Bytes written since the connection was last seen before that command: at least the command's own size. */
  sent: number;
  /** Commands in the receive queue: behind the head, some of `sent` may be theirs. */
  queued: number;
  since: number;
  nextCheck: number;
  checks: number;
}

interface WaitState {
  /** Bytes read from the socket. */
  bytes: number;
  /** Bytes the driver has written to the socket, and those of them not yet handed to the kernel. */
  written: number;
  pending: number;
  /** The command it waits on (the driver's receive queue's head). */
  waitingOn: unknown;
}

/** The command a connection waits on and its bytes read, written and still pending: a change is progress. */
function waitState(conn: any): WaitState {
  const socket = conn.socket;
  return {
    bytes: socket?.bytesRead ?? -1,
    written: socket?.bytesWritten ?? -1,
    pending: (socket?.writableLength ?? 0) + (socket?._handle?.writeQueueSize ?? 0),
    waitingOn: conn.receiveQueue?.peekFront?.(),
  };
}

function sameState(a: WaitState, b: WaitState): boolean {
  return a.bytes === b.bytes && a.written === b.written && a.pending === b.pending && a.waitingOn === b.waitingOn;
}

class ResilientAdapter implements AdapterLike, FailureHandler {
  readonly [WRAPPED] = true;
  readonly health: ServerHealth;
  private current!: AdapterLike;
  /** mariadb's Pool behind `current`, when the factory built it (then a fresh one can replace it). */
  private pool?: any;
  /** The factory builds its pool from settings (URL or config), so it can build a fresh one. */
  private ownsPool = false;
  private readonly retiredPools = new WeakSet<object>();
  /** Every pool the factory built for this adapter and not yet ended, whatever became of its connect(). */
  private readonly pools = new Set<any>();
  /** Pools being ended (retired, or by dispose()): dispose() awaits them. */
  private readonly endings = new Set<Promise<void>>();
  /** The pool each adapter the factory returned uses. */
  private readonly poolOf = new WeakMap<object, any>();
  private config?: ConnOptions;
  private target?: ProbeTarget;
  /** The pool's open connections (mariadb Connection objects), for the watchdog and outages. */
  private readonly conns = new Set<any>();
  /** Connections already watched (adopted at 'connection' or, made before the watch, at 'acquire'). */
  private readonly adopted = new WeakSet<object>();
  /** When each pooled connection went idle in the pool (absent while it is handed out). */
  private readonly idleSince = new WeakMap<object, number>();
  /** Who each connection is, as the server sees it (keyed by the connection's `info`, shared with the promise API). */
  private readonly sessions = new WeakMap<object, SessionIdentity>();
  private readonly watches = new Map<any, Watch>();
  /** Bytes each connection had written when the watchdog last saw it with nothing to wait for. */
  private readonly idleWritten = new WeakMap<object, number>();
  private queuedSince = 0;
  private lastProgress = 0;
  private queueNextCheck = 0;
  private queueChecks = 0;
  private checking = false;
  private watchdog?: NodeJS.Timeout;
  private disposing?: Promise<void>;
  /** Commit verification: `pending` until the table is checked, then `on` or `off`. */
  private marks: "pending" | "on" | "off";
  /** The server has `@@in_transaction` (MariaDB): marks are guarded by it. */
  guardedMarks = false;
  /** `@@innodb_rollback_on_timeout`, read with the commit table (undefined: not known). */
  rollbackOnTimeout?: boolean;
  private renewing?: Promise<void>;
  private lastRenewal = 0;
  private lastFaultAt = Number.NEGATIVE_INFINITY;
  /** Galera nodes' own addresses, for verifying a COMMIT lost with its node. */
  private readonly nodes: ClusterNodes;
  /** The server's flavour, from the handshake of a pooled connection (undefined until one is made). */
  flavor?: Flavor;

  constructor(
    private readonly factory: AdapterFactoryLike,
    private readonly options: ResolvedAdapterOptions,
    private readonly onDisposed?: () => void,
  ) {
    const side = new SideConnections(
      () => this.config,
      () => this.target,
    );
    this.marks = options.verifyCommits ? "pending" : "off";
    this.nodes = new ClusterNodes(side);
    this.health = new ServerHealth(options, side, {
      onDown: () => {
        this.destroyBusyConnections();
        this.retirePool();
      },
      onRefused: () => this.retirePool(),
      reconnect: () => this.reconnect(),
      url: () => redactedUrl(this.config),
      system: () => this.flavor,
    });
  }

  /** First connect: resolves with this adapter, quickly also when the server is down or refuses us. */
  async start(): Promise<this> {
    const connecting = this.connectInner();
    let settled = false;
    void connecting.then(
      () => (settled = true),
      () => (settled = true),
    );
    const grace = setTimeout(() => {
      if (!settled) void this.health.suspect();
    }, STARTUP_GRACE_MS);
    try {
      this.current = await connecting;
    } finally {
      clearTimeout(grace);
    }
    if (this.options.silentAfter > 0) {
      this.watchdog = setInterval(() => this.scan(), SCAN_MS);
      this.watchdog.unref();
    }
    // Commit verification is ready before the first query (one side connection, a few statements).
    if (this.marks === "pending") await this.prepareMarks();
    return this;
  }

  /** Checks (or creates) the commit-mark table once, over a side connection; verification is off until it is there. */
  private async prepareMarks() {
    if (!this.health.side.canConnect || !this.config) return this.marksOff("the driver's settings are unknown (a pool you created yourself)");
    if (this.health.state !== "up") return; // tried again once the server is back
    const { ok, why, reached, guarded, rollbackOnTimeout } = await prepareCommitTable(this.health.side, true, Math.max(this.options.probeTimeout, 2000));
    if (this.marks !== "pending") return;
    if (ok) {
      this.marks = "on";
      this.guardedMarks = guarded === true;
      this.rollbackOnTimeout = rollbackOnTimeout;
      log("commit verification is on");
    } else if (reached) this.marksOff(why ?? "unknown");
    else log(`commit verification waits for the server (${why})`);
  }

  private marksOff(why: string) {
    if (this.marks === "off") return;
    this.marks = "off";
    process.emitWarning(
      `prisma-extension-resilience: commit verification is off (${why}); a lost COMMIT reply is reported as OutcomeUnknownError. See the README, "Exactly-once".`,
      { code: "RESILIENCE_VERIFY_OFF" },
    );
  }

  /** Calls the factory, learning its pool and settings while it builds them. */
  private connectInner(): Promise<AdapterLike> {
    // Connects are counted from the pool's first one, which its constructor starts.
    const { result, pool } = capturePool(() => this.factory.connect(), trackCreations);
    if (pool) {
      this.ownsPool = true;
      this.pool = pool;
      this.pools.add(pool);
      this.config = pool.opts.connOptions;
      this.watch(pool);
    }
    return Promise.resolve(result).then((adapter: AdapterLike) => {
      if (pool) this.poolOf.set(adapter, pool);
      if (!pool) {
        // A pool the app made itself: watched, never replaced (the adapter cannot build another).
        const driverPool = (adapter as any).underlyingDriver?.();
        if (driverPool && driverPool !== this.watchedExternal) {
          this.watchedExternal = driverPool;
          this.watch(driverPool);
        }
      }
      return adapter;
    });
  }
  private watchedExternal?: object;

  /**
   * Listens to the pool: its new connections (their settings, and who they are as the server sees
   * them), a pooled connection's error, and the pool failing to open one (a refusal is acted on at
   * once: callers waiting in the pool fail now, not at acquireTimeout). The 'error' listener also
   * keeps the driver from throwing an unhandled 'error' event.
   */
  private watch(pool: any) {
    if (typeof pool?.on !== "function") return;
    const suspect = () => {
      if (this.pool === pool || this.watchedExternal === pool) void this.health.suspect();
    };
    const adopt = (conn: any) => {
      if (!conn || typeof conn.on !== "function" || this.adopted.has(conn)) return;
      this.adopted.add(conn);
      const o = conn.opts;
      if (o && !this.config) this.config = o;
      if (o && !this.target) this.target = { host: o.host, port: o.port, socketPath: o.socketPath };
      this.conns.add(conn);
      if (conn.info?.serverVersion) this.flavor = flavorOf(conn);
      const forget = () => {
        this.conns.delete(conn);
        this.watches.delete(conn);
      };
      conn.once("end", forget);
      // A graceful close (idle reaping, pool.end) emits no 'end' on the connection: its socket's
      // 'close' does (unless the driver moved the connection to another socket: a redirect).
      const socket = conn.socket;
      // (clear() drops conn.socket before that 'close': gone or the same socket both mean closed.)
      socket?.once?.("close", () => {
        if (!conn.socket || conn.socket === socket) forget();
      });
      this.guardDestroy(conn);
      // A failed PREPARE must not let its pipelined EXECUTE run the previous statement (see prepare.ts).
      serializePrepares(conn);
      conn.on("error", (error: unknown) => {
        // A pooled connection closed under us: the server or a proxy went away (a node killed closes
        // every connection to it, idle ones included; the driver has already failed the calls in
        // flight). Not the driver retiring an idle one (socketTimeout) or the server's wait_timeout.
        if ((this.pool === pool || this.watchedExternal === pool) && !this.routineClose(conn, error)) this.noteFault();
        forget();
        suspect();
      });
      this.identify(conn);
    };
    pool.on("connection", (conn: any) => {
      if (conn) this.idleSince.set(conn, Date.now());
      adopt(conn);
    });
    // Connections a pool made before it was watched (a pool the app created itself opens some at
    // once) are adopted when first handed out.
    pool.on("acquire", (conn: any) => {
      if (conn) this.idleSince.delete(conn);
      adopt(conn);
    });
    pool.on("release", (conn: any) => {
      if (conn) this.idleSince.set(conn, Date.now());
    });
    pool.on("error", (e: unknown) => {
      log(`the pool could not open a connection (${describeError(e)})`);
      if (this.pool !== pool && this.watchedExternal !== pool) return;
      const refusal = refusalOf(e);
      if (refusal) this.health.refuse(refusal.reason, refusal.cause);
      // The account has all its connections (MAX_USER_CONNECTIONS): the app's own pool holds them,
      // callers wait for one of those. Not a fault, not an outage.
      else if (isAccountConnectionLimit(e)) return;
      else {
        this.noteFault();
        suspect();
      }
    });
  }

  /**
   * mariadb's destroy() of a busy connection (pool.end() calls it for connections still busy after
   * 10 s; so may anyone) sends `KILL <thread id>` over a new connection to the same address: behind
   * a proxy that reaches another server and ends whichever session has that number there, and its
   * failure (1094) is an unhandled rejection. Such a connection is failed at the socket first (the
   * driver then has nothing left to kill), its session ended only when provably ours, and the
   * pool's own destroy() still does its bookkeeping.
   */
  private guardDestroy(conn: any) {
    const destroy = conn.destroy;
    // Not mariadb 3.4's Connection (its socketErrorHandler is how the socket is failed): left as it is.
    if (typeof destroy !== "function" || typeof conn.socketErrorHandler !== "function") return;
    conn.destroy = (...args: unknown[]) => {
      if (conn.receiveQueue?.length > 0) {
        void this.endSession(conn, "busy");
        try {
          conn.socketErrorHandler();
        } catch {
          // the pool's destroy below still runs
        }
      }
      return destroy.apply(conn, args);
    };
  }

  /** Ends a connection's session from a side connection, when it is provably that connection's (see killSession). */
  private async endSession(conn: any, state: "busy" | "idle") {
    if (!this.options.killGhostSessions || this.health.isClosed) return;
    const { conn: side } = await this.health.side.connect(this.options.probeTimeout);
    if (!side) return;
    await this.bounded(side, async () => {
      await this.killSession(side, conn, await SideConnections.serverIdentity(side), state);
    }).catch((e) => log(`ending a destroyed connection's session failed (${describeError(e)})`));
  }

  /** Reads who a new connection is as the server sees it (thread id, user, client host:port, server). */
  private identify(conn: any) {
    if (!this.options.killGhostSessions && this.options.silentAfter === 0 && !this.options.verifyCommits) return;
    if (typeof conn.query !== "function" || !conn.info) return;
    // Without it, the watchdog never cuts this connection and no ghost of it is killed.
    const unidentified = () => log(`connection ${conn.threadId ?? "?"}: its session could not be identified (CONNECTION_ID() is another thread, or the query failed): never cut as silent`);
    try {
      conn.query(
        { sql: sessionSql(flavorOf(conn)) },
        (rows: any) => {
          const id = sessionIdentityOf(rows?.[0]);
          // Behind a multiplexing proxy the session may not be this connection's own: then none is kept.
          const own = Number(conn.threadId ?? conn.info?.threadId);
          if (id && (!Number.isFinite(own) || id.threadId === own)) {
            this.sessions.set(conn.info, id);
            if (this.marks !== "off") this.nodes.seen(id);
          } else unidentified();
        },
        unidentified,
      );
    } catch {
      // not the mariadb driver's connection: no identity, so never a kill
    }
  }

  /** Ends a pool (the current one by default), once; dispose() awaits the ending. */
  private retirePool(pool = this.pool) {
    if (!pool || this.retiredPools.has(pool)) return;
    this.retiredPools.add(pool);
    const ending: Promise<void> = Promise.resolve()
      .then(() => pool.end())
      .then(() => creationsSettled(pool))
      .catch((e: unknown) => log(`retiring the old pool failed (${describeError(e)})`))
      .finally(() => {
        this.endings.delete(ending);
        this.pools.delete(pool);
      });
    this.endings.add(ending);
  }

  /** Outage: every connection waiting for a reply is destroyed now; its caller goes on under the safety rule. */
  private destroyBusyConnections() {
    for (const conn of this.conns) if (conn.receiveQueue?.length > 0) destroyConnection(conn);
  }

  private async reconnect(): Promise<void> {
    // A pool the app made itself cannot be rebuilt: the existing one goes on (it reconnects at its own pace).
    if (!this.ownsPool) return;
    if (this.health.isClosed) throw new Error("closed");
    this.retirePool();
    let next: AdapterLike;
    try {
      next = await this.connectInner();
    } catch (e) {
      // The factory failed after building its pool (half-built): that pool and its timers end now.
      this.retirePool();
      throw e;
    }
    if (this.health.isClosed) {
      // Disposed while the fresh pool was being built: dispose() ended its pool; the adapter is let go too.
      await next.dispose().catch(() => undefined);
      throw new Error("closed");
    }
    this.current = next;
    if (this.marks === "pending") void this.prepareMarks();
  }

  // ---- the silent-drop watchdog -------------------------------------------------------------

  /**
   * Every SCAN_MS: a connection that has waited `silentAfter` for a reply without receiving a byte,
   * or callers queued that long for a connection, make the adapter ask the server, over a side
   * connection, what is going on. Costs nothing per call; nothing at all while no call waits.
   */
  private scan() {
    if (this.health.state !== "up" || this.checking || this.health.isClosed) return;
    const now = performance.now();
    const after = this.options.silentAfter;
    const silent: any[] = [];
    for (const conn of this.conns) {
      if (!(conn.receiveQueue?.length > 0)) {
        this.watches.delete(conn);
        this.idleWritten.set(conn, conn.socket?.bytesWritten ?? 0);
        continue;
      }
      const state = waitState(conn);
      const w = this.watches.get(conn);
      if (!w || !sameState(w, state)) {
        const same = w !== undefined && w.waitingOn === state.waitingOn;
        // Bytes written since last seen are this command's (or later ones'); with commands queued
        // behind the previous head, what was counted for it may be this one's too.
        const carried = w !== undefined && (same || w.queued > 1) ? w.sent : 0;
        const sent = carried + state.written - (w ? w.written : (this.idleWritten.get(conn) ?? 0));
        this.watches.set(conn, { ...state, seen: same ? w.seen : now, sent, queued: conn.receiveQueue.length, since: now, nextCheck: 0, checks: 0 });
        this.lastProgress = now;
        continue;
      }
      if (now - w.since >= after && now >= w.nextCheck) silent.push(conn);
    }
    const pool: any = this.pool ?? this.watchedExternal;
    const queued = typeof pool?.taskQueueSize === "function" ? pool.taskQueueSize() > 0 : false;
    if (!queued) {
      this.queuedSince = 0;
      this.queueChecks = 0;
    } else if (this.queuedSince === 0) this.queuedSince = now;
    // Callers queued for a connection while no connection makes progress: the pool cannot connect
    // (a saturated pool whose connections are receiving replies is only busy).
    const queueStuck = queued && now - this.queuedSince >= after && now - this.lastProgress >= after && now >= this.queueNextCheck;
    if (silent.length === 0 && !queueStuck) return;
    if (queueStuck) this.queueNextCheck = now + backoff(++this.queueChecks);
    this.checking = true;
    void this.checkSessions(silent)
      .catch((e) => log(`session check failed (${describeError(e)})`))
      .finally(() => {
        this.checking = false;
      });
  }

  /** Asks the server what the silent connections' sessions are doing, and acts on the answer. */
  private async checkSessions(silent: any[]) {
    const { conn: side, result } = await this.health.side.connect(this.options.probeTimeout);
    if (!side) {
      // The server cannot be reached (or refuses us): an outage, noticed without any timeout of the driver.
      this.health.judge(result);
      return;
    }
    await this.bounded(side, async () => {
      if (silent.length === 0) return;
      const server = await SideConnections.serverIdentity(side);
      const suspects: Array<{ conn: any; w: Watch | undefined; verdict: "idle" | "gone" }> = [];
      let slowest = 0;
      for (const conn of silent) {
        const w = this.watches.get(conn);
        const asked = performance.now();
        const verdict = await this.sessionVerdict(side, conn, server, w);
        slowest = Math.max(slowest, performance.now() - asked);
        if (verdict === "executing") {
          if (w) w.nextCheck = performance.now() + backoff(++w.checks);
        } else suspects.push({ conn, w, verdict });
      }
      // An answer describes the session when the server read it. An idle session may just have
      // answered: its reply can still be on its way (a round trip's grace). A connection that has
      // read or written a byte or moved on to another command since is not silent: the answer is stale.
      if (suspects.some((x) => x.verdict === "idle")) await sleep(Math.min(250, Math.max(20, slowest)), undefined, { ref: false });
      if (this.health.isClosed) return;
      // Each connection still silent is destroyed in this same tick (nothing more can be sent on it),
      // and only then is its idle session ended: the KILL can only reach the ghost.
      const dead = suspects.filter(({ conn, w }) => {
        const now = waitState(conn);
        const still = w !== undefined && conn.receiveQueue?.length > 0 && sameState(now, w);
        if (!still) log(`connection ${conn.threadId ?? "?"} got an answer while its session was being checked: left alone`);
        return still;
      });
      for (const { conn, verdict } of dead) {
        log(`connection ${conn.threadId ?? "?"} silent for ${this.options.silentAfter}+ ms and its session is ${verdict}: destroying it`);
        destroyConnection(conn);
      }
      for (const { conn, verdict } of dead) {
        if (verdict === "idle") await this.killSession(side, conn, server).catch((e) => log(`could not end the ghost session of connection ${conn.threadId ?? "?"} (${describeError(e)})`));
      }
    });
  }

  /**
   * What a silent connection's session is doing, as the server tells it. Only a session that is
   * provably this connection's (its identity, on the same server) is ever "idle" or "gone": without
   * that, a thread id looked up over the side connection may be another session's, or none, on
   * another server (a proxy, a balancer), and a silent statement (a lock wait) is cut on a healthy
   * server. Then it is taken as executing: a dead link is left to the driver's socketTimeout.
   */
  private async sessionVerdict(side: SideConnection, conn: any, server: any, w: Watch | undefined): Promise<"executing" | "idle" | "gone"> {
    const identity = conn.info ? this.sessions.get(conn.info) : undefined;
    if (!identity || !server || !w) return "executing";
    if (!sameServer(identity.server, server)) {
      // The same host and port, started later: a restart, no session from before survives it.
      // Another server (a proxy in front of a cluster): its sessions are out of sight; never cut.
      if (!restartOf(server, identity.server)) return "executing";
      // Its session still listed: the same server after all (a start time read late), not a restart.
      const [row] = await side.query(`SELECT USER AS user, HOST AS host FROM ${processlist(flavorOf(side))} WHERE ID = ?`, [identity.threadId]);
      return isSessionRow(row, identity) ? "executing" : "gone";
    }
    const asked = performance.now();
    const rows: any[] = await side.query(sessionRowSql(flavorOf(side)), [identity.threadId]);
    const row = rows?.[0];
    if (!isSessionRow(row, identity)) return "gone";
    if (row.command !== "Sleep") return "executing";
    // A server still reading a command shows `Sleep` too, idle since its previous command ended
    // (TIME_MS, measured). Idle for less time than since this command was first seen: the server
    // has finished it (the reply is lost). Else it may not have wholly reached the server. A small
    // one would have (it was lost on the way); a large one, or one whose bytes have not all left
    // this side, may still be arriving over a slow link: never cut (nor when it was answered before
    // the watchdog first saw it, within a scan: its lost reply is left to socketTimeout).
    if (row.ms !== null && row.ms !== undefined && Number(row.ms) < asked - w.seen) return "idle";
    return w.sent > LARGE_COMMAND_BYTES || w.pending > 0 ? "executing" : "idle";
  }

  /**
   * KILL of a session that is provably this connection's (same server, thread id, user, client
   * host:port), and idle unless `state` is "busy" (a connection destroyed while it waited for a reply).
   */
  private async killSession(side: SideConnection, conn: any, server: any, state: "busy" | "idle" = "idle") {
    if (!this.options.killGhostSessions) return;
    const identity = conn?.info ? this.sessions.get(conn.info) : undefined;
    if (!identity || !server || !sameServer(identity.server, server)) return;
    const rows: any[] = await side.query(
      `SELECT ID FROM ${processlist(flavorOf(side))} WHERE ID = ? AND USER = ? AND HOST = ?${state === "idle" ? " AND COMMAND = 'Sleep'" : ""}`,
      [identity.threadId, identity.user, identity.host],
    );
    if (!rows?.length) return;
    await side.query(`KILL CONNECTION ${Math.trunc(identity.threadId)}`);
    log(`killed the ${state === "idle" ? "ghost session" : "session of a destroyed busy connection"} ${identity.threadId}`);
  }

  /** Runs side work, then closes the side connection; work that takes too long is cut (the connection destroyed). */
  private async bounded(side: SideConnection, work: () => Promise<void>) {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      void this.health.side.release(side, true);
    }, SIDE_WORK_MS);
    try {
      await work();
    } finally {
      clearTimeout(timer);
      if (!timedOut) await this.health.side.release(side);
    }
  }

  // ---- FailureHandler -------------------------------------------------------------------------

  get provider() {
    return this.current?.provider ?? this.factory.provider;
  }
  get adapterName() {
    return this.current?.adapterName ?? this.factory.adapterName;
  }
  getConnectionInfo() {
    return this.current.getConnectionInfo?.();
  }

  get serverDown(): boolean {
    return this.health.state === "down";
  }

  markKeyOf(connection: unknown): string | undefined {
    if (this.marks !== "on") return undefined;
    const info = (connection as any)?.info;
    const identity = info ? this.sessions.get(info) : undefined;
    return identity ? markKey(identity) : undefined;
  }

  markFailed(error: unknown) {
    this.marksOff(`the commit mark failed: ${describeError(error)}`);
  }

  async verifyCommit(connection: unknown, key: string, token: string): Promise<CommitVerdict> {
    const info = (connection as any)?.info;
    const identity = info ? this.sessions.get(info) : undefined;
    const started = performance.now();
    const verdict: CommitVerdict =
      !identity || this.health.isClosed ? "unknown" : await verifyCommit(this.health.side, identity, key, token, started + this.options.verifyTimeout, {
            nodes: this.nodes,
            refusedMeansStopped: this.options.refusedMeansStopped,
            killSessions: this.options.killGhostSessions,
          });
    const ms = Math.round(performance.now() - started);
    try {
      this.options.onCommitVerified?.(Object.freeze({ verdict, ms }));
    } catch {
      // an observer's failure is not the database's
    }
    recordVerification(verdict, ms, this.flavor);
    return verdict;
  }

  /**
   * A server that answers "read-only" (a primary demoted by a failover) or "not ready" (a Galera
   * node outside the Primary component): the pool's connections point at it. A fresh pool (at most
   * once a second) lets the proxy or DNS send new connections to a server that can take writes.
   */
  private renewPool(reason: string) {
    if (!this.ownsPool || this.renewing || this.health.isClosed || performance.now() - this.lastRenewal < 1000) return;
    this.lastRenewal = performance.now();
    log(`the server answered ${reason}: replacing the pool's connections`);
    this.renewing = this.reconnect()
      .catch((e) => log(`replacing the pool failed (${describeError(e)})`))
      .finally(() => {
        this.renewing = undefined;
      });
  }

  /**
   * A pooled connection's close that is no fault: the driver's socketTimeout (45026), or a bare
   * close (FIN or reset, no reason given) of a connection idle in the pool for its session's
   * wait_timeout, read with its identity (less a tenth of it, up to 2 s: the pool's idle clock
   * starts at release, the server's at the reply). Without the identity every close counts.
   */
  private routineClose(conn: any, error: unknown): boolean {
    const e = error as any;
    if (e?.errno === 45026) return true;
    if (e?.errno !== 45009 && e?.code !== "ECONNRESET" && e?.code !== "EPIPE") return false;
    const waitTimeout = conn.info ? this.sessions.get(conn.info)?.waitTimeout : undefined;
    const since = this.idleSince.get(conn);
    if (waitTimeout === undefined || since === undefined) return false;
    return Date.now() - since >= waitTimeout * 1000 - Math.min(2000, waitTimeout * 100);
  }

  /**
   * A fault met: a pooled connection closed under us, a call's connection lost, an unavailable
   * server (the pool failing to connect too), a "not ready" or "read-only" answer.
   */
  private noteFault() {
    this.lastFaultAt = performance.now();
  }

  /** The server went down (was found so) within OUTAGE_AFTER_LOSS_MS after a connection lost at `lostAt`. */
  outageAfter(lostAt: number): boolean {
    const at = this.health.lastOutageAt;
    return at >= lostAt - 250 && at <= lostAt + OUTAGE_AFTER_LOSS_MS;
  }

  /** The server is down, or a fault was met in the last RECENT_FAULT_MS. */
  recentFault(): boolean {
    return this.health.state !== "up" || performance.now() - this.lastFaultAt < RECENT_FAULT_MS;
  }

  async suspect(error: unknown): Promise<void> {
    const readOnly = isReadOnlyAnswer(error);
    if (readOnly || isWsrepNotReady(error)) {
      this.noteFault();
      return this.renewPool(readOnly ? "read-only" : "not ready (Galera)");
    }
    const errorClass = classify(error);
    // No connection for this account (its MAX_USER_CONNECTIONS are all in use): the server answered.
    if (isAccountConnectionLimit(error)) return;
    if (errorClass === "connection-lost" || errorClass === "unavailable") {
      this.noteFault();
      log(`${errorClass} (${describeError(error)}): probing the server`);
      await this.health.suspect();
    }
  }

  async killGhost(threadId: number, connection?: unknown): Promise<void> {
    if (!this.options.killGhostSessions || this.health.isClosed) return;
    // Only a session that is provably this connection's (same server, thread id, user and client
    // host:port as the server saw them when it was opened) and idle ("Sleep": its client is gone).
    const info = (connection as any)?.info;
    const identity = info ? this.sessions.get(info) : undefined;
    if (!identity || identity.threadId !== Math.trunc(threadId)) {
      log(`ghost session ${threadId}: who it is was not recorded, so it is not killed`);
      return;
    }
    const { conn: side } = await this.health.side.connect(this.options.probeTimeout);
    if (!side) return;
    await this.bounded(side, async () => {
      const server = await SideConnections.serverIdentity(side);
      await this.killSession(side, connection, server);
    }).catch((e) => log(`could not kill ghost session ${threadId} (${describeError(e)})`));
  }

  private async onError(phase: FlightPhase, error: unknown, sql: string): Promise<never> {
    const refusal = connectRefusal(error);
    if (refusal) {
      this.health.refuse(refusal.reason, refusal.cause);
      throw tagged(phase, this.health.refusal ?? error, sql, { heldBack: true });
    }
    // Callers waiting in a pool ended because the server refuses us learn why (a statement the
    // server answered keeps its own answer, and one that may have been sent its own error).
    if (this.health.refusal && classify(error) === "unavailable" && !serverAnswered(error) && provesNotSent(error)) throw tagged(phase, this.health.refusal, sql, { heldBack: true });
    await this.suspect(error);
    throw tagged(phase, error, sql, { duringOutage: this.serverDown });
  }

  /** Runs `call` now when the server is up; while it is down, once it is back (or fails unsent). */
  private gated<T>(phase: FlightPhase, sql: string, call: () => Promise<T>): Promise<T> {
    if (this.health.state === "up") return call().catch((e) => this.onError(phase, e, sql));
    return this.health.gate().then(
      () => this.gated(phase, sql, call),
      (e) => {
        throw tagged(phase, e, sql, { heldBack: true });
      },
    );
  }

  // The hot path is the first line of each method: one state check, the call, one `.catch`.
  queryRaw(params: SqlQueryLike) {
    if (this.marks === "on" && isAutocommitDml(params.sql)) return this.inTransaction((tx) => tx.queryRaw(params));
    if (this.health.state === "up") return this.current.queryRaw(params).catch((e) => this.onError("autocommit", e, params.sql));
    return this.gated("autocommit", params.sql, () => this.current.queryRaw(params));
  }
  executeRaw(params: SqlQueryLike) {
    if (this.marks === "on" && isAutocommitDml(params.sql)) return this.inTransaction((tx) => tx.executeRaw(params));
    if (this.health.state === "up") return this.current.executeRaw(params).catch((e) => this.onError("autocommit", e, params.sql));
    return this.gated("autocommit", params.sql, () => this.current.executeRaw(params));
  }

  /**
   * A write outside a transaction, run inside one so that its COMMIT carries a mark: its outcome is
   * known even when the reply is lost. A failure of the statement itself is a statement of an open
   * transaction (the server rolls it back); the COMMIT is verified.
   */
  private async inTransaction<T>(run: (tx: ResilientTransaction) => Promise<T>): Promise<T> {
    const tx = await this.startTransaction();
    let result: T;
    try {
      result = await run(tx);
    } catch (error) {
      await tx.rollback().catch(() => undefined);
      throw error;
    }
    await tx.commit();
    return result;
  }
  executeScript(script: string) {
    return this.gated("autocommit", script, () => this.current.executeScript(script));
  }
  startTransaction(isolationLevel?: string) {
    const started =
      this.health.state === "up"
        ? this.current.startTransaction(isolationLevel).catch((e) => this.onError("begin", e, "BEGIN"))
        : this.gated("begin", "BEGIN", () => this.current.startTransaction(isolationLevel));
    return started.then((tx) => new ResilientTransaction(tx, this));
  }
  /**
   * Ends every pool this adapter built and waits for them (once: a second call returns the first
   * one's promise): the one in use, those retired during an outage, one half-built by a reconnect
   * that failed or is still under way. Leaves no timer, probe or socket behind.
   */
  dispose() {
    this.disposing ??= (async () => {
      this.onDisposed?.();
      if (this.watchdog) clearInterval(this.watchdog);
      this.health.close();
      const current = this.current;
      const own = current ? this.poolOf.get(current) : undefined;
      // The adapter in use ends its own pool, unless that pool was already ended (retired).
      const disposing = own && this.retiredPools.has(own) ? undefined : current?.dispose();
      if (own) this.retiredPools.add(own);
      for (const pool of this.pools) this.retirePool(pool);
      // mariadb's pool.end() gives a busy connection 10 s, then destroys it: bounded, also here.
      let timer: NodeJS.Timeout | undefined;
      const cutOff = new Promise<void>((resolve) => (timer = setTimeout(resolve, POOL_END_MS)));
      const ownEnded = disposing?.then(() => {
        if (own) this.pools.delete(own);
        return own && creationsSettled(own);
      });
      const ended = Promise.allSettled([ownEnded, ...this.endings]).then(() => undefined);
      await Promise.race([ended, cutOff]).finally(() => clearTimeout(timer));
      await disposing;
    })();
    return this.disposing;
  }
  /** The driver's pool, as the wrapped adapter exposes it (mariadb: `underlyingDriver()`). */
  underlyingDriver(): unknown {
    return (this.current as any).underlyingDriver?.();
  }
}

const creating = new WeakMap<object, { pending: number; settled: Array<() => void> }>();

/**
 * mariadb's pool.end() does not wait for a connection it is still making: that one is closed only
 * once it is made (up to connectTimeout later). Counts the connects in flight (each call of
 * _createPoolConnection makes one, settled in _prepareNewConnection or
 * _handleConnectionCreationError; a retry the ended pool no longer runs is none), so that ending a
 * pool can wait for them (see creationsSettled).
 */
function trackCreations(pool: any) {
  try {
    countCreations(pool);
  } catch {
    // not mariadb 3.4's Pool as expected: ending it does not wait for connects in flight
  }
}

function countCreations(pool: any) {
  const create = pool?._createPoolConnection;
  const made = pool?._prepareNewConnection;
  const failed = pool?._handleConnectionCreationError;
  if (typeof create !== "function" || typeof made !== "function" || typeof failed !== "function" || creating.has(pool)) return;
  const state = { pending: 0, settled: [] as Array<() => void> };
  creating.set(pool, state);
  const settle = () => {
    if (state.pending > 0 && --state.pending === 0) for (const wake of state.settled.splice(0)) wake();
  };
  pool._createPoolConnection = function (...args: unknown[]) {
    state.pending++;
    try {
      return create.apply(this, args);
    } catch (e) {
      settle();
      throw e;
    }
  };
  for (const [name, original] of [["_prepareNewConnection", made], ["_handleConnectionCreationError", failed]] as const) {
    pool[name] = function (...args: unknown[]) {
      try {
        return original.apply(this, args);
      } finally {
        settle();
      }
    };
  }
}

/** Resolves once the pool is making no connection any more (bounded by the driver's connectTimeout). */
function creationsSettled(pool: any): Promise<void> | undefined {
  const state = creating.get(pool);
  if (!state || state.pending === 0) return;
  return new Promise((resolve) => state.settled.push(resolve));
}

// Pool errors that mean "no connection could be made": their cause says why.
const POOL_CONNECT_ERRORS = new Set([45028, 45060, 45061]);

/**
 * A refusal behind a call's error: only where the error is about making a connection (a pool
 * timeout, the pool failing to connect, or the driver adapter's AuthenticationFailed). A statement's
 * own "access denied" (1044, 1227 …) or "unknown database" (`USE x`) is the statement's error, not
 * a refusal of the app's connections.
 */
function connectRefusal(error: unknown) {
  const f = errorFacts(error);
  if (f.kind === "AuthenticationFailed" || (f.errno !== undefined && POOL_CONNECT_ERRORS.has(f.errno))) return refusalOf(error);
  return undefined;
}

function backoff(checks: number): number {
  return Math.min(1000 * 2 ** checks, 10_000);
}

/**
 * Ends a driver connection as if its socket had closed: every call waiting on it fails with the
 * driver's "socket has unexpectedly been closed" (45009, a lost connection), which the safety rule
 * handles, and the pool drops it.
 */
function destroyConnection(conn: any) {
  try {
    if (typeof conn.socketErrorHandler === "function") conn.socketErrorHandler();
    else conn.destroy?.();
  } catch {
    conn.destroy?.();
  }
}

class ResilientAdapterFactory implements AdapterFactoryLike {
  readonly [WRAPPED] = true;
  /** Adapters connected and not yet disposed (Prisma makes a new one after $disconnect(); clients may share a factory). */
  private readonly live = new Set<ResilientAdapter>();

  constructor(
    private readonly inner: AdapterFactoryLike,
    private readonly options: ResolvedAdapterOptions,
  ) {}

  get provider() {
    return this.inner.provider;
  }
  get adapterName() {
    return this.inner.adapterName;
  }
  async connect() {
    const adapter = new ResilientAdapter(this.inner, this.options, () => this.live.delete(adapter));
    this.live.add(adapter);
    try {
      return await adapter.start();
    } catch (error) {
      this.live.delete(adapter);
      await adapter.dispose().catch(() => undefined);
      throw error;
    }
  }
  [RECENT_FAULT](): boolean {
    for (const adapter of this.live) if (adapter.recentFault()) return true;
    return false;
  }
  [OUTAGE_AFTER](lostAt: number): boolean {
    for (const adapter of this.live) if (adapter.outageAfter(lostAt)) return true;
    return false;
  }
  [DB_SYSTEM](): Flavor | undefined {
    for (const adapter of this.live) if (adapter.flavor) return adapter.flavor;
    return undefined;
  }
}

/**
 * Wraps a driver adapter factory so that each failure records what had reached the server:
 * nothing, a statement of an open transaction, the COMMIT, or an autocommit statement. The
 * `resilience()` extension reads that record to re-run only what cannot have committed. It also
 * makes a rollback on a connection that is already dead resolve instead of throwing.
 *
 * ```ts
 * const adapter = withResilience(new PrismaMariaDb(process.env.DATABASE_URL!));
 * const prisma = new PrismaClient({ adapter }).$extends(resilience());
 * ```
 */
export function withResilience<F extends AdapterFactoryLike>(factory: F, options?: ResilientAdapterOptions): F {
  if (typeof factory !== "object" || factory === null || typeof (factory as any).connect !== "function") {
    throw new TypeError(
      "withResilience() expects a Prisma driver adapter factory, e.g. withResilience(new PrismaMariaDb(url))",
    );
  }
  const resolved = resolveAdapterOptions(options);
  if (isResilientAdapter(factory)) return factory;
  return new ResilientAdapterFactory(factory, resolved) as unknown as F;
}
