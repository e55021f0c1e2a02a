// Pool settings below the server's wait_timeout: reviews what a connection string (or a mariadb pool
// config) would produce against the server's timeouts, and recommends settings that retire idle
// connections before the server (or an idle-dropping middlebox) does. Pure: no I/O here.
import type { GaleraState } from "../mysql/galera.ts";
import { formatDatabaseUrl, parseDatabaseUrl, prismaMisreads, redact } from "../mysql/url.ts";

/** The server facts the recommendation depends on. Timeouts in seconds, as the server reports them. */
export interface ServerTimeouts {
  /** `@@global.wait_timeout`: what a new connection gets. */
  waitTimeout: number;
  /** `@@session.wait_timeout` as a connection of your user sees it (init_connect can change it). */
  sessionWaitTimeout?: number;
  /** `@@interactive_timeout` (for clients that connect as interactive; informational). */
  interactiveTimeout?: number;
  /** `@@max_connections`. */
  maxConnections?: number;
  /** `VERSION()`. */
  version?: string;
  flavor?: "mariadb" | "mysql";
  /** The TLS cipher of the connection that read these facts, false for plaintext, undefined if unknown. */
  tls?: string | false;
  /** A Galera node's state (cluster size, Primary, Synced, wsrep_sync_wait), when the server could say. */
  galera?: GaleraState;
  /** The commit-mark table of exactly-once (`_resilience_commits`): there, missing, or not readable by this user. */
  commitTable?: "present" | "missing" | "no-access";
}

/** The mariadb pool settings this module reviews (the driver's names and units). */
export interface PoolSettings {
  connectionLimit: number;
  /** Idle connections kept open (and never retired by idleTimeout). */
  minimumIdle: number;
  /** Seconds an idle connection above minimumIdle lives. */
  idleTimeout: number;
  /** ms: a connection idle longer than this is pinged before it is handed out. */
  minDelayValidation: number;
  /** ms of socket inactivity after which the driver closes the connection (0: never). */
  socketTimeout: number;
  /** ms to open a socket. */
  connectTimeout: number;
  /** ms a caller waits for a connection from the pool. */
  acquireTimeout: number;
}

export type SettingName = keyof PoolSettings;

/** The mariadb 3.4 driver's defaults. */
export const DRIVER_DEFAULTS: Readonly<PoolSettings> = Object.freeze({
  connectionLimit: 10,
  minimumIdle: 10, // = connectionLimit
  idleTimeout: 1800,
  minDelayValidation: 500,
  socketTimeout: 0,
  connectTimeout: 1000,
  acquireTimeout: 10_000,
});

export interface TuneOptions {
  /**
   * Seconds to retire idle connections before the server would. Default: 10 % of the timeout,
   * at least 1 and at most 30.
   */
  margin?: number;
  /** Seconds after which something between app and server drops idle flows (NAT, load balancer). */
  networkIdleTimeout?: number;
  /** ms the longest legitimate query may run without sending a byte. Default 30000. */
  maxQueryMs?: number;
  /** ms a caller may wait for a connection. Default 5000. */
  acquireTimeout?: number;
  /**
   * Turn the per-checkout validation ping off (default true). Safe with idle connections retired
   * below wait_timeout and resilience() re-running what a dead connection breaks.
   */
  optimistic?: boolean;
}

export type Verdict = "ok" | "improve" | "unsafe";

export interface SettingReview {
  setting: SettingName;
  /** What the input produces today (explicit value or driver default). */
  current: number;
  /** The input set it explicitly. */
  explicit: boolean;
  recommended: number;
  /** About the current value: ok, could be better, or unsafe. */
  verdict: Verdict;
  reason: string;
}

export interface PoolReview {
  /** Seconds idle connections must be retired by: min(wait timeouts, network idle timeout) − margin. */
  retireAfter: number;
  margin: number;
  current: PoolSettings;
  recommended: PoolSettings;
  settings: SettingReview[];
  /** Worst verdict over all settings. */
  verdict: Verdict;
  /** Problems with the input that no setting fixes (e.g. a password PrismaMariaDb would misread). */
  warnings: string[];
  /**
   * The input's connection string with the recommended settings, password kept (non-enumerable:
   * not printed by console.log or JSON.stringify), if a URL was given.
   */
  readonly url?: string;
  /** The same, password replaced by ****: what to print. */
  redactedUrl?: string;
  /** The input's pool config with the recommended settings (non-enumerable), if an object was given. */
  readonly config?: Record<string, unknown>;
}

export type PoolInput = string | Record<string, unknown>;

function fail(message: string): never {
  throw new TypeError(`pool settings: ${message}`);
}

const TUNE_OPTIONS = ["margin", "networkIdleTimeout", "maxQueryMs", "acquireTimeout", "optimistic"];

/** Throws a TypeError naming the first key of `options` that is not in `known`. */
export function checkOptionKeys(where: string, options: unknown, known: string[]): void {
  if (options === undefined) return;
  if (typeof options !== "object" || options === null || Array.isArray(options)) throw new TypeError(`${where}: options must be an object`);
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) throw new TypeError(`${where}: unknown option \`${key}\` (known: ${known.join(", ")})`);
  }
}

/** A number from the connection string, as the driver reads it (parseInt), refused when that differs from what is written. */
function urlNumber(name: string, text: string): number {
  if (/^\d+$/.test(text)) return parseInt(text, 10);
  const read = parseInt(text, 10);
  fail(
    `\`${name}=${text}\` in the connection string must be a whole number ≥ 0` +
      (Number.isNaN(read) ? "" : ` (the mariadb driver reads it with parseInt, as ${read})`),
  );
}

function positive(name: string, value: unknown, { allowZero = false } = {}): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0 || (!allowZero && value === 0)) {
    fail(`\`${name}\` must be a ${allowZero ? "non-negative" : "positive"} number, got ${String(value)}`);
  }
  return value;
}

/** A duration in ms that goes into a URL: the driver reads it with parseInt (0.5 would be 0, no timeout). */
function wholeMs(name: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1) fail(`\`${name}\` must be a whole number of ms ≥ 1, got ${String(value)}`);
  return value;
}

/** The tuning options, checked (a TypeError names the first bad one): before anything connects. */
export function checkTuneOptions(options: TuneOptions = {}) {
  checkOptionKeys("reviewPool()", options, TUNE_OPTIONS);
  const optimistic = options.optimistic ?? true;
  if (typeof optimistic !== "boolean") fail("`optimistic` must be true or false");
  return {
    margin: options.margin === undefined ? undefined : positive("margin", options.margin),
    networkIdleTimeout: options.networkIdleTimeout === undefined ? undefined : positive("networkIdleTimeout", options.networkIdleTimeout),
    maxQueryMs: options.maxQueryMs === undefined ? 30_000 : wholeMs("maxQueryMs", options.maxQueryMs),
    acquireTimeout: options.acquireTimeout === undefined ? 5000 : wholeMs("acquireTimeout", options.acquireTimeout),
    optimistic,
  };
}

/** The queryTimeout the driver will use (0: none), read as it does (lib/config/connection-options.js): parseInt in a URL, Number in a config object. */
function driverQueryTimeout(raw: unknown, fromUrl: boolean): number {
  let value = raw;
  if (fromUrl && typeof value === "string" && !Number.isNaN(parseInt(value, 10))) value = parseInt(value, 10);
  return Number.isNaN(Number(value)) || Number(value) < 0 ? 0 : Number(value);
}

/** The settings a URL or config object asks for, explicit ones marked. */
export function readPoolSettings(input: PoolInput): { settings: PoolSettings; explicit: Set<SettingName> } {
  const explicit = new Set<SettingName>();
  const settings = { ...DRIVER_DEFAULTS };
  const isUrl = typeof input === "string";
  let raw: Record<string, unknown>;
  if (isUrl) raw = Object.fromEntries(parseDatabaseUrl(input).params);
  else if (typeof input === "object" && input !== null && !Array.isArray(input)) raw = input;
  else fail("expected a mysql:// or mariadb:// connection string or a mariadb pool config object");
  for (const name of Object.keys(DRIVER_DEFAULTS) as SettingName[]) {
    if (raw[name] === undefined || raw[name] === "") continue;
    // The driver reads numbers in a URL with parseInt, in a config object with Number.
    const n = isUrl ? urlNumber(name, String(raw[name])) : Number(raw[name]);
    if (!Number.isFinite(n) || n < 0) fail(`\`${name}\` must be a non-negative number, got ${String(raw[name])}`);
    settings[name] = n;
    explicit.add(name);
  }
  if (!explicit.has("minimumIdle")) settings.minimumIdle = settings.connectionLimit;
  settings.minimumIdle = Math.min(settings.minimumIdle, settings.connectionLimit);
  return { settings, explicit };
}

/**
 * Reviews the pool settings of a connection string or mariadb pool config against the server's
 * timeouts and recommends settings that retire idle connections before the server does, bound every
 * wait, and keep what you set explicitly unless it is unsafe. Throws a TypeError on invalid input.
 */
export function reviewPool(input: PoolInput, server: ServerTimeouts, options: TuneOptions = {}): PoolReview {
  const { maxQueryMs, acquireTimeout: acquireTarget, optimistic, networkIdleTimeout, margin: givenMargin } = checkTuneOptions(options);
  positive("waitTimeout", server?.waitTimeout);
  if (server.sessionWaitTimeout !== undefined) positive("sessionWaitTimeout", server.sessionWaitTimeout);
  if (server.maxConnections !== undefined) positive("maxConnections", server.maxConnections);

  const limit = Math.min(server.waitTimeout, server.sessionWaitTimeout ?? Infinity, networkIdleTimeout ?? Infinity);
  // Default: 10 % of the timeout, 1 to 30 s, and below the timeout itself (wait_timeout = 1 → 0.5 s).
  const margin = givenMargin ?? (limit < 2 ? limit / 2 : Math.min(30, Math.max(1, Math.ceil(limit * 0.1))));
  // Whole ms ≥ 1: a URL's socketTimeout is read with parseInt, and 0 means no timeout.
  const retireMs = Math.floor((limit - margin) * 1000);
  if (margin >= limit || retireMs < 1) fail(`the margin (${margin} s) must leave at least 1 ms of the timeout it is taken from (${limit} s)`);
  const retireAfter = retireMs / 1000;
  // idleTimeout is whole seconds in a URL (parseInt): never below 1.
  const idleTarget = Math.max(1, Math.floor(retireAfter));

  const { settings: current, explicit } = readPoolSettings(input);
  const rec: PoolSettings = { ...current };
  const reviews: SettingReview[] = [];
  const review = (setting: SettingName, recommended: number, verdict: Verdict, reason: string) => {
    rec[setting] = recommended;
    reviews.push({ setting, current: current[setting], explicit: explicit.has(setting), recommended, verdict, reason });
  };

  // connectionLimit: kept; checked against the server's max_connections.
  if (server.maxConnections !== undefined && current.connectionLimit >= server.maxConnections) {
    review("connectionLimit", current.connectionLimit, "unsafe", `not below the server's max_connections (${server.maxConnections}): the pool can be refused connections`);
  } else {
    review("connectionLimit", current.connectionLimit, "ok", "kept as it is");
  }

  // socketTimeout: bounds a silent drop, and (being an inactivity timer) retires even the
  // minimumIdle connections that idleTimeout never touches.
  const socketTarget = Math.min(maxQueryMs, retireMs);
  if (current.socketTimeout === 0) {
    review("socketTimeout", socketTarget, "unsafe", "0 means a silently dropped connection (no FIN, no RST) hangs a query forever");
  } else if (current.socketTimeout > retireMs) {
    review("socketTimeout", socketTarget, "improve", `above the ${retireAfter} s retirement point: idle connections kept by minimumIdle outlive the server's timeout`);
  } else {
    review("socketTimeout", current.socketTimeout, "ok", `closes a connection silent for ${current.socketTimeout} ms, before the server's ${limit} s`);
  }
  const retiredBySocket = rec.socketTimeout > 0 && rec.socketTimeout <= retireMs;

  // minimumIdle: 0 starves mariadb 3.4's pool; = connectionLimit makes idleTimeout a no-op.
  if (current.minimumIdle === 0) {
    review("minimumIdle", 1, "unsafe", "0 starves the pool in mariadb 3.4 (no connection is created for waiting callers)");
  } else if (current.minimumIdle >= current.connectionLimit && current.connectionLimit > 1) {
    const target = Math.max(1, Math.min(current.connectionLimit - 1, Math.ceil(current.connectionLimit / 4)));
    review("minimumIdle", target, "improve", `equal to connectionLimit (${current.connectionLimit}), so idleTimeout never retires anything`);
  } else {
    review("minimumIdle", current.minimumIdle, "ok", "below connectionLimit: idle connections above it are retired by idleTimeout");
  }

  // idleTimeout: below the retirement point.
  if (current.idleTimeout === 0 || current.idleTimeout > retireAfter) {
    const pinging = current.minDelayValidation < retireMs;
    review(
      "idleTimeout",
      idleTarget,
      retiredBySocket || pinging ? "improve" : "unsafe",
      `${current.idleTimeout === 0 ? "0 (never)" : `${current.idleTimeout} s`} is not below the server's ${limit} s: the server closes idle connections first` +
        (pinging ? "; the validation ping catches them, at one round trip per checkout" : ""),
    );
  } else {
    review("idleTimeout", current.idleTimeout, "ok", `retires idle connections after ${current.idleTimeout} s, before the server's ${limit} s`);
  }

  // minDelayValidation: optimistic mode turns the checkout ping off. No pooled connection stays
  // idle longer than socketTimeout (an inactivity timer), so a threshold above it is never reached.
  if (optimistic) {
    const longestIdleMs = rec.socketTimeout > 0 ? rec.socketTimeout : retireMs;
    const noPing = longestIdleMs + 1000;
    const ok = current.minDelayValidation >= longestIdleMs;
    review(
      "minDelayValidation",
      ok ? current.minDelayValidation : noPing,
      "ok",
      ok
        ? "no validation ping on checkout"
        : `a connection idle more than ${current.minDelayValidation} ms is pinged before use (a round trip); no connection stays idle ${longestIdleMs} ms, so ${noPing} ms turns the ping off (resilience() re-runs what a dead connection breaks)`,
    );
  } else {
    review("minDelayValidation", current.minDelayValidation, "ok", "kept: validation ping on checkout (optimistic: false)");
  }

  // acquireTimeout: how long a caller waits when the server is down (the driver default is 10 s).
  if (current.acquireTimeout > acquireTarget) {
    review("acquireTimeout", acquireTarget, "improve", `a down server makes every caller wait ${current.acquireTimeout} ms before it learns anything`);
  } else {
    review("acquireTimeout", current.acquireTimeout, "ok", "bounded");
  }

  // connectTimeout: never above acquireTimeout (the driver clamps it anyway).
  if (current.connectTimeout > rec.acquireTimeout) {
    review("connectTimeout", rec.acquireTimeout, "improve", "above acquireTimeout");
  } else {
    review("connectTimeout", current.connectTimeout, "ok", "bounded");
  }

  const rank: Record<Verdict, number> = { ok: 0, improve: 1, unsafe: 2 };
  const verdict = reviews.reduce<Verdict>((worst, r) => (rank[r.verdict] > rank[worst] ? r.verdict : worst), "ok");
  const changed = Object.fromEntries(
    (Object.keys(rec) as SettingName[]).filter((k) => rec[k] !== current[k] || explicit.has(k)).map((k) => [k, rec[k]]),
  );

  const warnings: string[] = [];
  const parsed = typeof input === "string" ? parseDatabaseUrl(input) : undefined;
  if (driverQueryTimeout(parsed ? parsed.params.get("queryTimeout") : (input as { queryTimeout?: unknown }).queryTimeout, parsed !== undefined) > 0) {
    // mariadb's Connection.executeSessionTimeout drops the promise of its SET (3.4.5 to 3.5.4).
    warnings.push(
      "`queryTimeout` makes the driver send `SET max_statement_time` on every new connection, and leave its failure unhandled when the connection is reset then " +
        "(mariadb up to 3.5.4; under Node's default --unhandled-rejections=throw that ends the process): leave it unset, and bound statements on the server (max_statement_time) or with Prisma's transaction timeout",
    );
  }
  if (parsed) {
    const misread = prismaMisreads(input as string);
    if (misread) warnings.push(misread);
    for (const [key, value] of parsed.params) {
      if (key === "password" && value === "") warnings.push("`password=` is empty: the driver then connects without a password (the URL's own is ignored)");
      // Prisma 6's engine read these; the mariadb driver ignores them (TLS is `ssl=true` there).
      if (/^ssl./i.test(key)) warnings.push(`\`${key}\` is not a mariadb driver option and is ignored: TLS is on only with \`ssl=true\` (or \`ssl: {…}\` in a config object)`);
    }
  }
  const result: PoolReview = { retireAfter, margin, current, recommended: rec, settings: reviews, verdict, warnings };
  // `url` and `config` carry the password: non-enumerable, so logging or serialising the review
  // never prints it. `redactedUrl` is the one to print.
  const hidden = (key: "url" | "config", value: unknown) =>
    Object.defineProperty(result, key, { value, enumerable: false, writable: false, configurable: false });
  if (parsed) {
    for (const [k, v] of Object.entries(changed)) parsed.params.set(k, String(v));
    const url = formatDatabaseUrl(parsed);
    hidden("url", url);
    result.redactedUrl = redact(url);
  } else {
    hidden("config", { ...(input as object), ...changed });
  }
  return result;
}
