// A flight record says what had reached the server when a driver adapter call failed. The adapter
// wrapper attaches it to the error it rethrows; the extension reads it back to decide whether a
// re-run is safe. It rides on the error itself (never on shared state), so concurrent operations
// cannot see each other's records, and it costs nothing until something fails.

/**
 * Where the failure happened:
 * - `begin`: opening a transaction (getting a connection, SET TRANSACTION, BEGIN): nothing ran.
 * - `statement`: a statement inside an open transaction: the server rolls it all back.
 * - `rollback`: a rollback: nothing commits.
 * - `commit`: the COMMIT itself.
 * - `autocommit`: a statement outside any transaction, which commits on its own.
 */
export type FlightPhase = "begin" | "statement" | "rollback" | "commit" | "autocommit";

export interface FlightRecord {
  readonly phase: FlightPhase;
  /** First keyword of the statement in flight (never its text or values: they may hold secrets). */
  readonly statement: string;
  /** The statement cannot change data (SELECT, SHOW ...). */
  readonly readOnly: boolean;
  /** The error proves the statement never reached the server. */
  readonly notSent: boolean;
  /** Server thread id of the connection, when the driver exposes it. */
  readonly threadId?: number;
  /** Held back while the server was down: nothing was sent, and the wait itself paced the caller. */
  readonly heldBack?: boolean;
  /**
   * The server answered the call with an error (deadlock, lock wait timeout, read-only …): it did
   * not take effect. Never set for multi-statement text, where an earlier statement may have.
   */
  readonly answered: boolean;
  /**
   * A statement of this transaction that may commit implicitly (TRUNCATE, DDL, LOCK TABLES, a raw
   * COMMIT …) had been sent before the failure: part of the transaction may already be committed,
   * so it is never re-run.
   */
  readonly committedEarlier: boolean;
  /**
   * For a COMMIT whose reply was lost, what commit verification found: `not-committed` (the old
   * session is gone and its mark is not there: safe to re-run) or `unknown` (it could not tell).
   */
  readonly verification?: "committed" | "not-committed" | "unknown";
  /** The connection was lost because the server went down (a probe right after found it so). */
  readonly duringOutage?: boolean;
  /** The server ended the transaction without an error (a Galera brute-force abort seen late). */
  readonly transactionEnded?: boolean;
}

// Symbol.for: two copies of this package in one app still read each other's records.
const FLIGHT = Symbol.for("prisma-extension-resilience.flight");

/**
 * True when the failed call may have committed a write: a COMMIT or an autocommit write that may
 * have reached the server. Everything else either never ran or was rolled back by the server when
 * the connection died.
 */
export function mayHaveCommitted(record: FlightRecord): boolean {
  if (record.committedEarlier) return true;
  if (record.notSent || record.answered || record.verification === "not-committed") return false;
  if (record.phase === "commit") return !record.readOnly;
  return record.phase === "autocommit" && !record.readOnly;
}

/**
 * Attaches the record to the error. Prisma keeps a DriverAdapterError as `meta.driverAdapterError`;
 * a raw socket error (EPIPE, ECONNRESET) is rebuilt into a PrismaClientKnownRequestError that keeps
 * only its `code`, `message` and `meta`, so the record also goes into `meta` (a symbol key: invisible
 * to JSON and to code that does not look for it).
 */
export function tag(error: unknown, record: FlightRecord): void {
  if (typeof error !== "object" || error === null) return;
  const e = error as Record<PropertyKey, any>;
  // The mariadb driver rejects every queued command with one error object: the record of a call
  // that may have committed wins over the others, otherwise the first (innermost) one stays.
  const existing: FlightRecord | undefined = e[FLIGHT];
  if (existing && (mayHaveCommitted(existing) || !mayHaveCommitted(record))) return;
  Object.defineProperty(e, FLIGHT, { value: record, enumerable: false, configurable: true });
  if (e.name === "DriverAdapterError") return;
  try {
    if (e.meta === undefined) e.meta = {};
    if (typeof e.meta === "object" && e.meta !== null) e.meta[FLIGHT] = record;
  } catch {
    // a frozen error: the record on the error itself is all we can do
  }
}

/** The flight record carried by an error or anything it wraps, if any. */
export function flightOf(error: unknown): FlightRecord | undefined {
  let e: any = error;
  for (let depth = 0; depth < 6 && typeof e === "object" && e !== null; depth++) {
    const found = e[FLIGHT] ?? e.meta?.[FLIGHT] ?? e.meta?.driverAdapterError?.[FLIGHT];
    if (found) return found;
    e = e.cause;
  }
  return undefined;
}
