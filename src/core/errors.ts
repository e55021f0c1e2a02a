// The package's own errors. Each has a stable `name` (match on it, not on `instanceof`, if your app
// may load two copies of this package) and keeps the original error as `cause`.
import type { FlightPhase } from "./flight.ts";

export interface OutcomeUnknownDetails {
  /**
   * What was in flight: `commit` (a COMMIT), `autocommit` (a write outside a transaction), or
   * `implicit-commit` (a statement of a transaction after one that commits implicitly, such as
   * TRUNCATE or DDL, had run: part of the transaction may be committed), or `transaction-ended`
   * (the server ended the transaction silently and a write then ran on its own).
   */
  inFlight: Extract<FlightPhase, "commit" | "autocommit"> | "implicit-commit" | "transaction-ended" | "unknown";
  /** First keyword of the statement in flight ("COMMIT", "UPDATE" ...), when known. */
  statement?: string;
  /** Prisma operation (`create`, `$executeRaw`, `$transaction` ...). */
  operation: string;
  model?: string;
  /** Attempts made, this one included. */
  attempts: number;
  /** Server thread id of the connection that was lost, when known. */
  threadId?: number;
  /** Commit verification ran and could not tell (the server, or the old session's server, was out of reach). */
  verificationIncomplete?: boolean;
}

/**
 * The connection was lost while a write may have been committing: the write may or may not have
 * been applied. It was NOT retried, because a retry could apply it twice. Check the data (or make
 * the write idempotent) before writing again.
 */
export class OutcomeUnknownError extends Error {
  override readonly name = "OutcomeUnknownError";
  readonly code = "RESILIENCE_OUTCOME_UNKNOWN";
  readonly inFlight: OutcomeUnknownDetails["inFlight"];
  readonly statement?: string;
  readonly operation: string;
  readonly model?: string;
  readonly attempts: number;
  readonly threadId?: number;
  readonly verificationIncomplete?: boolean;

  constructor(details: OutcomeUnknownDetails, options: { cause: unknown }) {
    const what = details.model ? `${details.model}.${details.operation}` : details.operation;
    const flight =
      details.inFlight === "commit"
        ? "while its COMMIT was in flight"
        : details.inFlight === "autocommit"
          ? `while its ${details.statement ?? "write"} statement was in flight (outside a transaction, so it commits on its own)`
          : details.inFlight === "implicit-commit"
            ? "after a statement that commits implicitly (TRUNCATE, DDL, LOCK TABLES, a raw COMMIT …) had run inside the transaction, so part of it may be committed"
            : "during a write, and what had reached the server is not known (use withResilience() on the adapter to know)";
    const verification = details.verificationIncomplete
      ? " Checking whether it committed did not tell (the server was out of reach, or its answer left it open)."
      : "";
    const message =
      details.inFlight === "transaction-ended"
        ? `${what}: the server ended the transaction without an error (a Galera brute-force abort); the statements before were rolled back, and its next ${details.statement ?? "write"} ran on its own and committed. It was not retried.`
        : `${what}: the connection was lost ${flight}. The write may or may not have been applied; it was not retried.${verification}`;
    super(message, { cause: options.cause });
    this.verificationIncomplete = details.verificationIncomplete;
    this.inFlight = details.inFlight;
    this.statement = details.statement;
    this.operation = details.operation;
    this.model = details.model;
    this.attempts = details.attempts;
    this.threadId = details.threadId;
  }
}

/** Returns true when the error is one of this package's typed errors with that name. */
export function isOutcomeUnknown(error: unknown): error is OutcomeUnknownError {
  return typeof error === "object" && error !== null && (error as any).name === "OutcomeUnknownError";
}

export type ConnectFailure = "auth" | "access" | "unknown-database" | "refused" | "timeout" | "unreachable" | "too-many-connections" | "other";


/** Could not connect to the server; `reason` names why (a wrong password is `auth`, not a timeout). */
export class ConnectFailedError extends Error {
  override readonly name = "ConnectFailedError";
  readonly code = "RESILIENCE_CONNECT_FAILED";
  /** `reason` and `url` again: Prisma keeps an adapter error's `code`, `message` and `meta` only. */
  readonly meta: { reason: ConnectFailure; url: string };
  constructor(
    readonly reason: ConnectFailure,
    /** The connection string with its password replaced by ****. */
    readonly url: string,
    options: { cause: unknown },
  ) {
    super(`cannot connect to ${url}: ${describeFailure(reason, options.cause)}`, { cause: options.cause });
    this.meta = { reason, url };
  }
}

function describeFailure(reason: ConnectFailure, cause: unknown): string {
  const detail = (cause as any)?.sqlMessage ?? (cause as any)?.message ?? String(cause);
  switch (reason) {
    case "auth":
      return `authentication failed (wrong user or password): ${detail}`;
    case "access":
      return `access denied: ${detail}`;
    case "unknown-database":
      return `unknown database: ${detail}`;
    case "refused":
      return "connection refused (is the server running, on this host and port?)";
    case "timeout":
      return "timed out (a firewall, a wrong host, or a server that does not answer)";
    case "unreachable":
      return `host unreachable: ${detail}`;
    case "too-many-connections":
      return "too many connections (the server's max_connections is reached)";
    default:
      return detail;
  }
}

export interface UnavailableDetails {
  /** "connection refused", "timed out", "too many connections", "pool timeout" ... */
  reason: string;
  operation: string;
  model?: string;
  attempts: number;
  /** ms from the first attempt to giving up. */
  waitedMs: number;
}

/**
 * The server stayed unavailable (refused, timed out, too many connections) for the whole deadline,
 * or the retries ran out while it was. Nothing of the operation was applied: every attempt failed
 * before anything reached the server, or inside a transaction the server rolled back.
 */
export class DatabaseUnavailableError extends Error {
  override readonly name = "DatabaseUnavailableError";
  readonly code = "RESILIENCE_UNAVAILABLE";
  readonly reason: string;
  readonly operation: string;
  readonly model?: string;
  readonly attempts: number;
  readonly waitedMs: number;

  constructor(details: UnavailableDetails, options: { cause: unknown }) {
    const what = details.model ? `${details.model}.${details.operation}` : details.operation;
    super(`${what}: database unavailable (${details.reason}); gave up after ${details.attempts} attempts in ${details.waitedMs} ms`, {
      cause: options.cause,
    });
    this.reason = details.reason;
    this.operation = details.operation;
    this.model = details.model;
    this.attempts = details.attempts;
    this.waitedMs = details.waitedMs;
  }
}
