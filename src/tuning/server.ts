// Reads a live server's timeouts over one short-lived connection (not a pool: a pool hides a wrong
// password behind its 10 s acquire timeout), and tunes pool settings from them.
import { ConnectFailedError, type ConnectFailure } from "../errors/errors.ts";
import { reviewPool, type PoolInput, type PoolReview, type ServerTimeouts, type TuneOptions } from "./pool.ts";
import { parseDatabaseUrl, redact } from "./url.ts";

export interface ReadServerOptions {
  /** ms to wait for the connection. Default 2000. */
  connectTimeout?: number;
}

function failureOf(error: any): ConnectFailure {
  const errno = typeof error?.errno === "number" ? error.errno : undefined;
  const code = String(error?.code ?? "");
  if (errno === 1045 || errno === 1698) return "auth";
  if (errno === 1044 || errno === 1130 || errno === 1227) return "access";
  if (errno === 1049) return "unknown-database";
  if (errno === 1040 || errno === 1203) return "too-many-connections";
  if (code === "ECONNREFUSED") return "refused";
  if (code === "ETIMEDOUT" || errno === 45012 || /timeout/i.test(String(error?.message))) return "timeout";
  if (["EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN"].includes(code)) return "unreachable";
  return "other";
}

/** Connection options for the mariadb driver from a URL or a pool config, with a short connect timeout. */
function connectionConfig(input: PoolInput, connectTimeout: number): Record<string, unknown> {
  if (typeof input === "string") {
    const u = parseDatabaseUrl(input);
    return {
      host: u.hostname.replace(/^\[|\]$/g, ""),
      port: u.port ? Number(u.port) : 3306,
      user: decodeURIComponent(u.username),
      password: decodeURIComponent(u.password),
      database: u.pathname.length > 1 ? decodeURIComponent(u.pathname.slice(1)) : undefined,
      connectTimeout,
    };
  }
  const { connectionLimit, minimumIdle, idleTimeout, minDelayValidation, acquireTimeout, ...rest } = input as any;
  return { ...rest, connectTimeout };
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
export async function readServerTimeouts(input: PoolInput, options: ReadServerOptions = {}): Promise<ServerTimeouts> {
  const connectTimeout = options.connectTimeout ?? 2000;
  let mariadb: any;
  try {
    mariadb = (await import("mariadb")).default;
  } catch (cause) {
    throw new Error("reading the server's settings needs the `mariadb` driver (installed with @prisma/adapter-mariadb)", { cause });
  }
  let conn: any;
  try {
    conn = await mariadb.createConnection(connectionConfig(input, connectTimeout));
  } catch (cause) {
    throw new ConnectFailedError(failureOf(cause), describeInput(input), { cause });
  }
  try {
    const [row] = await conn.query(
      "SELECT @@global.wait_timeout AS waitTimeout, @@session.wait_timeout AS sessionWaitTimeout, " +
        "@@global.interactive_timeout AS interactiveTimeout, @@global.max_connections AS maxConnections, VERSION() AS version",
    );
    const version = String(row.version);
    return {
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
export async function tunePool(
  input: PoolInput,
  options: TuneOptions & ReadServerOptions & { server?: ServerTimeouts } = {},
): Promise<PoolReview & { server: ServerTimeouts }> {
  const { server: given, connectTimeout, ...tune } = options;
  const server = given ?? (await readServerTimeouts(input, { connectTimeout }));
  const review = reviewPool(input, server, tune);
  return Object.assign(review, { server });
}
