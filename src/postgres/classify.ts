// Sorts any error thrown through Prisma 7 + @prisma/adapter-pg into four classes, by its shape,
// never with `instanceof`. Three shapes reach the caller (test/fixtures/pg-error-shapes.ts): a
// PrismaClientKnownRequestError with meta.driverAdapterError.cause, a bare DriverAdapterError (COMMIT
// errors skip Prisma's mapping), and node-postgres's plain Error (text only, or a SQLSTATE `code`).
import type { ErrorClass } from "../core/facts.ts";
import {
  CANNOT_CONNECT_NOW,
  CONFLICT_SQLSTATES,
  CONNECT_TIMEOUT,
  IDLE_END_SQLSTATES,
  LOST_SOCKET_CODES,
  LOST_SQLSTATES,
  NOT_QUERYABLE,
  POOL_ENDED,
  POOL_WAIT_TIMEOUT,
  QUERY_CANCELED,
  QUERY_READ_TIMEOUT,
  REFUSED_SQLSTATES,
  TERMINATED,
  TOO_MANY_CONNECTIONS,
  UNAVAILABLE_SOCKET_CODES,
  UNAVAILABLE_SQLSTATES,
} from "./codes.ts";
import { pgFacts, type PgFacts } from "./facts.ts";

export { pgFacts, type PgFacts } from "./facts.ts";

const START_TX_TIMEOUT = /unable to start a transaction/i;
const ROLE_LIMIT = /too many connections for role/i;
const has = (f: PgFacts, re: RegExp) => f.lines.some((l) => re.test(l));

/** Classifies an error thrown by Prisma, @prisma/adapter-pg, node-postgres or pg-pool. */
export function classify(error: unknown): ErrorClass {
  const f = pgFacts(error);
  if (f.verdict) return "fatal";
  const { state } = f;
  if (state !== undefined) {
    if (CONFLICT_SQLSTATES.has(state)) return "conflict";
    if (REFUSED_SQLSTATES.has(state) || state === QUERY_CANCELED) return "fatal";
    if (UNAVAILABLE_SQLSTATES.has(state)) return "unavailable";
    if (LOST_SQLSTATES.has(state)) return "connection-lost";
  }
  switch (f.kind) {
    case "TransactionWriteConflict":
      return "conflict";
    case "TooManyConnections":
    case "DatabaseNotReachable":
      return "unavailable";
    case "ConnectionClosed":
    case "SocketTimeout":
      return "connection-lost";
  }
  // Any other SQLSTATE is the server's answer about the statement (a constraint, a syntax error,
  // 57014 statement_timeout …): retrying repeats it.
  if (state !== undefined || f.kind !== undefined) return "fatal";
  switch (f.prismaCode) {
    case "P2034": // TransactionWriteConflict
      return "conflict";
    case "P1001": // can't reach database server
    case "P1002": // database server timed out
    case "P2024": // timed out fetching a connection from the pool
    case "P2037": // too many connections
      return "unavailable";
    case "P1017": // server has closed the connection
    case "P1008": // operations timed out (adapter-pg's SocketTimeout)
      return "connection-lost";
    case "P2028":
      return has(f, START_TX_TIMEOUT) ? "unavailable" : "fatal";
  }
  // node-postgres / pg-pool plain errors. The connect timeout first: its cause can read
  // "Connection terminated unexpectedly".
  if (has(f, CONNECT_TIMEOUT) || has(f, POOL_WAIT_TIMEOUT) || has(f, POOL_ENDED)) return "unavailable";
  if (has(f, QUERY_READ_TIMEOUT)) return "fatal";
  if (has(f, NOT_QUERYABLE) || has(f, TERMINATED)) return "connection-lost";
  if (f.socketCode) {
    if (LOST_SOCKET_CODES.has(f.socketCode)) return "connection-lost";
    if (UNAVAILABLE_SOCKET_CODES.has(f.socketCode)) return "unavailable";
  }
  return "fatal";
}

// Refused at connect, before any statement: the startup packet's answer.
const CONNECT_REFUSALS = new Set([...UNAVAILABLE_SQLSTATES, ...REFUSED_SQLSTATES]);
const CONNECT_SOCKET_CODES = new Set(["ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "ENETDOWN", "ETIMEDOUT", "ECONNRESET"]);
const LOOKUP_CODES = new Set(["EAI_AGAIN", "ENOTFOUND"]);

/**
 * True when the error proves that the statement never reached the server: no connection was had
 * (refused, unreachable, a connect or pool-wait timeout, a refusal at startup: 57P03, 53300, auth,
 * unknown database), or node-postgres refused to send it on a client it knew was broken ("… is not
 * queryable", lib/client.js, before writing a byte). False means "may have been sent".
 */
export function provesNotSent(error: unknown): boolean {
  const f = pgFacts(error);
  if (f.heldBack) return true;
  if (f.verdict) return false;
  switch (f.kind) {
    case "TooManyConnections":
    case "DatabaseNotReachable":
    case "AuthenticationFailed":
    case "DatabaseAccessDenied":
    case "DatabaseDoesNotExist":
      return true;
  }
  if (f.state !== undefined && CONNECT_REFUSALS.has(f.state)) return true;
  if (f.state !== undefined || f.kind !== undefined) return false;
  switch (f.prismaCode) {
    case "P1000": // authentication failed
    case "P1001":
    case "P1003": // database does not exist
    case "P2024":
    case "P2037":
      return true;
    case "P2028":
      return has(f, START_TX_TIMEOUT);
  }
  if (has(f, NOT_QUERYABLE) || has(f, CONNECT_TIMEOUT) || has(f, POOL_WAIT_TIMEOUT) || has(f, POOL_ENDED)) return true;
  if (f.socketCode && LOOKUP_CODES.has(f.socketCode)) return true;
  if (f.socketCode && CONNECT_SOCKET_CODES.has(f.socketCode) && f.socketSyscall === "connect") return true;
  return false;
}

/**
 * True when the server itself answered with an error, so the statement (or the COMMIT) did not take
 * effect. An ERROR-severity answer always is one: PostgreSQL aborts the statement and, at COMMIT,
 * the transaction (40001 at COMMIT, a deferred constraint). FATAL answers are session ends, and only
 * some are answers about the statement:
 * - 57P05 / 25P03 fire only while the session is idle (waiting for a command): what the client
 *   sent after that was never run, and an open transaction is rolled back. Answered.
 * - 57P03, 53300, 28P01, 28000, 3D000 refuse a new session at startup: nothing ran. Answered.
 * - 57P01 (pg_terminate_backend, a fast shutdown) is raised at an interrupt check, which
 *   PostgreSQL holds off while it commits (xact.c HOLD_INTERRUPTS / the commit critical section),
 *   so it usually means "rolled back". But a backend that LISTENs processes notifications after a
 *   commit and before its ReadyForQuery (PG 14+), and PG ≤ 13 signals NOTIFY listeners after a
 *   commit, each in a transaction of its own where the FATAL can then arrive: the COMMIT stood and
 *   the client sees 57P01. This rule cannot tell those sessions apart: NOT answered.
 * - 57P02 (another backend crashed) and PANIC: the commit record may be in the WAL that recovery
 *   replays. NOT answered. So is any other FATAL, and every client-side code (08xxx).
 */
export function serverAnswered(error: unknown): boolean {
  const f = pgFacts(error);
  if (f.verdict) return false;
  if (f.kind === "TransactionWriteConflict" || f.kind === "TooManyConnections" || f.kind === "AuthenticationFailed" || f.kind === "DatabaseAccessDenied" || f.kind === "DatabaseDoesNotExist") return true;
  const { state, severity } = f;
  if (state === undefined) return false;
  if (CONFLICT_SQLSTATES.has(state) || IDLE_END_SQLSTATES.has(state) || CONNECT_REFUSALS.has(state)) return true;
  if (LOST_SQLSTATES.has(state) || state.startsWith("08")) return false;
  if (severity === "FATAL" || severity === "PANIC") return false;
  return true;
}

/** Prisma's `maxWait` ran out before a transaction could start (P2028): usually the app's own pool is busy. */
export function isTransactionStartTimeout(error: unknown): boolean {
  const f = pgFacts(error);
  return f.prismaCode === "P2028" && has(f, START_TX_TIMEOUT);
}

/** The role's CONNECTION LIMIT (53300 "too many connections for role"): an answer about this account, not an outage. */
export function isAccountConnectionLimit(error: unknown): boolean {
  const f = pgFacts(error);
  return (f.state === TOO_MANY_CONNECTIONS || f.kind === "TooManyConnections") && (has(f, ROLE_LIMIT) || ROLE_LIMIT.test(f.reason ?? ""));
}

/** Why a server is unavailable, in words a person reads: "connection refused", "starting up" ... */
export function unavailableReason(error: unknown): string {
  const f = pgFacts(error);
  const text = [f.reason ?? "", ...f.lines].join("\n");
  if (isAccountConnectionLimit(error)) return "account connection limit";
  if (f.state === TOO_MANY_CONNECTIONS || f.kind === "TooManyConnections" || /too many (connections|clients)/i.test(text)) return "too many connections";
  if (f.state === CANNOT_CONNECT_NOW) {
    if (/starting up/i.test(text)) return "starting up";
    if (/shutting down/i.test(text)) return "shutting down";
    if (/recovery/i.test(text)) return "in recovery";
    return "not accepting connections";
  }
  if (f.socketCode === "ECONNREFUSED" || f.kind === "DatabaseNotReachable" || f.prismaCode === "P1001" || /ECONNREFUSED|connection refused|can't reach database server/i.test(text)) return "connection refused";
  if (has(f, CONNECT_TIMEOUT) || f.socketCode === "ETIMEDOUT" || /ETIMEDOUT/.test(text)) return "timed out";
  if (has(f, POOL_WAIT_TIMEOUT)) return "pool timeout";
  if (f.socketCode && /^E(HOST|NET)UNREACH$/.test(f.socketCode)) return "host unreachable";
  if (f.prismaCode === "P2028") return "no connection to start a transaction in time";
  if (has(f, POOL_ENDED)) return "pool ended";
  return "unavailable";
}
