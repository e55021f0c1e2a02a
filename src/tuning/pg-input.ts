// Which database a tuning input is for, and a PostgreSQL input read as node-postgres reads it.
// The rule: a `postgres://` or `postgresql://` URL, or a config object with `connectionString` or
// a key only node-postgres / pg-pool know (`max`, `idleTimeoutMillis`, …), is PostgreSQL; a
// `mysql://` / `mariadb://` URL, an object with a key only the mariadb driver knows, or a bare
// `{ host, user, password, database }` object (as before PostgreSQL support) is MySQL/MariaDB.
// An object with keys of both is a TypeError naming one of each.
import { SCHEME, SECRET_PARAM, redact, splitUrl } from "../core/redact.ts";

export type Dialect = "mysql" | "postgres";

const PG_SCHEMES = new Set(["postgres:", "postgresql:"]);
const MYSQL_SCHEMES = new Set(["mysql:", "mariadb:"]);

/** Keys only node-postgres (lib/connection-parameters.js) or pg-pool (index.js) read. */
const PG_KEYS = [
  "connectionString", "max", "min", "idleTimeoutMillis", "connectionTimeoutMillis", "keepAlive", "keepAliveInitialDelayMillis",
  "statement_timeout", "query_timeout", "lock_timeout", "idle_in_transaction_session_timeout", "application_name",
  "fallback_application_name", "options", "maxUses", "maxLifetimeSeconds", "allowExitOnIdle", "client_encoding", "sslmode",
];
/** Keys only the mariadb driver reads (the ones src/tuning/pool.ts reviews, and its own connection options). */
const MYSQL_KEYS = [
  "connectionLimit", "minimumIdle", "idleTimeout", "minDelayValidation", "acquireTimeout", "socketTimeout", "connectTimeout",
  "socketPath", "initSql", "sessionVariables", "queryTimeout", "keepAliveDelay", "prepareCacheLength", "allowPublicKeyRetrieval",
];

/** The pg-pool keys: not for a single pg.Client. */
export const PG_POOL_KEYS = ["max", "min", "idleTimeoutMillis", "maxUses", "maxLifetimeSeconds", "allowExitOnIdle", "log", "Client", "Promise", "onConnect", "verify"];

function isObject(input: unknown): input is Record<string, unknown> {
  return typeof input === "object" && input !== null && !Array.isArray(input);
}

/** The database the input is for, by the rule above; a TypeError for what is neither. */
export function dialectOf(input: unknown): Dialect {
  if (typeof input === "string") {
    const scheme = SCHEME.exec(input)?.[1]?.toLowerCase();
    if (scheme && PG_SCHEMES.has(scheme)) return "postgres";
    if (scheme && MYSQL_SCHEMES.has(scheme)) return "mysql";
    throw new TypeError(
      `expected a mysql://, mariadb://, postgres:// or postgresql:// connection string${scheme ? `, got ${scheme}// (${redact(input)})` : ""}`,
    );
  }
  if (!isObject(input)) throw new TypeError("expected a connection string or a mariadb pool config object (or a pg config object for PrismaPg)");
  const pg = PG_KEYS.find((k) => input[k] !== undefined);
  const my = MYSQL_KEYS.find((k) => input[k] !== undefined);
  if (pg && my) {
    throw new TypeError(`the pool config mixes a node-postgres key (\`${pg}\`) and a mariadb key (\`${my}\`): pass the config of the one driver you use`);
  }
  if (pg) {
    if (input.connectionString !== undefined) {
      const cs = input.connectionString;
      if (typeof cs !== "string" || dialectOf(cs) !== "postgres") {
        throw new TypeError(`\`connectionString\` must be a postgres:// or postgresql:// URL${typeof cs === "string" ? `, got ${redact(cs)}` : ""}`);
      }
    }
    return "postgres";
  }
  return "mysql";
}

/** A PostgreSQL input (URL or config) as a config object, the input itself left unchanged. */
export function pgConfigOf(input: string | Record<string, unknown>): Record<string, unknown> {
  if (typeof input === "string") {
    checkPgUrl(input);
    return { connectionString: input };
  }
  // A copy of `ssl`: node-postgres marks `ssl.key` non-enumerable on the object it is given.
  const ssl = isObject(input.ssl) ? { ...input.ssl } : input.ssl;
  return ssl === undefined ? { ...input } : { ...input, ssl };
}

/** `new URL()` must read it (node-postgres's pg-connection-string does the same); never echoes the password. */
function checkPgUrl(url: string): void {
  try {
    new URL(url);
  } catch {
    throw new TypeError(`not a valid postgres connection string (percent-encode a password holding \`/\`, \`?\`, \`#\` or \`@\`): ${redact(url)}`);
  }
}

function decoded(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** Every secret of a PostgreSQL input, in every reading of the URL (ours and `new URL()`'s), encoded and decoded. */
export function pgSecretsOf(input: unknown): string[] {
  const out: string[] = [];
  const fromUrl = (url: string) => {
    const raw = splitUrl(url)?.password;
    if (raw) out.push(raw, decoded(raw));
    try {
      const u = new URL(url);
      if (u.password) out.push(u.password, decoded(u.password));
      for (const [k, v] of u.searchParams) if (SECRET_PARAM.test(k) && v) out.push(v);
    } catch {}
  };
  if (typeof input === "string") fromUrl(input);
  else if (isObject(input)) {
    if (typeof input.connectionString === "string") fromUrl(input.connectionString);
    if (typeof input.password === "string" && input.password) out.push(input.password);
  }
  return [...new Set(out.filter(Boolean))];
}

/** The input as a URL to print: its connection string redacted, or one built from host, port, user, database. */
export function describePgInput(input: unknown): string {
  if (typeof input === "string") return redact(input);
  const c = (isObject(input) ? input : {}) as Record<string, any>;
  if (typeof c.connectionString === "string") return redact(c.connectionString);
  const user = typeof c.user === "string" ? `${encodeURIComponent(c.user)}${c.password !== undefined ? ":****" : ""}@` : "";
  return `postgresql://${user}${String(c.host ?? "localhost")}:${String(c.port ?? 5432)}/${String(c.database ?? c.user ?? "")}`;
}

/** The config with its password and connection string made printable. */
export function redactPgConfig(config: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...config };
  if (typeof out.connectionString === "string") out.connectionString = redact(out.connectionString);
  if (out.password !== undefined) out.password = "****";
  if (isObject(out.ssl)) out.ssl = Object.fromEntries(Object.entries(out.ssl).map(([k, v]) => [k, /key|pass|cert|ca$/i.test(k) ? "****" : v]));
  return out;
}
