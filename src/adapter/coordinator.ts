// The wrapped adapter: one per connect() of the factory. It coordinates its collaborators (pool
// watching: pool.ts, the silent-drop watchdog: watchdog.ts, sessions: sessions.ts, commit marks:
// marks.ts, side connections: side.ts, server health: src/core/health.ts) and owns the pool's
// lifecycle and the call path: one state check and one `.catch` per call.
import { describeError, log } from "../core/log.ts";
import type { FlightPhase } from "../core/flight.ts";
import { ServerHealth } from "../core/health.ts";
import { classify, isReadOnlyAnswer, isWsrepNotReady, isAccountConnectionLimit, provesNotSent, serverAnswered } from "../mysql/classify.ts";
import type { CommitVerdict } from "../mysql/marks.ts";
import { connectRefusal } from "../mysql/refusal.ts";
import { isAutocommitDml } from "../mysql/sql.ts";
import { redactedUrl } from "../mysql/url.ts";
import { capturePool } from "./capture.ts";
import { creationsSettled, trackCreations, type ConnOptions, type DriverConnection, type DriverPool, type WithDriver } from "./driver.ts";
import { CommitMarks } from "./marks.ts";
import { ClusterNodes } from "./nodes.ts";
import type { ResolvedAdapterOptions } from "./options.ts";
import { PoolWatch } from "./pool.ts";
import { Sessions } from "./sessions.ts";
import { flavorOf, SideConnections, type Flavor, type PooledLike, type ProbeTarget } from "./side.ts";
import { ResilientTransaction, tagged, type FailureHandler } from "./transaction.ts";
import { verifiedWrite } from "./verified-write.ts";
import type { AdapterFactoryLike, AdapterLike, SqlQueryLike } from "../core/driver-adapter.ts";
import { Watchdog } from "./watchdog.ts";

export { WRAPPED } from "../core/wrapped.ts";
import { WRAPPED } from "../core/wrapped.ts";
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
// dispose() waits this long at most for the pools to end (mariadb's pool.end() itself gives busy
// connections 10 s, then destroys them).
const POOL_END_MS = 11_000;

export class ResilientAdapter implements AdapterLike, FailureHandler {
  readonly [WRAPPED] = true;
  readonly health: ServerHealth<SideConnections>;
  /** The factory's adapter in use (a fresh one after a reconnect). */
  current!: AdapterLike;
  /** mariadb's Pool behind `current`, when the factory built it (then a fresh one can replace it). */
  private pool?: DriverPool;
  /** The factory builds its pool from settings (URL or config), so it can build a fresh one. */
  private ownsPool = false;
  private readonly retiredPools = new WeakSet<object>();
  /** Every pool the factory built for this adapter and not yet ended, whatever became of its connect(). */
  private readonly pools = new Set<DriverPool>();
  /** Pools being ended (retired, or by dispose()): dispose() awaits them. */
  private readonly endings = new Set<Promise<void>>();
  /** The pool each adapter the factory returned uses. */
  private readonly poolOf = new WeakMap<object, DriverPool>();
  private config?: ConnOptions;
  private target?: ProbeTarget;
  private disposing?: Promise<void>;
  private renewing?: Promise<void>;
  private lastRenewal = 0;
  private lastFaultAt = Number.NEGATIVE_INFINITY;
  /** Galera nodes' own addresses, for verifying a COMMIT lost with its node. */
  private readonly nodes: ClusterNodes;
  /** Who each connection is as the server sees it, and the one rule for ending a session. */
  private readonly sessions: Sessions;
  private readonly marks: CommitMarks;
  private readonly poolWatch: PoolWatch;
  private readonly watchdog: Watchdog;
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
      // The adapter's own (promise) pool: adapter-mariadb's `client`.
      // Only an idle one: a place in the pool's queue would go ahead of the app's callers.
      async () => {
        const pool = (this.current as { client?: { getConnection?: () => Promise<PooledLike>; idleConnections?: () => number } } | undefined)?.client;
        if (typeof pool?.getConnection !== "function" || typeof pool.idleConnections !== "function" || pool.idleConnections() < 1) return undefined;
        return await pool.getConnection();
      },
    );
    this.nodes = new ClusterNodes(side);
    this.health = new ServerHealth(options, side, {
      onDown: () => {
        this.poolWatch.destroyBusy();
        this.retirePool();
      },
      onRefused: () => this.retirePool(),
      reconnect: () => this.reconnect(),
      url: () => redactedUrl(this.config),
      system: () => this.flavor,
    });
    this.sessions = new Sessions(options, this.health, (id) => {
      if (this.marks.state !== "off") this.nodes.seen(id);
    });
    this.marks = new CommitMarks(options, this.health, this.sessions, this.nodes, () => this.config !== undefined, () => this.flavor);
    this.poolWatch = new PoolWatch(this.health, this.sessions, {
      inUse: (pool) => this.pool === pool || this.watchedExternal === pool,
      learn: (conn) => this.learn(conn),
      noteFault: () => this.noteFault(),
      forget: (conn) => this.watchdog.forget(conn),
    });
    this.watchdog = new Watchdog(options, this.health, this.sessions, this.poolWatch.conns, () => this.pool ?? this.watchedExternal);
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
    if (this.options.silentAfter > 0) this.watchdog.start();
    // Commit verification is ready before the first query (one side connection, a few statements).
    if (this.marks.state === "pending") await this.marks.prepare();
    return this;
  }

  /** Calls the factory, learning its pool and settings while it builds them. */
  private connectInner(): Promise<AdapterLike> {
    // Connects are counted from the pool's first one, which its constructor starts.
    const { result, pool } = capturePool(() => this.factory.connect(), trackCreations);
    if (pool) {
      this.ownsPool = true;
      this.pool = pool;
      this.pools.add(pool);
      this.config = pool.opts!.connOptions;
      this.poolWatch.watch(pool);
    }
    return Promise.resolve(result).then((adapter: AdapterLike) => {
      if (pool) this.poolOf.set(adapter, pool);
      if (!pool) {
        // A pool the app made itself: watched, never replaced (the adapter cannot build another).
        const driverPool = (adapter as WithDriver).underlyingDriver?.() as DriverPool | undefined;
        if (driverPool && driverPool !== this.watchedExternal) {
          this.watchedExternal = driverPool;
          this.poolWatch.watch(driverPool);
        }
      }
      return adapter;
    });
  }
  private watchedExternal?: DriverPool;

  /** A pooled connection adopted: the settings for side connections, the probe's address, the server's flavour. */
  private learn(conn: DriverConnection) {
    const o = conn.opts;
    if (o && !this.config) this.config = o;
    if (o && !this.target) this.target = { host: o.host, port: o.port, socketPath: o.socketPath };
    if (conn.info?.serverVersion) this.flavor = flavorOf(conn);
  }

  /** Ends a pool (the current one by default), once; dispose() awaits the ending. */
  private retirePool(pool: DriverPool | undefined = this.pool) {
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
    if (this.marks.state === "pending") void this.marks.prepare();
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

  get guardedMarks(): boolean {
    return this.marks.guarded;
  }
  get pipelining(): boolean {
    return this.config?.pipelining !== false;
  }
  galeraOf(connection: unknown): boolean | undefined {
    const identity = this.sessions.of(connection);
    return identity ? identity.cluster !== undefined : undefined;
  }
  get rollbackOnTimeout(): boolean | undefined {
    return this.marks.rollbackOnTimeout;
  }

  markKeyOf(connection: unknown): string | undefined {
    return this.marks.keyOf(connection);
  }

  /** Whether the pipelined BEGIN's fence works on this server (it was never refused as a statement the server cannot run). */
  fenceWorks = true;
  fenceFailed(error: unknown) {
    if (this.fenceWorks) log(`the pipelined BEGIN's fence was refused (${describeError(error)}): BEGIN is awaited from now on`);
    this.fenceWorks = false;
  }

  markFailed(error: unknown) {
    this.marks.off(`the commit mark failed: ${describeError(error)}`);
  }

  verifyCommit(connection: unknown, key: string, token: string, found?: { token?: string }): Promise<CommitVerdict> {
    return this.marks.verify(connection, key, token, found);
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

  killGhost(threadId: number, connection?: unknown): Promise<void> {
    return this.sessions.killGhost(threadId, connection);
  }

  async onError(phase: FlightPhase, error: unknown, sql: string): Promise<never> {
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
    if (this.marks.state === "on" && isAutocommitDml(params.sql)) return verifiedWrite(this, (tx) => tx.queryRaw(params));
    if (this.health.state === "up") return this.current.queryRaw(params).catch((e) => this.onError("autocommit", e, params.sql));
    return this.gated("autocommit", params.sql, () => this.current.queryRaw(params));
  }
  executeRaw(params: SqlQueryLike) {
    if (this.marks.state === "on" && isAutocommitDml(params.sql)) return verifiedWrite(this, (tx) => tx.executeRaw(params), params);
    if (this.health.state === "up") return this.current.executeRaw(params).catch((e) => this.onError("autocommit", e, params.sql));
    return this.gated("autocommit", params.sql, () => this.current.executeRaw(params));
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
      this.watchdog.stop();
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
    return (this.current as AdapterLike & WithDriver).underlyingDriver?.();
  }
}
