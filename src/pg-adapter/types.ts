// The parts of @prisma/adapter-pg and pg this wrapper relies on, typed structurally (the MySQL
// wrapper's src/adapter/types.ts is the same idea), and the options it is given.
import type { StateChange } from "../core/state.ts";

export interface SqlQueryLike {
  sql: string;
  args?: unknown[];
  argTypes?: unknown[];
}
export interface PgQueryableLike {
  readonly provider: string;
  readonly adapterName: string;
  queryRaw(params: SqlQueryLike): Promise<unknown>;
  executeRaw(params: SqlQueryLike): Promise<number>;
}
export interface PgTransactionLike extends PgQueryableLike {
  readonly options: unknown;
  commit(): Promise<void>;
  rollback(): Promise<void>;
  createSavepoint?(name: string): Promise<void>;
  rollbackToSavepoint?(name: string): Promise<void>;
  releaseSavepoint?(name: string): Promise<void>;
}
export interface PgAdapterLike extends PgQueryableLike {
  executeScript(script: string): Promise<void>;
  startTransaction(isolationLevel?: string): Promise<PgTransactionLike>;
  getConnectionInfo?(): unknown;
  dispose(): Promise<void>;
  underlyingDriver?(): unknown;
}

/** `new PrismaPg(poolOrConfig)`: a pool the app made (`externalPool`), or settings (`config`). */
export interface PgFactoryLike {
  readonly provider: string;
  readonly adapterName: string;
  config?: Record<string, unknown>;
  externalPool?: unknown;
  connect(): Promise<any>;
}

/** A pg PoolClient / Client, as far as this wrapper uses it. */
export interface PgClientLike {
  query(config: unknown, values?: unknown, callback?: unknown): any;
  processID?: number | null;
  release?(err?: unknown): void;
  connection?: { stream?: { destroy(err?: Error): void } };
  _txStatus?: string | null;
  /** The status of the last ReadyForQuery: "I" idle, "T" in a transaction, "E" in a failed one (pg 8.12+). */
  getTransactionStatus?(): string | null;
}

/** What verifying one lost COMMIT reply found (src/adapter/options.ts' CommitVerification). */
export interface PgCommitVerification {
  readonly verdict: "committed" | "not-committed" | "unknown";
  readonly ms: number;
}

/** withResilience()'s options once validated (src/adapter/options.ts), the ones PostgreSQL uses. */
export interface PgResolvedOptions {
  outageWait: number;
  probeInterval: number;
  probeTimeout: number;
  silentAfter: number;
  killGhostSessions: boolean;
  verifyCommits: boolean;
  verifyTimeout: number;
  onStateChange?: (change: StateChange) => void;
  onCommitVerified?: (outcome: PgCommitVerification) => void;
}
