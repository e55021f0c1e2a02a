// MySQL/MariaDB error numbers that more than one rule reads: one table each (src/mysql/classify.ts
// judges a call's error by them, src/mysql/refusal.ts a connection's refusal).

// An expired password at login (1862: the server disconnects an expired account) is the account's
// credentials, like a wrong password; a locked account (4151 MariaDB, 3118 MySQL) is no access. Both
// are answers of a running server about this account, never a verdict that the server is down.
export const AUTH_CODES = new Set([1045, 1698, 1251, 1862]);
export const ACCESS_CODES = new Set([1044, 1130, 1227, 3118, 4151]);
export const UNKNOWN_DB_CODES = new Set([1049]);
/** ER_HOST_IS_BLOCKED: too many aborted connects from this host; a refusal of a connection, not a statement's answer. */
export const HOST_BLOCKED = 1129;

// Refusals that retrying cannot cure, even when they arrive wrapped in a pool timeout.
export const REFUSED_CODES = new Set([...AUTH_CODES, ...ACCESS_CODES, ...UNKNOWN_DB_CODES]);

// Failures that can carry a connection SQLSTATE (08S01) but that a retry would only repeat.
export const NEVER_RETRY_CODES = new Set([
  1153, // ER_NET_PACKET_TOO_LARGE: the server closes the connection, the packet is still too large
  1969, // ER_STATEMENT_TIMEOUT (MariaDB max_statement_time)
  3024, // ER_QUERY_TIMEOUT (MySQL max_execution_time)
  45004, // ER_CMD_NOT_EXECUTED_DESTROYED: the driver killed the query at its queryTimeout
  45046, // ER_MAX_ALLOWED_PACKET (driver side)
]);
