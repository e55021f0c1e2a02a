// Connection strings, read the way the mariadb driver reads them (the grammar: src/core/redact.ts),
// and printed without the password.
import { SECRET_PARAM, splitUrl, strayAt, redact } from "../core/redact.ts";

export { redact, redactUrlsIn, scrub, secretForms } from "../core/redact.ts";

const SCHEMES = new Set(["mysql:", "mariadb:"]);
/** Characters the driver's URL pattern cannot cross in the query (it then quotes the whole URL in its error). */
const CONTROL = /[\x00-\x1f\x7f\u2028\u2029]/;

/** The query's `key=value` pairs as the driver splits them (values still encoded). */
function rawParams(path: string): Array<[string, string]> {
  const q = path.indexOf("?");
  if (q < 0) return [];
  return path
    .slice(q + 1)
    .split("&")
    .filter((kv) => kv.indexOf("=") > 0)
    .map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]);
}

/** A mysql:// or mariadb:// connection string, decoded as the driver decodes it. */
export interface ConnectionString {
  protocol: "mysql:" | "mariadb:";
  user?: string;
  /** Not enumerable: logging or serialising the parsed URL does not print it. */
  readonly password?: string;
  /** Without brackets for IPv6. */
  host: string;
  port?: number;
  database?: string;
  /** Query parameters in order, values decoded; the driver lets the last of a repeated key win. */
  params: Map<string, string>;
}

function decode(text: string, what: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    // The driver throws a bare URIError here. Never echo the text: it may be the password.
    throw new TypeError(`the connection string's ${what} holds a \`%\` that is not a percent-escape (write a literal % as %25)`);
  }
}

/** Parses a mysql:// or mariadb:// URL the way the driver does, or throws a TypeError that never shows the password. */
export function parseDatabaseUrl(url: string): ConnectionString {
  if (typeof url !== "string" || url.length === 0) throw new TypeError("expected a mysql:// or mariadb:// connection string");
  const p = splitUrl(url);
  if (!p) throw new TypeError(`not a valid connection string (expected mysql://user:password@host:port/database, a \`/\` in the password written as %2F): ${redact(url)}`);
  if (!SCHEMES.has(p.scheme.toLowerCase())) {
    throw new TypeError(`expected a mysql:// or mariadb:// connection string, got ${p.scheme}// (${redact(url)})`);
  }
  const stray = strayAt(p.path);
  if (stray.at >= 0 && (p.user === undefined || stray.inQuery)) {
    throw new TypeError(
      `the connection string has an \`@\` after the host: write a \`/\` in the password as %2F (the driver reads a raw one as the end of the host), and an \`@\` in the database name or a parameter as %40 (${redact(url)})`,
    );
  }
  const q = p.path.indexOf("?");
  if (q >= 0 && CONTROL.test(p.path.slice(q))) {
    const key = rawParams(p.path).find(([k, v]) => CONTROL.test(k) || CONTROL.test(v))?.[0];
    const name = key && !CONTROL.test(key) ? `the \`${key}\` parameter` : "a query parameter";
    throw new TypeError(`${name} of the connection string holds a control character (a line break?): percent-encode it (${redact(url)})`);
  }
  const db = (q < 0 ? p.path : p.path.slice(0, q)).replace(/^\//, "");
  const params = new Map<string, string>();
  for (const [key, value] of rawParams(p.path)) {
    // An empty value is kept: the driver reads it as "not set", overriding (`password=`: no password).
    params.set(key, value === "" ? "" : decode(value, SECRET_PARAM.test(key) ? "query parameter" : `\`${key}\` parameter`));
  }
  const host = p.host.startsWith("[") ? p.host.slice(1, -1) : decode(p.host, "host");
  const parsed: ConnectionString = {
    protocol: p.scheme.toLowerCase() as ConnectionString["protocol"],
    user: p.user === undefined ? undefined : decode(p.user, "user name"),
    host,
    port: p.port === undefined ? undefined : parseInt(p.port, 10),
    database: db === "" ? undefined : decode(db, "database name"),
    params,
  };
  const password = p.password === undefined ? undefined : decode(p.password, "password");
  Object.defineProperty(parsed, "password", { value: password, enumerable: false });
  return parsed;
}

/**
 * A connection string from parsed parts, every part percent-encoded, so that both the driver and
 * `new URL()` (which `PrismaMariaDb` applies first) read it back as it was meant. The protocol
 * given overrides the parsed one (the driver itself only accepts `mariadb:`).
 */
export function formatDatabaseUrl(c: ConnectionString, protocol: string = c.protocol): string {
  const enc = encodeURIComponent;
  const userinfo =
    c.user === undefined && c.password === undefined ? "" : `${enc(c.user ?? "")}${c.password ? `:${enc(c.password)}` : ""}@`;
  const host = c.host.includes(":") ? (protocol === "mariadb:" ? enc(c.host) : `[${c.host}]`) : enc(c.host);
  const query = [...c.params].map(([k, v]) => `${k}=${enc(v)}`).join("&");
  return `${protocol}//${userinfo}${host}${c.port !== undefined ? `:${c.port}` : ""}/${c.database === undefined ? "" : enc(c.database)}${query ? `?${query}` : ""}`;
}

/** The connection string `new PrismaMariaDb(url)` hands the driver (its normalizeConfig), or undefined if `new URL()` fails. */
function asPrismaPassesIt(url: string): string | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return undefined;
  }
  // Setting a parameter re-serialises the whole query as a form: a space becomes `+`.
  if (!u.searchParams.has("prepareCacheLength")) u.searchParams.set("prepareCacheLength", "0");
  if (u.protocol === "mysql:") u.protocol = "mariadb:";
  if (u.hostname.startsWith("[") && u.hostname.endsWith("]")) u.hostname = encodeURIComponent(u.hostname.slice(1, -1));
  return u.toString();
}

/**
 * Why `new PrismaMariaDb(url)` would connect with other credentials, host, database or options than
 * the driver reading `url` alone: it parses it with `new URL()` first (which cuts a raw `#`, `?` or
 * `/` in the password and a `#` anywhere) and re-encodes the query (a space reaches the driver as `+`).
 */
export function prismaMisreads(url: string): string | undefined {
  const ours = parseDatabaseUrl(url);
  const passed = asPrismaPassesIt(url);
  // Unreadable by new URL(): PrismaMariaDb hands the string to the driver as it is (mariadb:// only).
  if (passed === undefined && ours.protocol === "mariadb:") return undefined;
  let theirs: ConnectionString | undefined;
  try {
    theirs = passed === undefined ? undefined : parseDatabaseUrl(passed);
  } catch {}
  const prefix = "PrismaMariaDb misreads this connection string";
  if (!theirs) return `${prefix} (it parses it with new URL(), which stops at a raw \`#\`, \`?\` or \`/\` in the password): percent-encode user and password, as the recommended URL does`;
  for (const part of ["user", "password", "host", "port", "database"] as const) {
    if (theirs[part] !== ours[part]) {
      return `${prefix}: it reads another ${part} (new URL() stops at a raw \`#\`, \`?\` or \`/\`): percent-encode user, password and database, as the recommended URL does`;
    }
  }
  for (const key of new Set([...ours.params.keys(), ...theirs.params.keys()])) {
    if (key === "prepareCacheLength" || theirs.params.get(key) === ours.params.get(key)) continue;
    return /[\s+]/.test(ours.params.get(key) ?? "")
      ? `${prefix}: the \`${key}\` parameter holds a space, and PrismaMariaDb re-encodes the query so that the driver receives \`+\` instead; add \`prepareCacheLength=0\` to the URL (then it leaves the query as it is)`
      : `${prefix}: the driver receives another \`${key}\` parameter (new URL() ends the URL at a \`#\`): write \`#\` as %23`;
  }
  return undefined;
}

/** The password and every password-like query value of a connection string (none if it cannot be read). */
export function secretsIn(url: string): string[] {
  try {
    const c = parseDatabaseUrl(url);
    return [c.password, ...[...c.params].filter(([k]) => SECRET_PARAM.test(k)).map(([, v]) => v)].filter((s): s is string => !!s);
  } catch {
    return [];
  }
}

/** The connection string of these options, with the password as ****. */
export function redactedUrl(o: Record<string, any> | undefined): string {
  if (!o) return "mysql://(unknown)";
  const user = o.user ? `${encodeURIComponent(String(o.user))}:****@` : "";
  const host = o.socketPath ? "localhost" : `${o.host ?? "localhost"}:${o.port ?? 3306}`;
  const query = o.socketPath ? `?socketPath=${encodeURIComponent(String(o.socketPath))}` : "";
  return `mysql://${user}${host}/${o.database ?? ""}${query}`;
}
