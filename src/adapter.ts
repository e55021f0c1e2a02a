// withResilience(): wraps a Prisma driver adapter factory (e.g. `new PrismaMariaDb(url)`) so that
// every failed call says what had reached the server (see flight.ts). It delegates everything and
// adds no work to a call that succeeds: one `.catch` per call, nothing else.
import { classify } from "./classify.ts";
import { makeRecord, tag, type FlightPhase } from "./flight.ts";
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

function fail(phase: FlightPhase, error: unknown, sql: string, threadId?: number): never {
  const keyword = firstKeyword(sql);
  tag(error, makeRecord(phase, error, keyword, isReadOnlySql(sql), threadId));
  throw error;
}

class ResilientTransaction implements TransactionLike {
  /** The connection died under this transaction: the server has rolled it back. */
  private lost = false;
  readonly createSavepoint?: (name: string) => Promise<void>;
  readonly rollbackToSavepoint?: (name: string) => Promise<void>;
  readonly releaseSavepoint?: (name: string) => Promise<void>;

  constructor(private readonly inner: TransactionLike) {
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

  private onStatementError(error: unknown, sql: string): never {
    if (classify(error) === "connection-lost") this.lost = true;
    return fail("statement", error, sql, this.threadId);
  }

  queryRaw(params: SqlQueryLike) {
    return this.inner.queryRaw(params).catch((e) => this.onStatementError(e, params.sql));
  }
  executeRaw(params: SqlQueryLike) {
    return this.inner.executeRaw(params).catch((e) => this.onStatementError(e, params.sql));
  }
  commit() {
    return this.inner.commit().catch((e) => fail("commit", e, "COMMIT", this.threadId));
  }
  rollback() {
    return this.inner.rollback().catch((e) => {
      // The server rolls back an open transaction when its connection dies, so a rollback that
      // cannot reach it has nothing left to do: it is not a new failure.
      if (this.lost || classify(e) === "connection-lost") return;
      fail("rollback", e, "ROLLBACK", this.threadId);
    });
  }
}

class ResilientAdapter implements AdapterLike {
  readonly [WRAPPED] = true;
  readonly getConnectionInfo?: () => unknown;

  constructor(private readonly inner: AdapterLike) {
    if (inner.getConnectionInfo) this.getConnectionInfo = () => inner.getConnectionInfo!();
  }

  get provider() {
    return this.inner.provider;
  }
  get adapterName() {
    return this.inner.adapterName;
  }

  queryRaw(params: SqlQueryLike) {
    return this.inner.queryRaw(params).catch((e) => fail("autocommit", e, params.sql));
  }
  executeRaw(params: SqlQueryLike) {
    return this.inner.executeRaw(params).catch((e) => fail("autocommit", e, params.sql));
  }
  executeScript(script: string) {
    return this.inner.executeScript(script).catch((e) => fail("autocommit", e, script));
  }
  startTransaction(isolationLevel?: string) {
    return this.inner.startTransaction(isolationLevel).then(
      (tx) => new ResilientTransaction(tx),
      (e) => fail("begin", e, "BEGIN"),
    );
  }
  dispose() {
    return this.inner.dispose();
  }
  /** The driver's pool, as the wrapped adapter exposes it (mariadb: `underlyingDriver()`). */
  underlyingDriver(): unknown {
    return (this.inner as any).underlyingDriver?.();
  }
}

class ResilientAdapterFactory implements AdapterFactoryLike {
  readonly [WRAPPED] = true;

  constructor(private readonly inner: AdapterFactoryLike) {}

  get provider() {
    return this.inner.provider;
  }
  get adapterName() {
    return this.inner.adapterName;
  }
  async connect() {
    return new ResilientAdapter(await this.inner.connect());
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
export function withResilience<F extends AdapterFactoryLike>(factory: F): F {
  if (typeof factory !== "object" || factory === null || typeof (factory as any).connect !== "function") {
    throw new TypeError(
      "withResilience() expects a Prisma driver adapter factory, e.g. withResilience(new PrismaMariaDb(url))",
    );
  }
  if (isResilientAdapter(factory)) return factory;
  return new ResilientAdapterFactory(factory) as unknown as F;
}
