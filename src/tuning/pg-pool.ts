// pg-pool settings below the PostgreSQL server's idle limits: reviews what a PrismaPg connection
// string or config would produce against the server's settings (and an idle limit of the network
// or a pooler), and recommends a config for `new PrismaPg(config)`. Pure: no I/O here.
import { checkOptionKeys, type TuneOptions, type Verdict } from "./pool.ts";
import { dialectOf, pgConfigOf, redactPgConfig } from "./pg-input.ts";

/** What the PostgreSQL server told one connection of your role and database (ms unless named). */
export interface PgServerSettings {
  dialect: "postgres";
  /** `server_version`, e.g. "15.18 (Debian 15.18-0+deb12u1)". */
  version?: string;
  /** `server_version_num`, e.g. 150018. */
  versionNum?: number;
  /** `idle_session_timeout` (PG 14+) in ms, 0 = off; undefined when the server has none. */
  idleSessionTimeout?: number;
  /** `idle_in_transaction_session_timeout` in ms, 0 = off. */
  idleInTransactionSessionTimeout?: number;
  /** `statement_timeout` in ms, 0 = off. */
  statementTimeout?: number;
  /** `transaction_timeout` (PG 17+) in ms, 0 = off. */
  transactionTimeout?: number;
  /** The server's keepalive probes on this connection, seconds / count; 0 = the OS default (0 on a unix socket). */
  tcpKeepalivesIdle?: number;
  tcpKeepalivesInterval?: number;
  tcpKeepalivesCount?: number;
  /** `max_connections`. */
  maxConnections?: number;
  /** Slots only superusers (and, PG 16+, pg_use_reserved_connections) may use. */
  reservedConnections?: number;
  /** The role's CONNECTION LIMIT (`rolconnlimit`), -1 = none. */
  roleConnLimit?: number;
  /** The database's CONNECTION LIMIT (`datconnlimit`), -1 = none. */
  databaseConnLimit?: number;
  /** The TLS version and cipher of the connection that read these, false for plaintext, undefined if unknown. */
  tls?: string | false;
  /** Something between app and server (a pooler, a proxy), when it showed; undefined when it could not be told. */
  pooler?: { detected: boolean; reason: string };
}

/** The pg-pool / node-postgres settings this module reviews (their names and units). */
export interface PgPoolSettings {
  max: number;
  /** Idle clients pg-pool keeps and never retires. */
  min: number;
  /** ms an idle client lives (0: forever). */
  idleTimeoutMillis: number;
  /** ms a caller waits for a client, a new connection included (0: forever). */
  connectionTimeoutMillis: number;
  keepAlive: boolean;
  /** ms of idle before the first TCP keepalive probe; Node reads whole seconds, below 1000 the OS default. */
  keepAliveInitialDelayMillis: number;
}
export type PgSettingName = keyof PgPoolSettings;

/** pg-pool 3 / pg 8 defaults (what PrismaPg(url) gets). */
export const PG_POOL_DEFAULTS: Readonly<PgPoolSettings> = Object.freeze({
  max: 10,
  min: 0,
  idleTimeoutMillis: 10_000,
  connectionTimeoutMillis: 0,
  keepAlive: false,
  keepAliveInitialDelayMillis: 0,
});

/** The keepalive delay when no network idle limit is known (as src/pg-adapter/config.ts bounds an unset one). */
const DEFAULT_KEEPALIVE_MS = 10_000;

export interface PgSettingReview {
  setting: PgSettingName;
  current: number | boolean;
  explicit: boolean;
  recommended: number | boolean;
  verdict: Verdict;
  reason: string;
}

export interface PgPoolReview {
  dialect: "postgres";
  /** Seconds idle clients must be retired by (the smallest idle limit − margin); undefined when there is none. */
  retireAfter?: number;
  margin?: number;
  current: PgPoolSettings;
  recommended: PgPoolSettings;
  settings: PgSettingReview[];
  verdict: Verdict;
  /** Problems with the input no setting fixes. */
  warnings: string[];
  /** What the server's other settings mean for the app (informational). */
  notes: string[];
  /** The input's config with the recommended settings, password kept (non-enumerable): `new PrismaPg(review.config)`. */
  readonly config: Record<string, unknown>;
  /** The same, password and connection string redacted: what to print. */
  redactedConfig: Record<string, unknown>;
}

export type PgTuneOptions = Pick<TuneOptions, "margin" | "networkIdleTimeout" | "acquireTimeout" | "optimistic" | "maxQueryMs">;

function fail(message: string): never {
  throw new TypeError(`pool settings: ${message}`);
}

function checkPgOptions(options: PgTuneOptions = {}) {
  checkOptionKeys("reviewPgPool()", options, ["margin", "networkIdleTimeout", "acquireTimeout", "optimistic", "maxQueryMs"]);
  const num = (name: string, v: unknown, whole: boolean) => {
    if (v === undefined) return undefined;
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0 || (whole && !Number.isInteger(v))) {
      fail(`\`${name}\` must be a ${whole ? "whole number of ms ≥ 1" : "positive number"}, got ${String(v)}`);
    }
    return v;
  };
  // maxQueryMs bounds mariadb's socketTimeout; pg has no safe equivalent (query_timeout leaves the statement running).
  if (options.maxQueryMs !== undefined) fail("`maxQueryMs` is a MySQL/MariaDB option (socketTimeout); it has no effect on PostgreSQL");
  if (options.optimistic !== undefined && typeof options.optimistic !== "boolean") fail("`optimistic` must be true or false");
  return {
    margin: num("margin", options.margin, false),
    networkIdleTimeout: num("networkIdleTimeout", options.networkIdleTimeout, false),
    acquireTimeout: num("acquireTimeout", options.acquireTimeout, true) ?? 5000,
  };
}

/** The pg-pool settings a PostgreSQL URL or config asks for, explicit ones marked (a URL's query sets none of them). */
export function readPgPoolSettings(input: string | Record<string, unknown>): { settings: PgPoolSettings; explicit: Set<PgSettingName> } {
  if (dialectOf(input) !== "postgres") fail("expected a postgres:// or postgresql:// connection string or a pg config object");
  const config = pgConfigOf(input);
  const settings: PgPoolSettings = { ...PG_POOL_DEFAULTS };
  const explicit = new Set<PgSettingName>();
  for (const name of Object.keys(PG_POOL_DEFAULTS) as PgSettingName[]) {
    const v = config[name];
    if (v === undefined) continue;
    if (name === "keepAlive") {
      if (typeof v !== "boolean") fail(`\`keepAlive\` must be true or false, got ${String(v)}`);
      settings.keepAlive = v;
    } else {
      if (typeof v !== "number" || !Number.isFinite(v) || v < 0) fail(`\`${name}\` must be a non-negative number, got ${String(v)}`);
      // pg-pool reads `max: 0` as "use the default" (options.max || 10).
      settings[name] = name === "max" && v === 0 ? PG_POOL_DEFAULTS.max : v;
    }
    explicit.add(name);
  }
  return { settings, explicit };
}

/** 10 % of the limit, 1 to 30 s, and below the limit itself (as src/tuning/pool.ts). */
function marginFor(limit: number, given: number | undefined): number {
  const margin = given ?? (limit < 2 ? limit / 2 : Math.min(30, Math.max(1, Math.ceil(limit * 0.1))));
  if (margin >= limit || Math.floor((limit - margin) * 1000) < 1) fail(`the margin (${margin} s) must leave at least 1 ms of the limit it is taken from (${limit} s)`);
  return margin;
}

const RANK: Record<Verdict, number> = { ok: 0, improve: 1, unsafe: 2 };

/**
 * Reviews the pg-pool settings of a PostgreSQL URL or config against the server's settings and
 * recommends a config that retires idle clients before the server (or the network) ends them,
 * bounds every wait and keeps idle flows alive; explicit safe settings are kept.
 */
export function reviewPgPool(input: string | Record<string, unknown>, server: PgServerSettings, options: PgTuneOptions = {}): PgPoolReview {
  const { margin: givenMargin, networkIdleTimeout: net, acquireTimeout } = checkPgOptions(options);
  if (typeof server !== "object" || server === null) fail("expected the server's settings (readServerTimeouts())");
  const { settings: current, explicit } = readPgPoolSettings(input);
  const idle = server.idleSessionTimeout ? server.idleSessionTimeout / 1000 : Infinity;
  const limit = Math.min(idle, net ?? Infinity);
  const limitName = net !== undefined && net <= idle ? `the network's idle limit (${net} s)` : `idle_session_timeout (${idle} s)`;
  const margin = Number.isFinite(limit) ? marginFor(limit, givenMargin) : undefined;
  const retireMs = margin === undefined ? undefined : Math.floor((limit - margin) * 1000);

  const rec: PgPoolSettings = { ...current };
  const reviews: PgSettingReview[] = [];
  const review = (setting: PgSettingName, recommended: number | boolean, verdict: Verdict, reason: string) => {
    (rec as any)[setting] = recommended;
    reviews.push({ setting, current: current[setting], explicit: explicit.has(setting), recommended, verdict, reason });
  };

  // max: below every connection limit, so that the wrapper's side connection and the doctor get a slot.
  const caps: Array<[number, string]> = [];
  if (server.maxConnections !== undefined) caps.push([server.maxConnections - (server.reservedConnections ?? 0), `the server's max_connections (${server.maxConnections}) less ${server.reservedConnections ?? 0} reserved`]);
  if (server.roleConnLimit !== undefined && server.roleConnLimit >= 0) caps.push([server.roleConnLimit, `the role's CONNECTION LIMIT (${server.roleConnLimit})`]);
  if (server.databaseConnLimit !== undefined && server.databaseConnLimit >= 0) caps.push([server.databaseConnLimit, `the database's CONNECTION LIMIT (${server.databaseConnLimit})`]);
  const cap = caps.sort((a, b) => a[0] - b[0])[0];
  if (cap && current.max >= cap[0]) {
    review("max", Math.max(1, cap[0] - 1), "unsafe", `not below ${cap[1]}: the pool's last connections, the wrapper's side connection and any other instance are refused (53300)`);
  } else {
    review("max", current.max, "ok", cap ? `below ${cap[1]}` : "kept as it is");
  }

  // min: pg-pool never retires its first `min` idle clients, so they meet the idle limit.
  if (retireMs !== undefined && current.min > 0) {
    review("min", 0, "improve", `pg-pool never retires the first ${current.min} idle clients: they outlive ${limitName}`);
  } else {
    review("min", current.min, "ok", "kept as it is");
  }

  if (retireMs === undefined) {
    review("idleTimeoutMillis", current.idleTimeoutMillis, "ok", "no idle limit known (idle_session_timeout off, no networkIdleTimeout given): kept");
  } else if (current.idleTimeoutMillis === 0 || current.idleTimeoutMillis >= limit * 1000) {
    const now = current.idleTimeoutMillis === 0 ? "0 (never)" : `${current.idleTimeoutMillis} ms`;
    review("idleTimeoutMillis", retireMs, "unsafe", `${now} is not below ${limitName}: idle clients are ended under the pool, and a checkout can race that end`);
  } else if (current.idleTimeoutMillis > retireMs) {
    review("idleTimeoutMillis", retireMs, "improve", `within the ${margin} s margin of ${limitName}: a checkout can race the end`);
  } else {
    review("idleTimeoutMillis", current.idleTimeoutMillis, "ok", `retires idle clients before ${limitName}`);
  }

  if (current.connectionTimeoutMillis === 0) {
    review("connectionTimeoutMillis", acquireTimeout, "unsafe", "0 waits forever: a full pool or a server that does not answer hangs every caller");
  } else if (current.connectionTimeoutMillis > acquireTimeout) {
    review("connectionTimeoutMillis", acquireTimeout, "improve", `a down server makes every caller wait ${current.connectionTimeoutMillis} ms before it learns anything`);
  } else {
    review("connectionTimeoutMillis", current.connectionTimeoutMillis, "ok", "bounded");
  }

  const netLimit = net !== undefined ? `the network's idle limit (${net} s)` : undefined;
  if (!current.keepAlive) {
    review(
      "keepAlive",
      true,
      netLimit ? "unsafe" : "improve",
      netLimit ? `without keepalive probes ${netLimit} drops idle connections silently` : "without keepalive probes a silently dropped connection is noticed only when it is used",
    );
  } else {
    review("keepAlive", true, "ok", "keepalive probes on idle connections");
  }

  // Node passes whole seconds to the socket (net.js: ~~(ms / 1000)); 0 means the OS default (Linux: 7200 s).
  const netMargin = net !== undefined ? marginFor(net, givenMargin) : undefined;
  const keepTarget = net !== undefined ? Math.max(1000, Math.floor(net - netMargin!) * 1000) : DEFAULT_KEEPALIVE_MS;
  const delay = current.keepAliveInitialDelayMillis;
  if (delay < 1000) {
    const why = `${delay} ms: Node reads whole seconds, so below 1000 ms the OS default applies (Linux: 7200 s)`;
    review("keepAliveInitialDelayMillis", keepTarget, netLimit ? "unsafe" : "improve", netLimit ? `${why}, above ${netLimit}` : why);
  } else if (net !== undefined && Math.floor(delay / 1000) >= net) {
    review("keepAliveInitialDelayMillis", keepTarget, "unsafe", `not below ${netLimit}: the flow is dropped before the first probe`);
  } else if (net !== undefined && Math.floor(delay / 1000) * 1000 > keepTarget) {
    review("keepAliveInitialDelayMillis", keepTarget, "improve", `within the ${netMargin} s margin of ${netLimit}`);
  } else {
    review("keepAliveInitialDelayMillis", delay, "ok", netLimit ? `the first probe before ${netLimit}` : "bounded");
  }

  const verdict = reviews.reduce<Verdict>((worst, r) => (RANK[r.verdict] > RANK[worst] ? r.verdict : worst), "ok");
  const changed = Object.fromEntries(
    (Object.keys(rec) as PgSettingName[]).filter((k) => rec[k] !== current[k] || explicit.has(k)).map((k) => [k, rec[k]]),
  );
  const config = { ...pgConfigOf(input), ...changed };
  const result: PgPoolReview = {
    dialect: "postgres",
    retireAfter: retireMs === undefined ? undefined : retireMs / 1000,
    margin,
    current,
    recommended: rec,
    settings: reviews,
    verdict,
    warnings: warningsOf(input),
    notes: notesOf(server),
    redactedConfig: redactPgConfig(config),
  } as PgPoolReview;
  // Carries the password: non-enumerable, so logging or serialising the review never prints it.
  Object.defineProperty(result, "config", { value: config, enumerable: false, writable: false, configurable: false });
  return result;
}

/** Connection-string parameters node-postgres ignores in a URL given to PrismaPg (pool settings go in the config). */
function warningsOf(input: string | Record<string, unknown>): string[] {
  const url = typeof input === "string" ? input : typeof input.connectionString === "string" ? input.connectionString : undefined;
  if (!url) return [];
  const warnings: string[] = [];
  for (const key of new URL(url).searchParams.keys()) {
    if ((Object.keys(PG_POOL_DEFAULTS) as string[]).includes(key) || key === "connect_timeout") {
      warnings.push(`\`${key}\` in the connection string is ignored by pg-pool / node-postgres: pass it in the config object (as the recommended config does)`);
    }
  }
  return warnings;
}

function notesOf(s: PgServerSettings): string[] {
  const notes: string[] = [];
  if (s.idleSessionTimeout === undefined) notes.push("idle_session_timeout: not available on this server (PostgreSQL < 14): idle sessions are not ended by the server");
  if (s.idleInTransactionSessionTimeout && s.idleInTransactionSessionTimeout < 5000) {
    notes.push(
      `idle_in_transaction_session_timeout ${s.idleInTransactionSessionTimeout} ms is below Prisma's interactive transaction timeout (5000 ms): ` +
        "a transaction pausing longer between statements is ended by the server (25P03) and re-run whole by resilience()",
    );
  }
  if (s.pooler?.detected) {
    notes.push(
      `${s.pooler.reason}: the idle limit that ends your connections is the pooler's own (PgBouncer client_idle_timeout, a provider's limit): ` +
        "pass it as networkIdleTimeout; in transaction mode a session identity means nothing (withResilience(…, { killGhostSessions: false }))",
    );
  }
  return notes;
}
