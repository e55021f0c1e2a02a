// withResilience(): wraps a Prisma driver adapter factory (e.g. `new PrismaMariaDb(url)`) so that
// every failed call says what had reached the server (see flight.ts). It delegates everything and
// adds no work to a call that succeeds: one `.catch` per call, nothing else.
import { classify, errorFacts } from "./classify.ts";
import { makeRecord, tag, type FlightPhase } from "./flight.ts";
import { ServerHealth, type StateChange } from "./health.ts";
import { describeError, log } from "./log.ts";
import { firstKeyword, isReadOnlySql } from "./sql.ts";

// Structural types: the subset of @prisma/driver-adapter-utils this module relies on, so the
// package does not depend on that package's exact version.
interface SqlQueryLike {
  sql: string;
}
interface QueryableLike {
  readonly provider: string;
  readonly adapterName: string;
  queryRaw(params: SqlQueryLike): Promise<unknown>;
  executeRaw(params: SqlQueryLike): Promise<number>;
}
interface TransactionLike extends QueryableLike {
  readonly options: unknown;
  commit(): Promise<void>;
  rollback(): Promise<void>;
  createSavepoint?(name: string): Promise<void>;
  rollbackToSavepoint?(name: string): Promise<void>;
  releaseSavepoint?(name: string): Promise<void>;
}
interface AdapterLike extends QueryableLike {
  executeScript(script: string): Promise<void>;
  startTransaction(isolationLevel?: string): Promise<TransactionLike>;
  getConnectionInfo?(): unknown;
  dispose(): Promise<void>;
}
/** Any Prisma SQL driver adapter factory: `PrismaMariaDb`, or one of your own. */
export interface AdapterFactoryLike {
  readonly provider: string;
  readonly adapterName: string;
  connect(): Promise<any>;
}

const WRAPPED = Symbol.for("prisma-extension-resilience.wrapped");

/** True when the factory (or adapter) was made by withResilience(). */
export function isResilientAdapter(value: unknown): boolean {
  return typeof value === "object" && value !== null && (value as any)[WRAPPED] === true;
}

function tagged(phase: FlightPhase, error: unknown, sql: string, threadId?: number, heldBack?: boolean): unknown {
  tag(error, makeRecord(phase, error, firstKeyword(sql), isReadOnlySql(sql), threadId, heldBack));
  return error;
}

/** What the wrapped adapter does about a failure before it is rethrown. */
interface FailureHandler {
  /** After a lost connection or an unavailable server: is the server still there? */
  suspect(error: unknown): Promise<void>;
  /** After a silent drop inside a transaction: end the session the server still holds. */
  killGhost(threadId: number): Promise<void>;
}

const SOCKET_TIMEOUT = 45026;

class ResilientTransaction implements TransactionLike {
  /** The connection died under this transaction: the server has rolled it back. */
  private lost = false;
  readonly createSavepoint?: (name: string) => Promise<void>;
  readonly rollbackToSavepoint?: (name: string) => Promise<void>;
  readonly releaseSavepoint?: (name: string) => Promise<void>;

  constructor(
    private readonly inner: TransactionLike,
    private readonly handler: FailureHandler,
  ) {
    if (inner.createSavepoint) {
      this.createSavepoint = (name) => inner.createSavepoint!(name).catch((e) => this.onStatementError(e, "SAVEPOINT"));
    }
    if (inner.rollbackToSavepoint) {
      this.rollbackToSavepoint = (name) =>
        inner.rollbackToSavepoint!(name).catch((e) => this.onStatementError(e, "ROLLBACK TO"));
    }
    if (inner.releaseSavepoint) {
      this.releaseSavepoint = (name) =>
        inner.releaseSavepoint!(name).catch((e) => this.onStatementError(e, "RELEASE SAVEPOINT"));
    }
  }

  get provider() {
    return this.inner.provider;
  }
  get adapterName() {
    return this.inner.adapterName;
  }
  get options() {
    return this.inner.options;
  }
  /** Server thread id of the transaction's connection (mariadb driver), when it can be read. */
  get threadId(): number | undefined {
    const conn = (this.inner as any).conn ?? (this.inner as any).client;
    const id = conn?.threadId ?? conn?.info?.threadId;
    return typeof id === "number" ? id : undefined;
  }

  private async onStatementError(error: unknown, sql: string): Promise<never> {
    const threadId = this.threadId;
    const errorClass = classify(error);
    if (errorClass === "connection-lost") {
      this.lost = true;
      // A socket timeout is a silent drop: the server still holds this session, its open
      // transaction and its row locks. End it, so the re-run does not wait on its own ghost.
      if (threadId !== undefined && errorFacts(error).errno === SOCKET_TIMEOUT) await this.handler.killGhost(threadId);
      await this.handler.suspect(error);
    }
    throw tagged("statement", error, sql, threadId);
  }

  queryRaw(params: SqlQueryLike) {
    return this.inner.queryRaw(params).catch((e) => this.onStatementError(e, params.sql));
  }
  executeRaw(params: SqlQueryLike) {
    return this.inner.executeRaw(params).catch((e) => this.onStatementError(e, params.sql));
  }
  commit() {
    return this.inner.commit().catch(async (e) => {
      const threadId = this.threadId;
      if (classify(e) !== "fatal") await this.handler.suspect(e);
      throw tagged("commit", e, "COMMIT", threadId);
    });
  }
  rollback() {
    return this.inner.rollback().catch((e) => {
      // The server rolls back an open transaction when its connection dies, so a rollback that
      // cannot reach it has nothing left to do: it is not a new failure.
      if (this.lost || classify(e) === "connection-lost") return;
      throw tagged("rollback", e, "ROLLBACK", this.threadId);
    });
  }
}

export interface ResilientAdapterOptions {
  /**
   * Called when the server is found down (a probe after a lost connection is refused or
   * unanswered) and when it is back (a fresh pool is in use). Default none.
   */
  onStateChange?: (change: StateChange) => void;
  /**
   * ms a call waits for the server while it is down, before it fails unsent and the retry loop
   * decides again (it bounds how far past its deadline an operation can end). Default 200.
   */
  outageWait?: number;
  /** ms between probes while the server is down. Default 50. */
  probeInterval?: number;
  /** ms a probe waits for a TCP connection. Default 1000. */
  probeTimeout?: number;
  /** End the server-side session of a silently dropped transaction (KILL <thread id>). Default true. */
  killGhostSessions?: boolean;
}

interface ResolvedAdapterOptions extends Required<Omit<ResilientAdapterOptions, "onStateChange">> {
  onStateChange?: (change: StateChange) => void;
}

function resolveAdapterOptions(options: ResilientAdapterOptions | undefined): ResolvedAdapterOptions {
  if (options === undefined) options = {};
  if (typeof options !== "object" || options === null) throw new TypeError("withResilience(): options must be an object");
  const known = new Set(["onStateChange", "outageWait", "probeInterval", "probeTimeout", "killGhostSessions"]);
  for (const key of Object.keys(options)) if (!known.has(key)) throw new TypeError(`withResilience(): unknown option \`${key}\``);
  const ms = (name: keyof ResilientAdapterOptions, fallback: number, min: number) => {
    const v = options![name];
    if (v === undefined) return fallback;
    if (typeof v !== "number" || !Number.isFinite(v) || v < min) {
      throw new TypeError(`withResilience(): \`${name}\` must be a number of ms ≥ ${min}, got ${String(v)}`);
    }
    return v;
  };
  if (options.onStateChange !== undefined && typeof options.onStateChange !== "function") {
    throw new TypeError("withResilience(): `onStateChange` must be a function");
  }
  if (options.killGhostSessions !== undefined && typeof options.killGhostSessions !== "boolean") {
    throw new TypeError("withResilience(): `killGhostSessions` must be true or false");
  }
  return {
    onStateChange: options.onStateChange,
    outageWait: ms("outageWait", 200, 0),
    probeInterval: ms("probeInterval", 50, 1),
    probeTimeout: ms("probeTimeout", 1000, 1),
    killGhostSessions: options.killGhostSessions ?? true,
  };
}

class ResilientAdapter implements AdapterLike, FailureHandler {
  readonly [WRAPPED] = true;
  private readonly health: ServerHealth;

  constructor(
    private readonly factory: AdapterFactoryLike,
    private current: AdapterLike,
    private readonly options: ResolvedAdapterOptions,
  ) {
    this.health = new ServerHealth(
      options,
      async () => {
        this.current = await this.factory.connect();
        this.watch(this.current);
      },
      async () => {
        await this.current.dispose();
      },
    );
    this.watch(current);
  }

  /**
   * Learns where the server is from the pool's new connections (mariadb: `conn.opts`), and
   * notices a server that goes away while nobody is querying: a pooled connection's error, or the
   * pool failing to open one, makes it probe (a caller waiting in the pool would otherwise learn
   * only at acquireTimeout). The pool 'error' listener also keeps the driver from throwing an
   * unhandled 'error' event.
   */
  private watch(adapter: AdapterLike) {
    const pool = (adapter as any).underlyingDriver?.();
    if (typeof pool?.on !== "function") return;
    const suspect = () => {
      if (this.current === adapter) void this.health.suspect();
    };
    pool.on("connection", (conn: any) => {
      const o = conn?.opts;
      if (o) this.health.learnTarget({ host: o.host, port: o.port, socketPath: o.socketPath });
      if (typeof conn?.on === "function") conn.on("error", suspect);
    });
    pool.on("error", (e: unknown) => {
      log(`the pool could not open a connection (${describeError(e)})`);
      suspect();
    });
  }

  get provider() {
    return this.current.provider;
  }
  get adapterName() {
    return this.current.adapterName;
  }
  getConnectionInfo() {
    return this.current.getConnectionInfo?.();
  }

  async suspect(error: unknown): Promise<void> {
    const errorClass = classify(error);
    if (errorClass === "connection-lost" || errorClass === "unavailable") {
      log(`${errorClass} (${describeError(error)}): probing the server`);
      await this.health.suspect();
    }
  }

  async killGhost(threadId: number): Promise<void> {
    if (!this.options.killGhostSessions) return;
    // Only a session that is still there and idle ("Sleep": its client is gone) is ended, and only
    // through this user's own rights (a user may KILL its own threads).
    const id = Math.trunc(threadId);
    const kill = (async () => {
      const found: any = await this.current.queryRaw({
        sql: `SELECT ID FROM information_schema.PROCESSLIST WHERE ID = ${id} AND COMMAND = 'Sleep'`,
        args: [],
        argTypes: [],
      } as SqlQueryLike);
      if (!found?.rows?.length) return;
      await this.current.executeRaw({ sql: `KILL CONNECTION ${id}`, args: [], argTypes: [] } as SqlQueryLike);
      log(`killed ghost session ${id} left by a silently dropped connection`);
    })();
    const limit = new Promise<void>((resolve) => setTimeout(resolve, 2000).unref());
    await Promise.race([kill.catch((e) => log(`could not kill ghost session ${id}: ${describeError(e)}`)), limit]);
  }

  private async onError(phase: FlightPhase, error: unknown, sql: string): Promise<never> {
    await this.suspect(error);
    throw tagged(phase, error, sql);
  }

  /** Runs `call` now when the server is up; while it is down, once it is back (or fails unsent). */
  private gated<T>(phase: FlightPhase, sql: string, call: () => Promise<T>): Promise<T> {
    if (this.health.state === "up") return call().catch((e) => this.onError(phase, e, sql));
    return this.health.gate().then(
      () => this.gated(phase, sql, call),
      (e) => {
        throw tagged(phase, e, sql, undefined, true);
      },
    );
  }

  // The hot path is the first line of each method: one state check, the call, one `.catch`.
  queryRaw(params: SqlQueryLike) {
    if (this.health.state === "up") return this.current.queryRaw(params).catch((e) => this.onError("autocommit", e, params.sql));
    return this.gated("autocommit", params.sql, () => this.current.queryRaw(params));
  }
  executeRaw(params: SqlQueryLike) {
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
  dispose() {
    this.health.close();
    return this.current.dispose();
  }
  /** The driver's pool, as the wrapped adapter exposes it (mariadb: `underlyingDriver()`). */
  underlyingDriver(): unknown {
    return (this.current as any).underlyingDriver?.();
  }
}

class ResilientAdapterFactory implements AdapterFactoryLike {
  readonly [WRAPPED] = true;

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
    return new ResilientAdapter(this.inner, await this.inner.connect(), this.options);
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
