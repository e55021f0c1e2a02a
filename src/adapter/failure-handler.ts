// What the wrapped transaction (transaction.ts) asks of its adapter (coordinator.ts) when a call
// fails or commits: one interface, so that the transaction knows no pool, probe or session table.
import type { CommitVerdict } from "../mysql/marks.ts";

/** What the wrapped adapter does about a failure before it is rethrown. */
export interface FailureHandler {
  /** After a lost connection or an unavailable server: is the server still there? */
  suspect(error: unknown): Promise<void>;
  /** The server was found down (a probe after a lost connection was refused or unanswered). */
  readonly serverDown?: boolean;
  /** After a silent drop inside a transaction: end the session the server still holds (`connection`: the driver connection it was on, to match its identity). */
  killGhost(threadId: number, connection?: unknown): Promise<void>;
  /** The server has `@@in_transaction` (MariaDB): marks are guarded by it. */
  readonly guardedMarks?: boolean;
  /** The driver pipelines commands (mariadb's `pipelining`, on unless the app turned it off). */
  readonly pipelining?: boolean;
  /** Whether this connection's server is a Galera node (undefined: not known, its identity not read). */
  galeraOf?(connection: unknown): boolean | undefined;
  /** `@@innodb_rollback_on_timeout`: whether a lock wait timeout (1205) rolls back the whole transaction (undefined: not known). */
  readonly rollbackOnTimeout?: boolean;
  /** Commit verification: the mark key of this driver connection, when verification is on and its identity is known. */
  markKeyOf?(connection: unknown): string | undefined;
  /** The mark was refused because of the table (missing, no right): verification goes off. */
  markFailed?(error: unknown): void;
  /** The pipelined BEGIN's fence was refused as a statement the server cannot run (FENCE_UNSUPPORTED): it does not work on this server (src/adapter/pipelined-begin.ts). */
  fenceFailed?(error: unknown): void;
  /** After a lost COMMIT reply: did it commit? (The old session is made sure to be gone first.) */
  verifyCommit?(connection: unknown, key: string, token: string, found?: { token?: string }): Promise<CommitVerdict>;
}
