// Sorts any error thrown through Prisma 7 + a MySQL/MariaDB driver adapter into four classes, by
// its shape (name, code, meta, cause), never with `instanceof`: an app may load two copies of
// @prisma/client, and the driver's own errors reach us raw. See docs/design.md for the measured shapes.
import { errorFacts, isObject, type ErrorClass, type ErrorFacts } from "../core/facts.ts";
import { NEVER_RETRY_CODES, REFUSED_CODES } from "./codes.ts";

export { errorFacts, type ErrorClass, type ErrorFacts } from "../core/facts.ts";

export interface ClassifyOptions {
  /**
   * The server's flavour when known. Error 4031 is MySQL 8.0.24+'s inactivity disconnect but means
   * something else on MariaDB; without a flavour, 4031 counts as a disconnect only when its message
   * says so.
   */
  flavor?: "mysql" | "mariadb";
}

// Server and client codes that mean the connection is gone (MySQL and MariaDB share them).
const LOST_SERVER_CODES = new Set([
  1053, // ER_SERVER_SHUTDOWN
  1152, // ER_ABORTING_CONNECTION
  1154, // ER_NET_READ_ERROR_FROM_PIPE
  1155, // ER_NET_FCNTL_ERROR
  1156, // ER_NET_PACKETS_OUT_OF_ORDER
  1157, // ER_NET_UNCOMPRESS_ERROR
  1158, // ER_NET_READ_ERROR
  1159, // ER_NET_READ_INTERRUPTED
  1160, // ER_NET_ERROR_ON_WRITE
  1161, // ER_NET_WRITE_INTERRUPTED
  1927, // ER_CONNECTION_KILLED
  2006, // CR_SERVER_GONE_ERROR "MySQL server has gone away"
  2013, // CR_SERVER_LOST "Lost connection to MySQL server during query"
  2055, // CR_SERVER_LOST_EXTENDED
]);

// mariadb (Node driver) codes.
const LOST_DRIVER_CODES = new Set([
  45001, // ER_CONNECTION_ALREADY_CLOSED
  45009, // ER_SOCKET_UNEXPECTED_CLOSE "socket has unexpectedly been closed"
  45013, // ER_CMD_CONNECTION_CLOSED "Cannot execute new commands: connection closed"
  45019, // ER_SOCKET
  45026, // ER_SOCKET_TIMEOUT
  45042, // ER_PING_TIMEOUT
]);

const UNAVAILABLE_CODES = new Set([
  1040, // ER_CON_COUNT_ERROR "Too many connections"
  1203, // ER_TOO_MANY_USER_CONNECTIONS
  // (1226 ER_USER_LIMIT_REACHED too, for MAX_USER_CONNECTIONS only: see USER_LIMIT)
  2002, // CR_CONNECTION_ERROR
  2003, // CR_CONN_HOST_ERROR "Can't connect to MySQL server"
  45012, // ER_CONNECTION_TIMEOUT (driver: the socket could not be opened in connectTimeout)
  45027, // ER_POOL_ALREADY_CLOSED: pool ended under us ($disconnect); a fresh one is built
  45035, // ER_ADD_CONNECTION_CLOSED_POOL
  45037, // ER_CLOSING_POOL
]);

// The server rolled the statement (1205) or the whole transaction back: nothing of it applied, so
// it can always run again. Galera answers a certification failure with 1213, also on COMMIT.
const CONFLICT_CODES = new Set([
  1213, // ER_LOCK_DEADLOCK (and Galera's "wsrep aborted transaction")
  1205, // ER_LOCK_WAIT_TIMEOUT
  1020, // ER_CHECKREAD: MariaDB snapshot isolation write conflict, transaction rolled back
]);

// Answers of a server that cannot take the statement right now, but another (or this one later)
// can: a Galera node outside the Primary component, a primary demoted to read-only by a failover.
const WSREP_NOT_READY = 1047; // ER_UNKNOWN_COM_ERROR, which Galera reuses: "WSREP has not yet prepared node…"
const READ_ONLY_CODES = new Set([
  1792, // ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION
  1836, // ER_READ_ONLY_MODE (MySQL)
]);
const OPTION_PREVENTS = 1290; // ER_OPTION_PREVENTS_STATEMENT: read-only only when its message says so
const READ_ONLY_MESSAGE = /read[-_ ]only/i;
const WSREP_MESSAGE = /wsrep/i;
const ERROR_DURING_COMMIT = 1180; // ER_ERROR_DURING_COMMIT: on Galera, "not connected to Primary Component"
const NOT_PRIMARY_MESSAGE = /primary component/i;

// An account's connection limit (CREATE USER … WITH MAX_USER_CONNECTIONS): 1226 also answers an
// hourly quota (max_questions, max_updates, max_connections_per_hour) that waiting does not cure.
const USER_LIMIT = 1226; // ER_USER_LIMIT_REACHED
const USER_CONNECTIONS_MESSAGE = /max_user_connections/i;

const LOST_SOCKET_CODES = new Set(["ECONNRESET", "EPIPE", "ETIMEDOUT", "ECONNABORTED", "ENOTCONN", "EHOSTDOWN", "ERR_SOCKET_CLOSED", "ERR_STREAM_DESTROYED"]);
const UNAVAILABLE_SOCKET_CODES = new Set(["ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "ENETDOWN", "EAI_AGAIN"]);

const PACKET_TOO_LARGE = 1153; // ER_NET_PACKET_TOO_LARGE
const POOL_TIMEOUT = 45028; // ER_GET_CONNECTION_TIMEOUT: reason only in the message of its cause
const INACTIVITY_DISCONNECT = 4031; // MySQL 8.0.24+ only
const INACTIVITY_MESSAGE = /disconnected by the server because of inactivity/i;
const NETWORK_MESSAGE = /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|socket|connection timeout|connect timeout|too many connections/i;
// No numbers: a number in the driver's text can be a thread id ("(conn:1045, no: 45009, …)").
const ACCESS_MESSAGE = /access denied|unknown database/i;
const START_TX_TIMEOUT = /unable to start a transaction/i;

/**
 * The error number and SQLSTATE of a driver message kept only as text (a pool timeout's cause): read
 * from the driver's header "(conn:<thread id>, no: <errno>, SQLState: <state>)" only, never from
 * any other number in it (conn: is a thread id, and thread ids pass every error number).
 */
export function headerOf(text: string): { errno?: number; sqlState?: string } {
  const errno = /\bno: (\d+)\b/.exec(text);
  const state = /\bSQLState: ([0-9A-Z]{5})\b/.exec(text);
  return { errno: errno ? Number(errno[1]) : undefined, sqlState: state?.[1] };
}

// A pool timeout is retryable only when the pool's last connection attempt failed for a network
// reason or a connection limit; a wrong password or a pool exhausted by the app's own load is not
// cured by retrying.
function poolTimeoutClass(f: ErrorFacts): ErrorClass {
  const reason = f.reason ?? "";
  const { errno, sqlState } = headerOf(reason);
  if ((errno !== undefined && (REFUSED_CODES.has(errno) || NEVER_RETRY_CODES.has(errno))) || sqlState === "28000" || ACCESS_MESSAGE.test(reason)) return "fatal";
  if (errno === USER_LIMIT) return USER_CONNECTIONS_MESSAGE.test(reason) ? "unavailable" : "fatal";
  if (errno !== undefined && UNAVAILABLE_CODES.has(errno)) return "unavailable";
  return NETWORK_MESSAGE.test(reason) ? "unavailable" : "fatal";
}

/**
 * The server refused a connection because this account has all the connections it may have (1226
 * for MAX_USER_CONNECTIONS, 1203 for max_user_connections), also as a pool timeout's cause: an
 * answer from a running server about the app's own connections, so neither a fault nor an outage.
 * Callers wait for one of the app's pooled connections.
 */
export function isAccountConnectionLimit(error: unknown): boolean {
  const f = errorFacts(error);
  // The pool's own errors (a timeout, "fails to create connection") carry the reason as their cause.
  const wrapper = f.errno !== undefined && POOL_CONNECT_ERRORS.has(f.errno);
  const errno = !wrapper ? f.errno : f.errnos.find((n) => !POOL_CONNECT_ERRORS.has(n)) ?? headerOf(f.reason ?? "").errno;
  if (errno === USER_LIMIT) return USER_CONNECTIONS_MESSAGE.test([f.reason ?? "", ...f.messages].join("\n"));
  return errno === 1203;
}
const POOL_CONNECT_ERRORS = new Set([POOL_TIMEOUT, 45060, 45061]); // ER_POOL_NOT_INITIALIZED, ER_POOL_NO_CONNECTION

/** Classifies an error thrown by Prisma, the driver adapter or the driver. */
export function classify(error: unknown, options: ClassifyOptions = {}): ErrorClass {
  const f = errorFacts(error);
  const { errno, kind } = f;
  if (f.verdict) return "fatal";

  switch (kind) {
    case "TransactionWriteConflict":
      return "conflict";
    case "TooManyConnections":
    case "DatabaseNotReachable":
      return "unavailable";
    case "ConnectionClosed":
    case "SocketTimeout":
      return "connection-lost";
    case "AuthenticationFailed":
    case "DatabaseAccessDenied":
    case "DatabaseDoesNotExist":
    case "TlsConnectionError":
      return "fatal";
  }

  if (errno !== undefined) {
    if (REFUSED_CODES.has(errno) || NEVER_RETRY_CODES.has(errno)) return "fatal";
    if (errno === POOL_TIMEOUT) return poolTimeoutClass(f);
    if (errno === USER_LIMIT) return f.messages.some((m) => USER_CONNECTIONS_MESSAGE.test(m)) ? "unavailable" : "fatal";
    if (CONFLICT_CODES.has(errno)) return "conflict";
    if (UNAVAILABLE_CODES.has(errno)) return "unavailable";
    if (refusesForNow(f)) return "unavailable";
    if (LOST_SERVER_CODES.has(errno) || LOST_DRIVER_CODES.has(errno)) return "connection-lost";
    if (errno === INACTIVITY_DISCONNECT) {
      if (options.flavor === "mysql") return "connection-lost";
      if (options.flavor === "mariadb") return "fatal";
      return f.messages.some((m) => INACTIVITY_MESSAGE.test(m)) ? "connection-lost" : "fatal";
    }
  }

  switch (f.prismaCode) {
    case "P2034":
      return "conflict";
    case "P2037": // too many connections
    case "P1001": // can't reach database server
    case "P1002": // database server timed out
    case "P2024": // timed out fetching a connection from the pool
      return "unavailable";
    case "P1017": // server has closed the connection
      return "connection-lost";
    case "P2028": // only "Unable to start a transaction in the given time" is about availability
      return f.messages.some((m) => START_TX_TIMEOUT.test(m)) ? "unavailable" : "fatal";
  }

  if (f.socketCode) {
    if (LOST_SOCKET_CODES.has(f.socketCode)) return "connection-lost";
    if (UNAVAILABLE_SOCKET_CODES.has(f.socketCode)) return "unavailable";
  }

  // SQLSTATE class 08: connection exception. 08004 is a refused connection (e.g. too many).
  if (f.sqlState?.startsWith("08") && errno !== undefined && !REFUSED_CODES.has(errno)) {
    return f.sqlState === "08004" ? "unavailable" : "connection-lost";
  }

  // A bare DriverAdapterError wrapping a socket failure carries only its message.
  if (kind === undefined && errno === undefined && isObject(error) && error.name === "DriverAdapterError") {
    if (/closed|reset|EPIPE|socket/i.test(f.messages.join("\n"))) return "connection-lost";
  }
  return "fatal";
}

/** A Galera node not ready (1047) or a read-only server (1290/1792/1836): nothing applied. */
function refusesForNow(f: ErrorFacts): boolean {
  const { errno } = f;
  if (errno === WSREP_NOT_READY) return f.messages.some((m) => WSREP_MESSAGE.test(m));
  if (errno === ERROR_DURING_COMMIT) return f.messages.some((m) => NOT_PRIMARY_MESSAGE.test(m));
  if (errno !== undefined && READ_ONLY_CODES.has(errno)) return true;
  if (errno === OPTION_PREVENTS) return f.messages.some((m) => READ_ONLY_MESSAGE.test(m));
  return false;
}

/** A Galera node that is not ready for the app (1047 WSREP): outside the Primary component, or still joining. */
export function isWsrepNotReady(error: unknown): boolean {
  const f = errorFacts(error);
  if (f.errno === ERROR_DURING_COMMIT) return f.messages.some((m) => NOT_PRIMARY_MESSAGE.test(m));
  return f.errno === WSREP_NOT_READY && f.messages.some((m) => WSREP_MESSAGE.test(m));
}

/** The server answered that it is read-only (a demoted primary, a replica): the write did not apply. */
export function isReadOnlyAnswer(error: unknown): boolean {
  const f = errorFacts(error);
  return f.errno !== undefined && (READ_ONLY_CODES.has(f.errno) || (f.errno === OPTION_PREVENTS && f.messages.some((m) => READ_ONLY_MESSAGE.test(m))));
}

/**
 * True when the server itself answered with an error (an ERR packet): the statement, or the COMMIT,
 * did not take effect. A lost connection (no answer) is not one, nor is a server's "I am going
 * away" (shutdown, killed connection), which can arrive while a COMMIT is under way.
 */
export function serverAnswered(error: unknown): boolean {
  const f = errorFacts(error);
  if (f.verdict) return false;
  if (f.kind === "TransactionWriteConflict" || refusesForNow(f)) return true;
  const errno = f.errno;
  // The server rejected an oversized packet (08S01, then it closes): nothing of it ran.
  if (errno === PACKET_TOO_LARGE) return true;
  // 4031 is MySQL's inactivity disconnect (no answer to anything), but on MariaDB another error.
  if (errno === INACTIVITY_DISCONNECT) return !f.messages.some((m) => INACTIVITY_MESSAGE.test(m));
  if (errno === undefined || LOST_SERVER_CODES.has(errno)) return false;
  if (f.sqlState?.startsWith("08")) return false;
  return (errno >= 1000 && errno < 2000) || (errno >= 3000 && errno < 5000);
}

/** Prisma's `maxWait` ran out before a transaction could start (P2028): usually the app's own pool is busy. */
export function isTransactionStartTimeout(error: unknown): boolean {
  const f = errorFacts(error);
  return f.prismaCode === "P2028" && f.messages.some((m) => START_TX_TIMEOUT.test(m));
}

// Codes that prove the failing statement never reached the server: the driver refused to send it on
// a connection it already knew was closed, the write itself failed (EPIPE: the kernel did not take
// the bytes; the driver sends the next command only after the reply to the last), or no connection
// was ever made.
// The driver's own refusals of a query or execute before it writes a byte (a missing or bad
// parameter, no SQL) count too. Not for batch(): one row's error there rejects a batch whose other
// rows ran, and its 45046 comes after packets already sent.
const NOT_SENT_CODES = new Set([45001, 45013, 45012, 45027, 45035, 45037, 1040, 1203, 1226, 2002, 2003, 45016, 45017, 45018, 45043, 45049, 45052]);
// EPIPE: the write failed. A name lookup (EAI_AGAIN) happens only before connecting.
const NOT_SENT_SOCKET_CODES = new Set(["EPIPE", "EAI_AGAIN"]);
// Refused or unreachable prove nothing sent only when connecting (the syscall is connect() or the
// name lookup): on a socket that already carried the COMMIT they can arrive after it reached the
// server (an ICMP unreachable or a reset read back as ECONNREFUSED).
const CONNECT_SOCKET_CODES = new Set(["ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "ENETDOWN", "ENOENT", "ETIMEDOUT", "ECONNRESET"]);
const CONNECT_SYSCALLS = new Set(["connect", "getaddrinfo"]);

/**
 * True when the error proves that the statement it failed on never reached the server, so a write
 * cannot have happened. False means "may have been sent", not "was sent".
 */
export function provesNotSent(error: unknown): boolean {
  const f = errorFacts(error);
  if (f.heldBack) return true;
  if (f.kind === "TooManyConnections" || f.kind === "DatabaseNotReachable") return true;
  if (f.errno !== undefined) {
    if (NOT_SENT_CODES.has(f.errno)) return true;
    if (f.errno === POOL_TIMEOUT) return true; // no connection was handed out
  }
  if (f.socketCode && NOT_SENT_SOCKET_CODES.has(f.socketCode)) return true;
  if (f.socketCode && CONNECT_SOCKET_CODES.has(f.socketCode) && f.socketSyscall !== undefined && CONNECT_SYSCALLS.has(f.socketSyscall)) return true;
  if (f.prismaCode === "P2028" && f.messages.some((m) => START_TX_TIMEOUT.test(m))) return true;
  if (f.prismaCode === "P2037" || f.prismaCode === "P1001" || f.prismaCode === "P2024") return true;
  return false;
}

/** Why a server is unavailable, in words a person reads: "connection refused", "timed out" ... */
export function unavailableReason(error: unknown): string {
  const f = errorFacts(error);
  const text = [f.reason ?? "", ...f.messages].join("\n");
  if (isAccountConnectionLimit(error)) return "account connection limit";
  if (f.kind === "TooManyConnections" || f.errno === 1040 || f.errno === 1203 || /too many connections/i.test(text)) {
    return "too many connections";
  }
  if (isReadOnlyAnswer(error)) return "read-only";
  if (f.errno === WSREP_NOT_READY) return "cluster node not ready";
  if (f.socketCode === "ECONNREFUSED" || /ECONNREFUSED|connection refused/i.test(text)) return "connection refused";
  if (/no answer/i.test(text)) return "no answer";
  if (f.errno === 45012 || f.socketCode === "ETIMEDOUT" || /ETIMEDOUT|connection timeout|connect timeout/i.test(text)) return "timed out";
  if (f.socketCode && /^E(HOST|NET)UNREACH$/.test(f.socketCode)) return "host unreachable";
  if (f.prismaCode === "P2028") return "no connection to start a transaction in time";
  if (f.errno === 45028) return "pool timeout";
  return "unavailable";
}
