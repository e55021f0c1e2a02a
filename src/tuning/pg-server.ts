// Reads a live PostgreSQL server's settings over one short pg.Client (not a pool: pg-pool hides a
// wrong password behind connectionTimeoutMillis, or forever at its default 0), with every option of
// the app's URL or config kept (ssl/sslmode, host, port, options, application_name), and tunes
// pg-pool settings from them.
import { ConnectFailedError, type ConnectFailure } from "../core/errors.ts";
import { redactUrlsIn, scrub } from "../core/redact.ts";
import { CONNECT_TIMEOUT, TOO_MANY_CONNECTIONS } from "../postgres/codes.ts";
import { checkOptionKeys } from "./pool.ts";
import { PG_POOL_KEYS, describePgInput, pgConfigOf, pgSecretsOf } from "./pg-input.ts";
import { readPgPoolSettings, reviewPgPool, type PgPoolReview, type PgServerSettings, type PgTuneOptions } from "./pg-pool.ts";

/** Why a connection failed, by SQLSTATE and socket code (a message may quote the host, never a reason to guess). */
function failureOf(error: any): ConnectFailure {
  const code = String(error?.code ?? "");
  if (code === "28P01") return "auth";
  if (code === "28000" || code === "42501") return "access";
  if (code === "3D000") return "unknown-database";
  if (code === TOO_MANY_CONNECTIONS) return "too-many-connections";
  if (code === "ECONNREFUSED") return "refused";
  if (code === "ETIMEDOUT" || CONNECT_TIMEOUT.test(String(error?.message)) || /^timeout expired$/.test(String(error?.message))) return "timeout";
  if (["EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN"].includes(code)) return "unreachable";
  return "other";
}

/** A copy of pg's error that carries no secret: its codes, and its message with URLs redacted and secrets scrubbed. */
function cleanCause(error: any, secrets: string[]): Error {
  const copy = new Error(scrub(redactUrlsIn(String(error?.message ?? error)), secrets));
  for (const key of ["name", "code", "severity", "routine", "errno", "syscall", "address", "port"]) {
    if (error?.[key] !== undefined) (copy as any)[key] = error[key];
  }
  return copy;
}

function connectFailed(cause: unknown, input: unknown): ConnectFailedError {
  const secrets = pgSecretsOf(input);
  const error = new ConnectFailedError(failureOf(cause), describePgInput(input), { cause: cleanCause(cause, secrets) });
  const clean = scrub(error.message, secrets);
  if (clean !== error.message) {
    Object.defineProperty(error, "stack", { value: scrub(String(error.stack), secrets), configurable: true, writable: true });
    Object.defineProperty(error, "message", { value: clean });
  }
  return error;
}

const SETTINGS = [
  "idle_session_timeout", "idle_in_transaction_session_timeout", "statement_timeout", "transaction_timeout",
  "tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count", "max_connections",
  "superuser_reserved_connections", "reserved_connections",
];

// One round trip for everything; pg_settings holds what this session got (role and database settings included).
const READ_SQL =
  "SELECT current_setting('server_version') AS version, current_setting('server_version_num')::int AS version_num, " +
  `(SELECT json_object_agg(name, json_build_array(setting, unit)) FROM pg_settings WHERE name IN (${SETTINGS.map((s) => `'${s}'`).join(", ")})) AS settings, ` +
  "(SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user) AS role_limit, " +
  "(SELECT datconnlimit FROM pg_database WHERE datname = current_database()) AS db_limit, " +
  "inet_server_port() AS server_port, pg_backend_pid() AS pid, " +
  "(SELECT CASE WHEN ssl THEN version || ' ' || cipher ELSE '' END FROM pg_stat_ssl WHERE pid = pg_backend_pid()) AS tls";

/** A pg_settings value in ms (`unit` ms, s or min), or as is when it has no time unit. */
function inMs(entry: [string, string | null] | undefined): number | undefined {
  if (!entry) return undefined;
  const n = Number(entry[0]);
  const factor = entry[1] === "s" ? 1000 : entry[1] === "min" ? 60_000 : 1;
  return n * factor;
}

export interface PgReadOptions {
  /** ms to wait for the connection and for each query. Default 2000. */
  connectTimeout?: number;
}

/**
 * Connects once and reads the server's version, idle and statement timeouts, keepalives, connection
 * limits (server, role, database), TLS, and whether a pooler or proxy shows between. Rejects with
 * ConnectFailedError (`auth` for a wrong password) within `connectTimeout`.
 */
export async function readPgServerSettings(input: string | Record<string, unknown>, options: PgReadOptions = {}): Promise<PgServerSettings> {
  checkOptionKeys("readServerTimeouts()", options, ["connectTimeout"]);
  const connectTimeout = options.connectTimeout ?? 2000;
  if (typeof connectTimeout !== "number" || !Number.isInteger(connectTimeout) || connectTimeout <= 0) {
    throw new TypeError(`readServerTimeouts(): \`connectTimeout\` must be a whole number of ms > 0, got ${String(connectTimeout)}`);
  }
  const config: Record<string, unknown> = pgConfigOf(input);
  for (const key of PG_POOL_KEYS) delete config[key];
  let pg: any;
  try {
    pg = (await import("pg")).default;
  } catch (cause) {
    throw new Error("reading the server's settings needs the `pg` driver (installed with @prisma/adapter-pg)", { cause });
  }
  let client: any;
  try {
    // pg's own parse of the URL: the app's options, only the two bounds ours.
    client = new pg.Client({ ...config, connectionTimeoutMillis: connectTimeout, query_timeout: connectTimeout });
  } catch (cause) {
    // pg parses the URL here; its text may quote parts of it.
    throw new TypeError(`node-postgres cannot read this connection config: ${scrub(redactUrlsIn(String((cause as Error)?.message)), pgSecretsOf(input))}`);
  }
  client.on("error", () => undefined);
  try {
    await client.connect();
  } catch (cause) {
    throw connectFailed(cause, input);
  }
  try {
    const { rows } = await client.query(READ_SQL);
    const row = rows[0];
    const again = await client.query("SELECT pg_backend_pid() AS pid");
    const s: Record<string, [string, string | null]> = row.settings ?? {};
    const num = (name: string) => (s[name] ? Number(s[name][0]) : undefined);
    const connectedPort = Number(client.port);
    const unixSocket = String(client.host ?? "").startsWith("/");
    let pooler: PgServerSettings["pooler"];
    if (again.rows[0].pid !== row.pid) {
      pooler = { detected: true, reason: `two statements ran on two backends (pid ${row.pid}, then ${again.rows[0].pid}): a pooler in transaction mode` };
    } else if (!unixSocket && row.server_port !== null && Number(row.server_port) !== connectedPort) {
      pooler = { detected: true, reason: `connected to port ${connectedPort}, the server listens on ${row.server_port}: a pooler or proxy is between` };
    } else if (!unixSocket && row.server_port !== null) {
      pooler = { detected: false, reason: "the server listens on the port connected to and one backend answered both statements (a pooler on the same port in session mode cannot be told)" };
    }
    return {
      dialect: "postgres",
      version: String(row.version),
      versionNum: Number(row.version_num),
      idleSessionTimeout: inMs(s.idle_session_timeout),
      idleInTransactionSessionTimeout: inMs(s.idle_in_transaction_session_timeout),
      statementTimeout: inMs(s.statement_timeout),
      transactionTimeout: inMs(s.transaction_timeout),
      tcpKeepalivesIdle: num("tcp_keepalives_idle"),
      tcpKeepalivesInterval: num("tcp_keepalives_interval"),
      tcpKeepalivesCount: num("tcp_keepalives_count"),
      maxConnections: num("max_connections"),
      reservedConnections: (num("superuser_reserved_connections") ?? 0) + (num("reserved_connections") ?? 0),
      roleConnLimit: row.role_limit ?? undefined,
      databaseConnLimit: row.db_limit ?? undefined,
      tls: row.tls === null || row.tls === undefined ? undefined : row.tls === "" ? false : String(row.tls),
      pooler,
    };
  } finally {
    // end() waits for the server's goodbye; a server that stopped answering gets the socket destroyed.
    const ended = client.end().catch(() => undefined);
    const timer = setTimeout(() => client.connection?.stream?.destroy(), connectTimeout);
    await ended;
    clearTimeout(timer);
  }
}

/**
 * Reads the server's settings (or takes them from `options.server`) and returns the review of a
 * PostgreSQL URL or pg config with a recommended config: `new PrismaPg(review.config)`.
 */
export async function tunePgPool(
  input: string | Record<string, unknown>,
  options: PgTuneOptions & PgReadOptions & { server?: PgServerSettings } = {},
): Promise<PgPoolReview & { server: PgServerSettings }> {
  checkOptionKeys("tunePool()", options, ["margin", "networkIdleTimeout", "maxQueryMs", "acquireTimeout", "optimistic", "connectTimeout", "server"]);
  const { server: given, connectTimeout, ...tune } = options;
  // Bad input is a TypeError before any connection is made.
  readPgPoolSettings(input);
  reviewPgPool(input, { dialect: "postgres" }, tune);
  const server = given ?? (await readPgServerSettings(input, { connectTimeout }));
  return Object.assign(reviewPgPool(input, server, tune), { server });
}
