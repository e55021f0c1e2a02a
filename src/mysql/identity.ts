// Who a server and a session are, as the server itself says: the one place that decides "the same
// server", "that server restarted" and "provably this connection's session". Ghost kills, the
// silent-drop watchdog and commit verification all ask here, so they cannot drift apart.
//
// MariaDB and MySQL 8 differ in where they keep the start time (information_schema.GLOBAL_STATUS is
// gone from MySQL 8.0; performance_schema.global_status has it) and in what names a server
// (MySQL's @@server_uuid, which MariaDB lacks). The flavour comes from the connection's handshake,
// once per connection: no statement is spent on it.
import { parseMembers } from "./galera.ts";

export type Flavor = "mariadb" | "mysql";

/** How the server identifies itself: a restart, or another server behind the same address, differs. */
export interface ServerIdentity {
  hostname: string;
  port: number;
  /** Unix time the server started, in seconds (±1). */
  started: number;
  /** `@@server_id`: a primary and its replicas never share one (replication requires it). */
  serverId?: number;
  /** `@@server_uuid` (MySQL; kept across restarts): another server has another one. */
  serverUuid?: string;
}

/** One app connection as the server sees it, read once when the pool opens it. */
export interface SessionIdentity {
  threadId: number;
  user: string;
  /** `ip:port` of the client socket as the server sees it (through a proxy: the proxy's side). */
  host: string;
  server: ServerIdentity;
  /** On a Galera node: its own entry in wsrep_incoming_addresses (`host:port`), when it has one. */
  member?: string;
  /** On a Galera node: its cluster's wsrep_cluster_state_uuid. */
  cluster?: string;
  /** The session's wait_timeout, in s: an idle close at that age is the server's routine. */
  waitTimeout?: number;
}

/** The server's flavour, from the handshake the driver already read (mariadb: `conn.info.serverVersion`). */
export function flavorOf(conn: unknown): Flavor {
  return (conn as any)?.info?.serverVersion?.mariaDb === false ? "mysql" : "mariadb";
}

// MariaDB: one statement, one GLOBAL_STATUS snapshot: the start time and, on a Galera node, the
// node's own client address (wsrep_incoming_addresses at wsrep_local_index) and its cluster.
const MARIADB_SERVER =
  "SELECT @@hostname AS h, @@port AS p, @@server_id AS sid, UNIX_TIMESTAMP() - CAST(s.VARIABLE_VALUE AS UNSIGNED) AS started FROM information_schema.GLOBAL_STATUS s WHERE s.VARIABLE_NAME = 'UPTIME'";
const MARIADB_SESSION =
  "SELECT p.ID AS id, p.USER AS user, p.HOST AS host, @@hostname AS h, @@port AS p, @@server_id AS sid, @@session.wait_timeout AS wt, " +
  "UNIX_TIMESTAMP() - MAX(CASE s.VARIABLE_NAME WHEN 'UPTIME' THEN CAST(s.VARIABLE_VALUE AS UNSIGNED) END) AS started, " +
  "MAX(CASE s.VARIABLE_NAME WHEN 'WSREP_LOCAL_INDEX' THEN s.VARIABLE_VALUE END) AS wsrep_index, " +
  "MAX(CASE s.VARIABLE_NAME WHEN 'WSREP_INCOMING_ADDRESSES' THEN s.VARIABLE_VALUE END) AS wsrep_members, " +
  "MAX(CASE s.VARIABLE_NAME WHEN 'WSREP_CLUSTER_STATE_UUID' THEN s.VARIABLE_VALUE END) AS wsrep_cluster " +
  "FROM information_schema.PROCESSLIST p, information_schema.GLOBAL_STATUS s WHERE p.ID = CONNECTION_ID() " +
  "AND s.VARIABLE_NAME IN ('UPTIME', 'WSREP_LOCAL_INDEX', 'WSREP_INCOMING_ADDRESSES', 'WSREP_CLUSTER_STATE_UUID') GROUP BY p.ID, p.USER, p.HOST";
// MySQL 8.0.22+ and 8.4: the start time from performance_schema.global_status, the session from
// performance_schema.processlist (information_schema.PROCESSLIST is deprecated there). Any account
// may read both, and sees its own threads without the PROCESS privilege.
const MYSQL_SERVER =
  "SELECT @@hostname AS h, @@port AS p, @@server_id AS sid, @@server_uuid AS suuid, UNIX_TIMESTAMP() - CAST(s.VARIABLE_VALUE AS UNSIGNED) AS started FROM performance_schema.global_status s WHERE s.VARIABLE_NAME = 'Uptime'";
const MYSQL_SESSION =
  "SELECT p.ID AS id, p.USER AS user, p.HOST AS host, @@hostname AS h, @@port AS p, @@server_id AS sid, @@server_uuid AS suuid, @@session.wait_timeout AS wt, " +
  "UNIX_TIMESTAMP() - CAST(s.VARIABLE_VALUE AS UNSIGNED) AS started " +
  "FROM performance_schema.processlist p, performance_schema.global_status s WHERE p.ID = CONNECTION_ID() AND s.VARIABLE_NAME = 'Uptime'";

/** Where the server lists its sessions (ID, USER, HOST as `ip:port`, COMMAND). */
export function processlist(flavor: Flavor): string {
  return flavor === "mysql" ? "performance_schema.processlist" : "information_schema.PROCESSLIST";
}

/**
 * What one session is doing (`?`: its thread id): user, client host, command, and `ms`, how long it
 * has been in that command (MariaDB's TIME_MS). MySQL's TIME is not known to be counted the same way
 * for a session still reading a packet: there `ms` is NULL, and only the size rule applies.
 */
export function sessionRowSql(flavor: Flavor): string {
  return flavor === "mysql"
    ? "SELECT USER AS user, HOST AS host, COMMAND AS command, NULL AS ms FROM performance_schema.processlist WHERE ID = ?"
    : "SELECT USER AS user, HOST AS host, COMMAND AS command, TIME_MS AS ms FROM information_schema.PROCESSLIST WHERE ID = ?";
}

/** The statement that reads the server's identity (a side connection's). */
export function serverSql(flavor: Flavor): string {
  return flavor === "mysql" ? MYSQL_SERVER : MARIADB_SERVER;
}

/** The statement that reads a new app connection's identity (its own session and its server). */
export function sessionSql(flavor: Flavor): string {
  return flavor === "mysql" ? MYSQL_SESSION : MARIADB_SESSION;
}

function optionalNumber(v: unknown): number | undefined {
  if (v === null || v === undefined || v === "") return undefined;
  const n = Number(v);
  return Number.isFinite(n) ? n : undefined;
}

export function serverIdentityOf(row: any): ServerIdentity | undefined {
  if (!row || row.started === null || row.started === undefined) return undefined;
  const started = Number(row.started);
  if (!Number.isFinite(started)) return undefined;
  const identity: ServerIdentity = { hostname: String(row.h), port: Number(row.p), started };
  const serverId = optionalNumber(row.sid);
  if (serverId !== undefined) identity.serverId = serverId;
  if (typeof row.suuid === "string" && row.suuid !== "") identity.serverUuid = row.suuid;
  return identity;
}

export function sessionIdentityOf(row: any): SessionIdentity | undefined {
  const server = serverIdentityOf(row);
  if (!server || row.id === undefined || row.id === null || typeof row.host !== "string") return undefined;
  const identity: SessionIdentity = { threadId: Number(row.id), user: String(row.user), host: row.host, server };
  // A Galera node in a component: its own entry and its cluster (non-Galera: index 2^64-1, no list).
  const members = parseMembers(typeof row.wsrep_members === "string" ? row.wsrep_members : undefined);
  const index = row.wsrep_index === null || row.wsrep_index === undefined ? NaN : Number(row.wsrep_index);
  if (members && Number.isInteger(index) && index >= 0 && index < members.length && members[index]) identity.member = members[index];
  if (typeof row.wsrep_cluster === "string" && row.wsrep_cluster !== "") identity.cluster = row.wsrep_cluster;
  const waitTimeout = optionalNumber(row.wt);
  if (waitTimeout !== undefined && waitTimeout > 0) identity.waitTimeout = waitTimeout;
  return identity;
}

/** Both say the same name (server id, MySQL's uuid), or one of them does not say. */
function sameNames(a: ServerIdentity, b: ServerIdentity): boolean {
  if (a.serverId !== undefined && b.serverId !== undefined && a.serverId !== b.serverId) return false;
  if (a.serverUuid !== undefined && b.serverUuid !== undefined && a.serverUuid !== b.serverUuid) return false;
  // One names a uuid and the other cannot: another flavour, another server.
  return (a.serverUuid === undefined) === (b.serverUuid === undefined);
}

/** The same server, in the same run (not restarted since). */
export function sameServer(a: ServerIdentity, b: ServerIdentity): boolean {
  return a.hostname === b.hostname && a.port === b.port && Math.abs(a.started - b.started) <= 1 && sameNames(a, b);
}

/**
 * `now` is `then`'s server started again: same host name, port, server id (and MySQL uuid), a later
 * start. No session from before a restart survives it. A server that merely shares the host name
 * and port (a replica on another address, a container) has another server id: never a restart.
 */
export function restartOf(now: ServerIdentity, then: ServerIdentity): boolean {
  return now.hostname === then.hostname && now.port === then.port && now.started > then.started + 1 && sameNames(now, then);
}

/** A processlist row (`USER`, `HOST`) is provably this session's: the same user and client host:port. */
export function isSessionRow(row: { user?: unknown; host?: unknown } | undefined, session: SessionIdentity): boolean {
  return row !== undefined && row.user === session.user && row.host === session.host;
}
