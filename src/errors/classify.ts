// Sorts any error thrown through Prisma 7 + a MySQL/MariaDB driver adapter into four classes, by
// its shape (name, code, meta, cause), never with `instanceof`: an app may load two copies of
// @prisma/client, and the driver's own errors reach us raw. See DESIGN §2 for the measured shapes.

/**
 * - `connection-lost`: the connection is unusable (killed, reset, closed, timed out mid-query).
 * - `unavailable`: the server could not be reached or refused a new connection; nothing ran.
 * - `conflict`: deadlock or write conflict; the server rolled the transaction back.
 * - `fatal`: everything else (auth, syntax, constraints, timeouts, packet too large...). Never retried.
 */
export type ErrorClass = "connection-lost" | "unavailable" | "conflict" | "fatal";

export interface ClassifyOptions {
  /**
   * The server's flavour when known. Error 4031 is MySQL 8.0.24+'s inactivity disconnect but means
   * something else on MariaDB; without a flavour, 4031 counts as a disconnect only when its message
   * says so.
   */
  flavor?: "mysql" | "mariadb";
}

/** What an error says about itself, gathered from every layer Prisma and the driver wrap it in. */
export interface ErrorFacts {
  /** Prisma's code (P2039, P2010, P2028 ...). */
  prismaCode?: string;
  /** Kind of the driver adapter's mapped error (`mysql`, `TooManyConnections` ...). */
  kind?: string;
  /** Server error number (1213, 2013 ...) or mariadb driver code (45009 ...). */
  errno?: number;
  /** Every layer's error number, outermost first (a pool's 45061 "fails to create connection", then its cause's). */
  errnos: number[];
  sqlState?: string;
  /** Node's socket error code (ECONNRESET, EPIPE ...). */
  socketCode?: string;
  /** The system call that failed with `socketCode` (`connect`, `read` ...): its `syscall`, else the head of its message. */
  socketSyscall?: string;
  /** Messages of every layer, for the few shapes that only a message tells apart. */
  messages: string[];
  /** The driver's reason behind a pool timeout (the mapped error's `cause` text), if any. */
  reason?: string;
  /** One of the layers is this package's own verdict (OutcomeUnknownError, DatabaseUnavailableError). */
  verdict?: string;
  /** The adapter wrapper held the call back (the server was down or refusing us): nothing was sent. */
  heldBack?: boolean;
}

// The adapter wrapper's flight record (src/adapter/flight.ts), read here for `heldBack` only: a
// held-back call's error (code ECONNREFUSED) comes back from Prisma with its code, message and meta.
const FLIGHT = Symbol.for("prisma-extension-resilience.flight");

// This package's typed errors are final: an outcome already reported as unknown, or a server already
// waited for until the deadline. Their `cause` is a lost connection, which must not make them look
// retryable to anyone (this package's transaction re-runs included).
const FINAL_ERRORS = new Set(["OutcomeUnknownError", "DatabaseUnavailableError"]);

const SOCKET_CODE = /^E[A-Z0-9_]+$/;
const SYSCALL_HEAD = /^(connect|getaddrinfo|read|write|writev) E[A-Z0-9_]+\b/;
const MAX_DEPTH = 6;

function isObject(v: unknown): v is Record<string, any> {
  return typeof v === "object" && v !== null;
}

/** Collects the facts of an error and of everything it wraps (`meta.driverAdapterError`, `cause`). */
export function errorFacts(error: unknown): ErrorFacts {
  const facts: ErrorFacts = { messages: [], errnos: [] };
  const seen = new Set<unknown>();
  const visit = (e: unknown, depth: number) => {
    if (depth > MAX_DEPTH) return;
    if (typeof e === "string") {
      facts.messages.push(e);
      return;
    }
    if (!isObject(e) || seen.has(e)) return;
    seen.add(e);
    if (typeof e.name === "string" && FINAL_ERRORS.has(e.name)) facts.verdict ??= e.name;
    const held = (o: unknown) => isObject(o) && (o as any)[FLIGHT]?.heldBack === true;
    if (held(e) || held(e.meta)) facts.heldBack = true;
    if (typeof e.message === "string") facts.messages.push(e.message);
    if (typeof e.originalMessage === "string") facts.messages.push(e.originalMessage);
    const code = e.code;
    if (typeof code === "string") {
      if (/^P\d{4}$/.test(code)) facts.prismaCode ??= code;
      else if (SOCKET_CODE.test(code) && !code.startsWith("ER_") && facts.socketCode === undefined) {
        facts.socketCode = code;
        // Node names it in `syscall` and begins the message with it ("connect ECONNREFUSED …");
        // Prisma's rebuild of a raw socket error keeps only the code and the message.
        const head = typeof e.message === "string" ? SYSCALL_HEAD.exec(e.message) : null;
        facts.socketSyscall = typeof e.syscall === "string" ? e.syscall : head?.[1];
      }
    }
    // A mapped driver adapter error: { kind, code?: number, state?, originalCode?, cause?: string }
    if (typeof e.kind === "string") {
      facts.kind ??= e.kind;
      if (typeof code === "number") facts.errnos.push(code);
      if (typeof e.state === "string" && e.state !== "N/A") facts.sqlState ??= e.state;
      if (typeof e.originalCode === "string" && /^\d+$/.test(e.originalCode)) facts.errnos.push(Number(e.originalCode));
      if (typeof e.cause === "string") facts.reason ??= e.cause;
    }
    // A raw driver error (mariadb SqlError / mysql2): { errno: number, sqlState, code: 'ER_...' }
    if (typeof e.errno === "number" && e.errno > 0) facts.errnos.push(e.errno);
    facts.errno ??= facts.errnos[0];
    if (typeof e.sqlState === "string") facts.sqlState ??= e.sqlState;
    if (isObject(e.meta)) visit(e.meta.driverAdapterError, depth + 1);
    visit(e.cause, depth + 1);
  };
  visit(error, 0);
  return facts;
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

// Failures that can carry a connection SQLSTATE (08S01) but that a retry would only repeat.
const NEVER_RETRY_CODES = new Set([
  1153, // ER_NET_PACKET_TOO_LARGE: the server closes the connection, the packet is still too large
  1969, // ER_STATEMENT_TIMEOUT (MariaDB max_statement_time)
  3024, // ER_QUERY_TIMEOUT (MySQL max_execution_time)
  45004, // ER_CMD_NOT_EXECUTED_DESTROYED: the driver killed the query at its queryTimeout
  45046, // ER_MAX_ALLOWED_PACKET (driver side)
]);

// Refusals that retrying cannot cure, even when they arrive wrapped in a pool timeout. A locked
// account (4151 MariaDB, 3118 MySQL) and an expired password at login (1862) are answers about the
// account from a running server, like a wrong password.
const ACCESS_CODES = new Set([1044, 1045, 1049, 1130, 1227, 1698, 1251, 1862, 3118, 4151]);

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
  if ((errno !== undefined && (ACCESS_CODES.has(errno) || NEVER_RETRY_CODES.has(errno))) || sqlState === "28000" || ACCESS_MESSAGE.test(reason)) return "fatal";
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
    if (ACCESS_CODES.has(errno) || NEVER_RETRY_CODES.has(errno)) return "fatal";
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
  if (f.sqlState?.startsWith("08") && errno !== undefined && !ACCESS_CODES.has(errno)) {
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
