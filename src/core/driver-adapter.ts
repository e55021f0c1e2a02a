// Structural types: the subset of @prisma/driver-adapter-utils this package relies on, so it does
// not depend on that package's exact version. Both wrappers (src/adapter/, src/pg-adapter/) use them.
export interface SqlQueryLike {
  sql: string;
  args?: unknown[];
  argTypes?: unknown[];
}
export interface QueryableLike {
  readonly provider: string;
  readonly adapterName: string;
  queryRaw(params: SqlQueryLike): Promise<unknown>;
  executeRaw(params: SqlQueryLike): Promise<number>;
}
export interface TransactionLike extends QueryableLike {
  readonly options: unknown;
  commit(): Promise<void>;
  rollback(): Promise<void>;
  createSavepoint?(name: string): Promise<void>;
  rollbackToSavepoint?(name: string): Promise<void>;
  releaseSavepoint?(name: string): Promise<void>;
}
export interface AdapterLike extends QueryableLike {
  executeScript(script: string): Promise<void>;
  startTransaction(isolationLevel?: string): Promise<TransactionLike>;
  getConnectionInfo?(): unknown;
  dispose(): Promise<void>;
  /** The driver's pool (adapter-mariadb's and adapter-pg's `underlyingDriver()`). */
  underlyingDriver?(): unknown;
}

/** Any Prisma SQL driver adapter factory: `PrismaMariaDb`, `PrismaPg`, or one of your own. */
export interface AdapterFactoryLike {
  readonly provider: string;
  readonly adapterName: string;
  connect(): Promise<any>;
}
