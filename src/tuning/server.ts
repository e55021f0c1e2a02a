// Reads a live server's timeouts over one short-lived connection (not a pool: a pool hides a wrong
// password behind its 10 s acquire timeout), and tunes pool settings from them.
import { COMMIT_TABLE } from "../mysql/marks.ts";
import { readGaleraState } from "../mysql/galera.ts";
import { ConnectFailedError, type ConnectFailure } from "../core/errors.ts";
import { checkOptionKeys, checkTuneOptions, readPoolSettings, reviewPool, type PoolInput, type PoolReview, type ServerTimeouts, type TuneOptions } from "./pool.ts";
import { formatDatabaseUrl, parseDatabaseUrl, redact, redactUrlsIn, scrub, secretsIn } from "../mysql/url.ts";
import { dialectOf } from "./pg-input.ts";
import type { PgPoolReview, PgServerSettings, PgTuneOptions } from "./pg-pool.ts";
import { readPgServerSettings, tunePgPool } from "./pg-server.ts";

/** A PostgreSQL input TypeScript can tell by its type (a URL typed `string` reads as MySQL's; see docs/tuning.md). */
export type PgPoolInput = `postgres://${string}` | `postgresql://${string}` | { connectionString: string; [key: string]: unknown };

export interface ReadServerOptions {
  /** ms to wait for the connection. Default 2000. */
  connectTimeout?: number;
}

/** The driver's timeout errors (connect, socket, initial handshake). */
const TIMEOUT_ERRNOS = new Set([45012, 45026, 45039]);

/** Why a connection failed, by errno and code only (a message may quote the URL, `connectTimeout=` included). */
function failureOf(error: any): ConnectFailure {
  const errno = typeof error?.errno === "number" ? error.errno : undefined;
  const code = String(error?.code ?? "");
  if (errno === 1045 || errno === 1698) return "auth";
  if (errno === 1044 || errno === 1130 || errno === 1227) return "access";
  if (errno === 1049) return "unknown-database";
  if (errno === 1040 || errno === 1203) return "too-many-connections";
  if (code === "ECONNREFUSED") return "refused";
  if (code === "ETIMEDOUT" || TIMEOUT_ERRNOS.has(errno as number)) return "timeout";
  if (["EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN"].includes(code)) return "unreachable";
  return "other";
}

/**
 * What to hand the mariadb driver for one short connection: every option of the URL or config
 * (`ssl`, `socketPath`, `initSql`, `sessionVariables` …), only the timeouts replaced by ours so that
 * connecting and the one query are bounded. A URL goes to the driver as a URL, re-encoded, so the
 * driver applies its own reading of every option (types, `ssl=true`) exactly as it does for the app.
 */
function connectionConfig(input: PoolInput, connectTimeout: number): string | Record<string, unknown> {
  if (typeof input === "string") {
    const u = parseDatabaseUrl(input);
    // The driver's URL syntax requires a database (so does PrismaMariaDb's).
    if (u.database === undefined) throw new TypeError(`the connection string names no database (mysql://user:password@host:port/database): ${redact(input)}`);
    u.params.set("connectTimeout", String(connectTimeout));
    u.params.set("socketTimeout", String(connectTimeout));
    return formatDatabaseUrl(u, "mariadb:");
  }
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    throw new TypeError("expected a mysql:// or mariadb:// connection string or a mariadb pool config object");
  }
  const { connectionLimit, minimumIdle, idleTimeout, minDelayValidation, acquireTimeout, ...rest } = input as any;
  // A copy of `ssl`: the driver writes `rejectUnauthorized` into the object it is given.
  const ssl = typeof rest.ssl === "object" && rest.ssl !== null ? { ...rest.ssl } : rest.ssl;
  return { ...rest, ssl, connectTimeout, socketTimeout: connectTimeout };
}

/** Every secret of the input: the URL's password and password-like query values, or a config's password. */
function secretsOf(input: PoolInput): string[] {
  if (typeof input === "string") return secretsIn(input);
  return typeof (input as any)?.password === "string" ? [(input as any).password] : [];
}

/**
 * A copy of the driver's error that carries no secret: its codes, and its message with every URL
 * redacted and every password form scrubbed. A parse error quotes the whole URL: replaced.
 */
function cleanCause(error: any, secrets: string[]): Error {
  const raw = String(error?.message ?? error);
  const clean = (text: string) => scrub(redactUrlsIn(text), secrets);
  const copy = new Error(/error parsing connection string/i.test(raw) ? "the mariadb driver cannot parse the connection string" : clean(raw));
  for (const key of ["name", "code", "errno", "sqlState", "fatal", "syscall", "address", "port"]) {
    if (error?.[key] !== undefined) (copy as any)[key] = error[key];
  }
  if (typeof error?.sqlMessage === "string") (copy as any).sqlMessage = clean(error.sqlMessage);
  return copy;
}

function describeInput(input: PoolInput): string {
  if (typeof input === "string") return redact(input);
  const c = input as any;
  return `mariadb://${c.user ?? ""}@${c.host ?? c.socketPath ?? "localhost"}${c.port ? `:${c.port}` : ""}/${c.database ?? ""}`;
}

/**
 * Connects once and reads `@@global.wait_timeout`, `@@session.wait_timeout`,
 * `@@interactive_timeout`, `@@max_connections` and `VERSION()`. Rejects with ConnectFailedError,
 * whose `reason` says why (`auth` for a wrong password), within `connectTimeout`.
 */
export function readServerTimeouts(input: PgPoolInput, options?: ReadServerOptions): Promise<PgServerSettings>;
export function readServerTimeouts(input: PoolInput, options?: ReadServerOptions): Promise<ServerTimeouts>;
export async function readServerTimeouts(input: PoolInput, options: ReadServerOptions = {}): Promise<ServerTimeouts | PgServerSettings> {
  // postgres:// URLs and pg configs go to src/tuning/pg-server.ts (the rule: src/tuning/pg-input.ts).
  if (dialectOf(input) === "postgres") return readPgServerSettings(input, options);
  checkOptionKeys("readServerTimeouts()", options, ["connectTimeout"]);
  const connectTimeout = options.connectTimeout ?? 2000;
  if (typeof connectTimeout !== "number" || !Number.isInteger(connectTimeout) || connectTimeout <= 0) {
    throw new TypeError(`readServerTimeouts(): \`connectTimeout\` must be a whole number of ms > 0, got ${String(connectTimeout)}`);
  }
  const config = connectionConfig(input, connectTimeout);
  let mariadb: any;
  try {
    mariadb = (await import("mariadb")).default;
  } catch (cause) {
    throw new Error("reading the server's settings needs the `mariadb` driver (installed with @prisma/adapter-mariadb)", { cause });
  }
  let conn: any;
  try {
    conn = await mariadb.createConnection(config);
  } catch (cause) {
    // The driver's own text is part of the message and the cause: neither may carry the password.
    const secrets = secretsOf(input);
    const error = new ConnectFailedError(failureOf(cause), describeInput(input), { cause: cleanCause(cause, secrets) });
    const clean = scrub(error.message, secrets);
    if (clean !== error.message) {
      // inspect() prints the stack, which starts with the message as it was built.
      Object.defineProperty(error, "stack", { value: scrub(String(error.stack), secrets), configurable: true, writable: true });
      Object.defineProperty(error, "message", { value: clean });
    }
    throw error;
  }
  try {
    const [row] = await conn.query(
      "SELECT @@global.wait_timeout AS waitTimeout, @@session.wait_timeout AS sessionWaitTimeout, " +
        "@@global.interactive_timeout AS interactiveTimeout, @@global.max_connections AS maxConnections, VERSION() AS version",
    );
    // Informational: a proxy that does not answer SHOW STATUS leaves it unknown.
    const [ssl] = await conn.query("SHOW SESSION STATUS LIKE 'Ssl_cipher'").catch(() => [undefined]);
    const version = String(row.version);
    const galera = await readGaleraState(conn).catch(() => undefined);
    const commitTable = await conn.query(`SELECT 1 FROM \`${COMMIT_TABLE}\` LIMIT 0`).then(
      () => "present" as const,
      (e: any) => (e?.errno === 1146 ? ("missing" as const) : ("no-access" as const)),
    );
    return {
      galera: galera?.galera ? galera : undefined,
      commitTable,
      tls: ssl === undefined ? undefined : ssl.Value ? String(ssl.Value) : false,
      waitTimeout: Number(row.waitTimeout),
      sessionWaitTimeout: Number(row.sessionWaitTimeout),
      interactiveTimeout: Number(row.interactiveTimeout),
      maxConnections: Number(row.maxConnections),
      version,
      flavor: /mariadb/i.test(version) ? "mariadb" : "mysql",
    };
  } finally {
    await conn.end().catch(() => conn.destroy());
  }
}

/**
 * Reads the server's timeouts (or takes them from `options.server`) and returns the review of the
 * given connection string or pool config with recommended settings: `review.url` (or
 * `review.config`) is ready to pass to `new PrismaMariaDb(...)`.
 */
export function tunePool(
  input: PgPoolInput,
  options?: PgTuneOptions & ReadServerOptions & { server?: PgServerSettings },
): Promise<PgPoolReview & { server: PgServerSettings }>;
export function tunePool(input: PoolInput, options?: TuneOptions & ReadServerOptions & { server?: ServerTimeouts }): Promise<PoolReview & { server: ServerTimeouts }>;
export async function tunePool(
  input: PoolInput,
  options: TuneOptions & ReadServerOptions & { server?: ServerTimeouts | PgServerSettings } = {},
): Promise<(PoolReview & { server: ServerTimeouts }) | (PgPoolReview & { server: PgServerSettings })> {
  if (dialectOf(input) === "postgres") return tunePgPool(input, options as PgTuneOptions & ReadServerOptions & { server?: PgServerSettings });
  checkOptionKeys("tunePool()", options, ["margin", "networkIdleTimeout", "maxQueryMs", "acquireTimeout", "optimistic", "connectTimeout", "server"]);
  const { server: given, connectTimeout, ...tune } = options;
  // Bad input is a TypeError before any connection is made.
  checkTuneOptions(tune);
  readPoolSettings(input);
  const server = (given as ServerTimeouts | undefined) ?? (await readServerTimeouts(input, { connectTimeout }));
  const review = reviewPool(input, server, tune);
  return Object.assign(review, { server });
}
