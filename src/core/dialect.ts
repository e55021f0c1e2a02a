// What the core asks of a database: its error rules and its SQL text rules. The core knows no SQL
// and no error number: the safety rule (safety.ts) and the retry loop (retry.ts) decide through a
// Dialect, and each database's folder provides one (src/mysql/dialect.ts).
import type { ErrorClass } from "./facts.ts";

export interface Dialect {
  /** The database family ("mysql" for MySQL and MariaDB). */
  readonly name: string;
  /** Sorts an error into the four classes (`flavor`: the server's, when the app named it). */
  classify(error: unknown, options?: { flavor?: string }): ErrorClass;
  /** The error proves the statement never reached the server. */
  provesNotSent(error: unknown): boolean;
  /** The server itself answered with an error: the statement (or COMMIT) did not take effect. */
  serverAnswered(error: unknown): boolean;
  /** No connection could be had in time to start a transaction (nothing sent). */
  isTransactionStartTimeout(error: unknown): boolean;
  /** Why the server is unavailable, in words a person reads. */
  unavailableReason(error: unknown): string;
  /** Re-running this SQL text provably cannot change data. */
  isReadOnlySql(sql: string): boolean;
  /** Several statements in one text, or a text that cannot be read with certainty. */
  isMultiStatement(sql: string): boolean;
  /** The statement may end the open transaction, committing what it had done. */
  mayCommitImplicitly(sql: string): boolean;
}
