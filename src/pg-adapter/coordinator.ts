// The wrapped PostgreSQL adapter: one per connect() of the factory. It owns the pool's lifecycle
// (a fresh pool after an outage, when the factory built it), the server's health (src/core/health.ts
// with a pg prober: side.ts), and the call path: one state check and one `.catch` per call.
import { describeError, log } from "../core/log.ts";
import type { FlightPhase } from "../core/flight.ts";
import { ServerHealth } from "../core/health.ts";
import { recordVerification } from "../core/telemetry.ts";
import { WRAPPED } from "../core/wrapped.ts";
import { classify, provesNotSent, serverAnswered } from "../postgres/classify.ts";
import { isAutocommitDml } from "../postgres/sql.ts";
import { redactedPgUrl } from "./config.ts";
import { guardHandOver } from "./pool-guard.ts";
import { tagged } from "./record.ts";
import { connectRefusal } from "./refusal.ts";
import { PgSide } from "./side.ts";
import { PgResilientTransaction, type PgTxHandler } from "./transaction.ts";
import type { PgAdapterLike, PgFactoryLike, PgResolvedOptions, PgTransactionLike, SqlQueryLike } from "./types.ts";
import { backendState, verifyXact, type PgCommitVerdict, type XactIdentity } from "./verify.ts";
import { PgWatchdog } from "./watchdog.ts";

// A loss followed this closely by an outage was the outage's (src/adapter/coordinator.ts: OUTAGE_AFTER_LOSS_MS).
const OUTAGE_AFTER_LOSS_MS = 1500;
const RECENT_FAULT_MS = 15_000;

export class PgResilientAdapter implements PgAdapterLike, PgTxHandler {
  readonly [WRAPPED] = true;
  readonly health: ServerHealth<PgSide>;
  /** Silent drops: one interval for all of this adapter's calls (watchdog.ts). */
  readonly watchdog: PgWatchdog;
  private current!: PgAdapterLike;
  private readonly config?: Record<string, unknown>;
  private lastFaultAt = Number.NEGATIVE_INFINITY;
  private readonly endings = new Set<Promise<void>>();
  /** adapter-pg's dispose() ends its pool and throws when called twice: each is ended once. */
  private readonly ended = new WeakMap<PgAdapterLike, Promise<void>>();

  constructor(
    private readonly factory: PgFactoryLike,
    private readonly options: PgResolvedOptions,
    config: Record<string, unknown> | undefined,
    private readonly onDisposed?: () => void,
  ) {
    this.config = config;
    const side = new PgSide(() => this.config ?? this.appPoolConfig());
    this.health = new ServerHealth(options, side, {
      onDown: () => this.retire(),
      onRefused: () => this.retire(),
      reconnect: () => this.reconnect(),
      url: () => redactedPgUrl(this.config ?? this.appPoolConfig()),
      system: () => "postgresql",
    });
    const self = this;
    this.watchdog = new PgWatchdog({
      health: this.health,
      silentAfter: options.silentAfter,
      probeTimeout: options.probeTimeout,
      killGhostSessions: options.killGhostSessions,
      pool: () => self.current?.underlyingDriver?.() as { _clients?: [] } | undefined,
    });
  }

  /** An app-made pg.Pool: its options, for side connections (never changed). */
  private appPoolConfig(): Record<string, unknown> | undefined {
    const pool = (this.current as any)?.underlyingDriver?.();
    return pool?.options;
  }

  /** adapter-pg's adapter, its pool's hand-over guarded (pool-guard.ts). */
  private async connectFactory(): Promise<PgAdapterLike> {
    const adapter = await this.factory.connect();
    guardHandOver(adapter.underlyingDriver?.());
    return adapter;
  }

  async start(): Promise<this> {
    this.current = await this.connectFactory();
    this.watchdog.start();
    return this;
  }

  get provider() {
    return this.current?.provider ?? this.factory.provider;
  }
  get adapterName() {
    return this.current?.adapterName ?? this.factory.adapterName;
  }
  getConnectionInfo() {
    return this.current.getConnectionInfo?.();
  }
  underlyingDriver() {
    return this.current.underlyingDriver?.();
  }

  // ---- server health ----------------------------------------------------------------------------

  private get ownsPool(): boolean {
    return this.config !== undefined;
  }
  /** The old pool ends (its clients in use end when released); a fresh one is built on the way back. */
  private retire() {
    if (!this.ownsPool) return;
    const old = this.current;
    const ending = Promise.resolve()
      .then(() => this.end(old))
      .catch((e: unknown) => log(`retiring the old pool failed (${describeError(e)})`))
      .finally(() => this.endings.delete(ending));
    this.endings.add(ending);
  }
  private async reconnect(): Promise<void> {
    if (!this.ownsPool) return;
    if (this.health.isClosed) throw new Error("closed");
    const next: PgAdapterLike = await this.connectFactory();
    if (this.health.isClosed) {
      await this.end(next).catch(() => undefined);
      throw new Error("closed");
    }
    const old = this.current;
    this.current = next;
    // A pool retired by onDown is already ending; one replaced on a refusal's end is ended now.
    void this.end(old).catch(() => undefined);
  }

  private end(adapter: PgAdapterLike): Promise<void> {
    let ending = this.ended.get(adapter);
    if (!ending) {
      ending = Promise.resolve().then(() => adapter.dispose());
      this.ended.set(adapter, ending);
    }
    return ending;
  }

  get serverDown(): boolean {
    return this.health.state === "down";
  }
  get verifying(): boolean {
    return this.options.verifyCommits;
  }
  get silentAfter(): number {
    return this.options.silentAfter;
  }
  outageAfter(lostAt: number): boolean {
    const at = this.health.lastOutageAt;
    return at >= lostAt - 250 && at <= lostAt + OUTAGE_AFTER_LOSS_MS;
  }
  recentFault(): boolean {
    return this.health.state !== "up" || performance.now() - this.lastFaultAt < RECENT_FAULT_MS;
  }

  async suspect(error: unknown): Promise<void> {
    const errorClass = classify(error);
    if (errorClass === "connection-lost" || errorClass === "unavailable") {
      this.lastFaultAt = performance.now();
      log(`${errorClass} (${describeError(error)}): probing the server`);
      await this.health.suspect();
    }
  }

  async verifyCommit(who: XactIdentity): Promise<PgCommitVerdict> {
    const started = performance.now();
    const verdict = await verifyXact(this.health.side, who, started + this.options.verifyTimeout, this.options.killGhostSessions);
    const ms = Math.round(performance.now() - started);
    try {
      this.options.onCommitVerified?.(Object.freeze({ verdict, ms }));
    } catch {
      // an observer's failure is not the database's
    }
    recordVerification(verdict, ms, "postgresql");
    return verdict;
  }

  async backendState(who: XactIdentity): Promise<string | undefined | "unreachable"> {
    const { value, result } = await this.health.side.with(this.options.probeTimeout, (c) => backendState(c, who));
    return result.ok ? value : "unreachable";
  }

  // ---- the call path ----------------------------------------------------------------------------

  private async onError(phase: FlightPhase, error: unknown, sql: string, context: { notSent?: boolean } = {}): Promise<never> {
    const refusal = connectRefusal(error);
    if (refusal) {
      this.health.refuse(refusal.reason, refusal.cause);
      throw tagged(phase, this.health.refusal ?? error, sql, { heldBack: true });
    }
    if (this.health.refusal && classify(error) === "unavailable" && !serverAnswered(error) && provesNotSent(error)) throw tagged(phase, this.health.refusal, sql, { heldBack: true });
    await this.suspect(error);
    throw tagged(phase, error, sql, { ...context, duringOutage: this.serverDown });
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

  queryRaw(params: SqlQueryLike) {
    if (this.options.verifyCommits && isAutocommitDml(params.sql)) return this.inOwnTransaction(params, (tx) => tx.queryRaw(params));
    if (this.health.state === "up") return this.current.queryRaw(params).catch((e) => this.onError("autocommit", e, params.sql));
    return this.gated("autocommit", params.sql, () => this.current.queryRaw(params));
  }
  executeRaw(params: SqlQueryLike) {
    if (this.options.verifyCommits && isAutocommitDml(params.sql)) return this.inOwnTransaction(params, (tx) => tx.executeRaw(params));
    if (this.health.state === "up") return this.current.executeRaw(params).catch((e) => this.onError("autocommit", e, params.sql));
    return this.gated("autocommit", params.sql, () => this.current.executeRaw(params));
  }
  executeScript(script: string) {
    return this.gated("autocommit", script, () => this.current.executeScript(script));
  }

  startTransaction(isolationLevel?: string): Promise<PgTransactionLike> {
    return this.gated("begin", "BEGIN", () => this.current.startTransaction(isolationLevel)).then((inner) => new PgResilientTransaction(inner, this));
  }

  /**
   * A write outside a transaction, run inside one of the wrapper's own so that its outcome is known
   * even when the COMMIT's reply is lost: BEGIN, the statement and the id read in one round trip,
   * then COMMIT (2 round trips). The statement's failure is one inside a transaction (rolled back).
   */
  private async inOwnTransaction<T>(params: SqlQueryLike, run: (tx: PgResilientTransaction) => Promise<T>): Promise<T> {
    const { queryable, client } = await this.gated("begin", "BEGIN", () => this.ownClient());
    const tx = new PgResilientTransaction(queryable, this, { beginPending: true });
    let result: T;
    try {
      result = await run(tx);
    } catch (error) {
      if (!tx.isLost && (client as any)._queryable !== false) await tx.executeRaw({ sql: "ROLLBACK", args: [], argTypes: [] }).catch(() => undefined);
      await tx.rollback();
      client.release(tx.isLost ? (error as Error) : undefined);
      throw error;
    }
    try {
      await tx.executeRaw({ sql: "COMMIT", args: [], argTypes: [] });
    } catch (error) {
      await tx.rollback();
      client.release(error as Error);
      throw error;
    }
    await tx.commit();
    client.release(tx.isLost ? new Error("lost") : undefined);
    return result;
  }

  /** A pooled client, and adapter-pg's queryable bound to it (its conversions, its errors). */
  private async ownClient(): Promise<{ queryable: PgTransactionLike; client: { release(err?: Error): void } }> {
    const pool = this.current.underlyingDriver?.() as { connect(): Promise<any> } | undefined;
    if (!pool) throw new Error("the PostgreSQL adapter exposes no pool");
    let client: any;
    try {
      client = await pool.connect();
    } catch (error) {
      // adapter-pg's own mapping, as startTransaction would give it.
      (this.current as any).onError?.(error);
      throw error;
    }
    // Its socket's error while it is ours (the guard, pool-guard.ts, covers the hand-over before this).
    const onError = (e: unknown) => log(`the wrapper's own transaction lost its connection (${describeError(e)})`);
    client.on("error", onError);
    const release = client.release.bind(client);
    client.release = (err?: Error) => {
      client.removeListener("error", onError);
      client.release = release;
      release(err);
    };
    const queryable = Object.create(this.current, { client: { value: client, writable: true } });
    queryable.options = { usePhantomQuery: false };
    queryable.commit = async () => undefined;
    queryable.rollback = async () => undefined;
    return { queryable, client };
  }

  async dispose(): Promise<void> {
    this.watchdog.stop();
    this.health.close();
    try {
      if (this.current) await this.end(this.current);
    } finally {
      await Promise.allSettled([...this.endings]);
      this.onDisposed?.();
    }
  }
}

