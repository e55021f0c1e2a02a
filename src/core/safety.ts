// The safety rule: a failed attempt runs again only when its failure proves that no write of it can
// have committed (README.md#the-safety-rule, docs/design.md). It knows nothing of budgets or waits:
// retry.ts asks it about each failure. What an error or a statement means comes from the database's
// Dialect (dialect.ts).
import type { Dialect } from "./dialect.ts";
import { ConnectFailedError, OutcomeUnknownError, type OutcomeUnknownDetails } from "./errors.ts";
import { errorFacts, type ErrorClass } from "./facts.ts";
import { flightOf, mayHaveCommitted, type FlightRecord } from "./flight.ts";
import type { RetryPolicy } from "./policy.ts";
import type { DbSystem } from "./telemetry.ts";

export interface Attempted {
  /** The database's rules (src/mysql/dialect.ts for MySQL and MariaDB). */
  dialect: Dialect;
  /** `create`, `$queryRaw`, `$transaction` ... */
  operation: string;
  model?: string;
  /** An operation outside transactions, or a whole `$transaction`. */
  scope: "operation" | "transaction";
  /** The work cannot change data (decided lazily: only failures ask). */
  readOnly: () => boolean;
  /** For an interactive transaction: the callback had returned, so the failure came at COMMIT. */
  committing?: () => boolean;
  /**
   * For an interactive transaction: the callback threw an error that did not come from the
   * database (a fetch, a Redis client, the app's own code): the transaction is not re-run for it.
   */
  foreign?: () => boolean;
  /** Without the adapter wrapper: a statement of this transaction may have committed implicitly. */
  committedEarlier?: () => boolean;
  /** A raw statement holding several statements: an error answer to one says nothing of the others. */
  multiStatement?: () => boolean;
  /**
   * With withResilience(): the adapter met a fault lately (a lost connection, an unavailable server,
   * a "not ready" or "read-only" answer in the last 15 s, or the server is down).
   */
  recentFault?: () => boolean;
  /**
   * With withResilience(): the server was found down just after a connection lost at `lostAt` (a
   * killed server's sockets close before its port does, so the probe at the moment of the loss can
   * still get in).
   */
  outageAfter?: (lostAt: number) => boolean;
  /**
   * For an interactive transaction: the callback had been entered. A lost connection before that
   * (getting the connection, BEGIN) ran nothing of the transaction.
   */
  entered?: () => boolean;
  /** The app called `$disconnect()` after this call started: it asked to stop, nothing is re-run. */
  stopped?: () => boolean;
  /** `performance.now()` when the first attempt started. */
  startedAt: number;
  /** With withResilience(): the server's flavour, from its handshake (for telemetry). */
  system?: () => DbSystem | undefined;
}

export type Verdict = { retry: true; errorClass: ErrorClass } | { retry: false; error: unknown };

/**
 * Decides whether a failed attempt may run again. The rule: only when the failure proves that no
 * write of it can have committed (README.md#the-safety-rule). An error the server answered (deadlock, lock
 * wait timeout, read-only …) proves it: nothing took effect. A COMMIT, or a write outside a
 * transaction, that may have reached the server and got no answer is reported as
 * OutcomeUnknownError, never re-run.
 */
export function judge(error: unknown, what: Attempted, options: Pick<RetryPolicy, "flavor">, attempts: number): Verdict {
  if (what.foreign?.()) return { retry: false, error };
  const { dialect } = what;
  const classified = dialect.classify(error, { flavor: options.flavor });
  const record = flightOf(error);
  // An error the classifier does not name (a TLS or protocol error) at a COMMIT, or at a write
  // outside a transaction, that no server sent and that does not prove it unsent: the write may
  // have committed, as after a lost connection, and its connection is as unusable.
  const unanswered = classified === "fatal" && record !== undefined && unansweredWrite(error, record, dialect);
  if (classified === "fatal" && !unanswered) return { retry: false, error: rebuildTyped(error) };
  const errorClass: ErrorClass = unanswered ? "connection-lost" : classified;
  const unknown = (inFlight: OutcomeUnknownDetails["inFlight"], statement?: string, threadId?: number, verificationIncomplete?: boolean) => ({
    retry: false as const,
    error: new OutcomeUnknownError(
      { inFlight, statement, operation: what.operation, model: what.model, attempts, threadId, verificationIncomplete },
      { cause: error },
    ),
  });

  if (what.committedEarlier?.() && !record?.committedEarlier) {
    return errorClass === "connection-lost" ? unknown("implicit-commit") : { retry: false, error };
  }
  if (record) {
    if (record.committedEarlier) {
      // Part of the transaction may be committed already (TRUNCATE, DDL …, or a write that ran on its
      // own after the server ended the transaction): a re-run would repeat it.
      if (record.transactionEnded) return unknown("transaction-ended", record.statement, record.threadId);
      return errorClass === "connection-lost" ? unknown("implicit-commit", record.statement, record.threadId) : { retry: false, error };
    }
    if (mayHaveCommitted(record)) {
      return unknown(record.phase === "commit" ? "commit" : "autocommit", record.statement, record.threadId, record.verification === "unknown" || undefined);
    }
    return { retry: true, errorClass };
  }

  // No record: the adapter is not wrapped with withResilience(), or the error did not come from it.
  // Re-run only what the error itself proves safe.
  if (dialect.provesNotSent(error)) return { retry: true, errorClass };
  if (dialect.serverAnswered(error) && !what.multiStatement?.()) return { retry: true, errorClass };
  if (what.committing) {
    // Interactive transaction: a failure inside the callback left nothing committed.
    return what.committing() ? unknown("commit", "COMMIT") : { retry: true, errorClass };
  }
  if (what.readOnly()) return { retry: true, errorClass };
  return unknown("unknown");
}

/** A COMMIT, or an autocommit write, that failed with no server answer and may have been sent. */
function unansweredWrite(error: unknown, record: FlightRecord, dialect: Dialect): boolean {
  if (record.phase !== "commit" && record.phase !== "autocommit") return false;
  if (record.readOnly || record.notSent || record.answered || dialect.serverAnswered(error)) return false;
  // This package's own typed errors are final.
  const e = error as any;
  return errorFacts(error).verdict === undefined && e?.name !== "ConnectFailedError" && e?.code !== "RESILIENCE_CONNECT_FAILED";
}

/**
 * The adapter wrapper's ConnectFailedError (a wrong password, no access, an unknown database) comes
 * back from Prisma as a PrismaClientKnownRequestError that keeps only its code, message and meta:
 * the caller gets the typed error again, with Prisma's as its cause.
 */
function rebuildTyped(error: unknown): unknown {
  const e = error as any;
  if (e?.name !== "ConnectFailedError" && e?.code === "RESILIENCE_CONNECT_FAILED" && typeof e.meta?.reason === "string") {
    return new ConnectFailedError(e.meta.reason, String(e.meta.url ?? "mysql://(unknown)"), { cause: error });
  }
  return error;
}
