// PostgreSQL SQLSTATEs and node-postgres / pg-pool error texts that the rules read, one table per
// meaning (src/postgres/classify.ts judges by them). Measured shapes: /work/shared/postgres.md, and
// the recorded ones in test/fixtures/pg-error-shapes.ts.

// The session is gone. 57P01/57P05/25P03 are FATAL answers of a backend that ends itself; 08xxx
// are the codes a client library gives its own connection failures.
export const LOST_SQLSTATES = new Set([
  "57P01", // admin_shutdown: pg_terminate_backend(), a fast shutdown, a serverless compute suspended
  "57P02", // crash_shutdown: another backend crashed, the postmaster ends every session
  "57P05", // idle_session_timeout (PG 14+): ended while idle, outside a transaction
  "25P03", // idle_in_transaction_session_timeout: ended while idle inside a transaction
  "08000", // connection_exception
  "08003", // connection_does_not_exist
  "08006", // connection_failure
  "08007", // transaction_resolution_unknown (a client's own code for a COMMIT without its answer)
]);

// The server could not be had for a new session; nothing ran.
export const UNAVAILABLE_SQLSTATES = new Set([
  "57P03", // cannot_connect_now: starting up, shutting down, in recovery, not accepting connections
  "53300", // too_many_connections: max_connections or a role's CONNECTION LIMIT
  "08001", // sqlclient_unable_to_establish_sqlconnection
  "08004", // sqlserver_rejected_establishment_of_sqlconnection
]);

// The server rolled the whole transaction back; it can run again.
export const CONFLICT_SQLSTATES = new Set([
  "40001", // serialization_failure (REPEATABLE READ / SERIALIZABLE, also at COMMIT)
  "40P01", // deadlock_detected
]);

// Answers at connect that retrying does not cure (the account, the database): fatal, and nothing sent.
export const REFUSED_SQLSTATES = new Set([
  "28P01", // invalid_password
  "28000", // invalid_authorization_specification: no pg_hba.conf entry, role cannot log in
  "3D000", // invalid_catalog_name: the database does not exist
]);

// Session ends that the server sends only while the session is idle (waiting for a command): a
// statement the client sent after that was never read, and an open transaction is rolled back.
export const IDLE_END_SQLSTATES = new Set(["57P05", "25P03"]);

/** 57014 query_canceled: statement_timeout or a cancel request. Never retried: it may be the app's own bound. */
export const QUERY_CANCELED = "57014";
/** 57P03 is only ever a refusal of a new session (the startup packet), never an answer to a statement. */
export const CANNOT_CONNECT_NOW = "57P03";
export const TOO_MANY_CONNECTIONS = "53300";

// node-postgres's and pg-pool's own errors: plain Errors, no code, only their text tells them apart.
// Client.query() refuses before writing a byte (lib/client.js): nothing was sent.
export const NOT_QUERYABLE = /^Client (has encountered a connection error|was closed) and is not queryable$/;
// The socket ended under an active query: sent or not, no one can tell.
export const TERMINATED = /^Connection terminated( unexpectedly)?$/;
// pg-pool: waited connectionTimeoutMillis for a free client (the pool was full).
export const POOL_WAIT_TIMEOUT = /^timeout exceeded when trying to connect$/;
// pg-pool: a new client did not finish connecting in connectionTimeoutMillis.
export const CONNECT_TIMEOUT = /^Connection terminated due to connection timeout$/;
// pg-pool after pool.end() (a $disconnect): nothing sent.
export const POOL_ENDED = /^Cannot use a pool after calling end on the pool$/;
// pg's query_timeout: the app's own bound on a statement, like 57014.
export const QUERY_READ_TIMEOUT = /^Query read timeout$/;

// Node socket codes on a connection that was open: the statement may have been sent.
export const LOST_SOCKET_CODES = new Set(["ECONNRESET", "EPIPE", "ETIMEDOUT", "ECONNABORTED", "ENOTCONN", "EHOSTDOWN", "ERR_SOCKET_CLOSED", "ERR_STREAM_DESTROYED"]);
// Node socket codes of a connect() or a name lookup that failed.
export const UNAVAILABLE_SOCKET_CODES = new Set(["ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "ENETDOWN", "EAI_AGAIN", "ENOTFOUND"]);
