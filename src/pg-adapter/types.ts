// The parts of @prisma/adapter-pg and pg this wrapper relies on, typed structurally (the driver
// adapter's own shapes are shared: src/core/driver-adapter.ts), and the options it is given.
import type { StateChange } from "../core/state.ts";

export type { SqlQueryLike } from "../core/driver-adapter.ts";
export type { QueryableLike as PgQueryableLike, TransactionLike as PgTransactionLike, AdapterLike as PgAdapterLike } from "../core/driver-adapter.ts";

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
  /** pg 8: no query is waiting for its ReadyForQuery; `_queryQueue`: queries not sent yet; `pipeline`: sent without waiting. */
  readyForQuery?: boolean;
  _queryQueue?: unknown[];
  pipeline?: boolean;
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
