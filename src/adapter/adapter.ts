// withResilience(): wraps a Prisma driver adapter factory (e.g. `new PrismaMariaDb(url)`) so that
// every failed call says what had reached the server (see flight.ts). It delegates everything and
// adds no work to a call that succeeds: one `.catch` per call, nothing else.
import { classify } from "../errors/classify.ts";
import type { FlightPhase } from "./flight.ts";
import { ServerHealth } from "./health.ts";
import { describeError, log } from "../log.ts";
import { resolveAdapterOptions, type ResilientAdapterOptions, type ResolvedAdapterOptions } from "./options.ts";
import { ResilientTransaction, tagged, type FailureHandler } from "./transaction.ts";
import type { AdapterLike, SqlQueryLike } from "./types.ts";

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
