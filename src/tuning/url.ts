// Connection strings, read the way the mariadb driver reads them, and printed without the password.
// Every URL this package parses goes through splitUrl(); every URL it prints goes through redact().
//
// The driver (lib/config/connection-options.js) matches
//   mariadb://[user[:password]@]host[:port]/database[?k=v&…]
// with a greedy password, so the credentials end at the last `@` before the host, and a password
// may hold raw `#`, `?`, `:` or `@`. It percent-decodes user, password, host, database and each
// query value; `#` is an ordinary character (no fragment). Passwords pasted unencoded are common,
// so a WHATWG `URL` (which cuts at `#`, `?` or `/`) would both misread and leak them. Unlike the
// driver's regex, this parser also takes a raw `/` in the password: whatever it hands the driver
// is re-encoded by formatDatabaseUrl().

const SCHEMES = new Set(["mysql:", "mariadb:"]);

/** A host (name, IPv4, or bracketed IPv6) and optional port, then the path, the query or the end. */
const HOST_PORT = /^(\[[0-9A-Fa-f:.]+\]|[\w.%-]+)(?::(\d*))?(?=[/?]|$)/;

/** Query parameters whose value is a secret (`password` overrides the URL's own in the driver). */
const SECRET_PARAM = /pass|pwd|secret|token|key$/i;

/** The raw (still percent-encoded) parts of a `scheme://…` string, or undefined if it has no host. */
interface RawParts {
  scheme: string;
  user?: string;
  password?: string;
  host: string;
  port?: string;
  /** Text after the host: `/database?query` (either part may be missing). */
  path: string;
}

function splitUrl(url: string): RawParts | undefined {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*:)\/\/(.*)$/s.exec(url);
  if (!m) return undefined;
  const [, scheme, rest] = m;
  // The credentials end at the last `@` that is followed by a host: the password may hold `@` too.
  let at = -1;
  for (let i = rest.lastIndexOf("@"); i >= 0; i = i === 0 ? -1 : rest.lastIndexOf("@", i - 1)) {
    if (HOST_PORT.test(rest.slice(i + 1))) {
      at = i;
      break;
    }
  }
  const after = rest.slice(at + 1);
  const h = HOST_PORT.exec(after);
  if (!h) return undefined;
  const parts: RawParts = { scheme, host: h[1], port: h[2] || undefined, path: after.slice(h[0].length) };
  if (at >= 0) {
    const userinfo = rest.slice(0, at);
    const colon = userinfo.indexOf(":");
    parts.user = colon < 0 ? userinfo : userinfo.slice(0, colon);
    if (colon >= 0) parts.password = userinfo.slice(colon + 1);
  }
  return parts;
}

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

/**
 * The URL with its password (and any password-like query parameter) replaced by `****`. A string
 * it cannot read is not shown at all (it may be nothing but a password).
 */
export function redact(url: string): string {
  const p = typeof url === "string" ? splitUrl(url) : undefined;
  if (!p) {
    const scheme = typeof url === "string" ? /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.exec(url)?.[0] : undefined;
    return `${scheme ?? ""}****`;
  }
  const userinfo = p.user === undefined ? "" : `${p.user}${p.password === undefined ? "" : ":****"}@`;
  const q = p.path.indexOf("?");
  const database = q < 0 ? p.path : p.path.slice(0, q);
  const query =
    q < 0
      ? ""
      : "?" +
        p.path
          .slice(q + 1)
          .split("&")
          .map((kv) => {
            const key = kv.includes("=") ? kv.slice(0, kv.indexOf("=")) : kv;
            return SECRET_PARAM.test(key) ? `${key}=****` : kv;
          })
          .join("&");
  return `${p.scheme}//${userinfo}${p.host}${p.port ? `:${p.port}` : ""}${database}${query}`;
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
  if (!p) throw new TypeError(`not a valid connection string (expected mysql://user:password@host:port/database): ${redact(url)}`);
  if (!SCHEMES.has(p.scheme.toLowerCase())) {
    throw new TypeError(`expected a mysql:// or mariadb:// connection string, got ${p.scheme}// (${redact(url)})`);
  }
  const q = p.path.indexOf("?");
  const db = (q < 0 ? p.path : p.path.slice(0, q)).replace(/^\//, "");
  const params = new Map<string, string>();
  for (const [key, value] of rawParams(p.path)) {
    if (value === "") params.delete(key); // the driver reads an empty value as "not set"
    else params.set(key, decode(value, SECRET_PARAM.test(key) ? "query parameter" : `\`${key}\` parameter`));
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

/**
 * Why `new PrismaMariaDb(url)` would connect with other credentials or another host than the driver
 * alone: it parses the URL with `new URL()` first, which cuts a raw `#`, `?` or `/` in the password.
 */
export function prismaMisreads(url: string): string | undefined {
  const ours = parseDatabaseUrl(url);
  let whatwg: URL | undefined;
  try {
    whatwg = new URL(url);
  } catch {
    // PrismaMariaDb then hands the string to the driver as it is, which only accepts mariadb://.
    if (ours.protocol === "mariadb:") return undefined;
  }
  const same =
    whatwg !== undefined &&
    safeDecode(whatwg.username) === (ours.user ?? "") &&
    safeDecode(whatwg.password) === (ours.password ?? "") &&
    whatwg.hostname.replace(/^\[|\]$/g, "") === ours.host;
  return same
    ? undefined
    : "PrismaMariaDb misreads this connection string (it parses it with new URL(), which stops at a raw `#`, `?` or `/` in the password): percent-encode user and password, as the recommended URL does";
}

function safeDecode(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}

/** Every form a secret may take in printed text: as given, percent-encoded, form-encoded, inside JSON. */
export function secretForms(secret: string | undefined): string[] {
  // Shorter ones would match everywhere; they are kept out of output by construction only.
  if (!secret || secret.length < 4) return [];
  const encoded = encodeURIComponent(secret);
  return [...new Set([secret, encoded, encoded.replace(/%20/g, "+"), JSON.stringify(secret).slice(1, -1)])];
}

/** Replaces every form of each secret in `text` with `****`: the last guard before anything is printed. */
export function scrub(text: string, secrets: Array<string | undefined>): string {
  const forms = secrets.flatMap(secretForms).sort((a, b) => b.length - a.length);
  for (const f of forms) text = text.split(f).join("****");
  return text;
}

/** Redacts every URL in free text (log lines): from `scheme://` to the last `@` on its line, then the host and path. */
export function redactUrlsIn(text: string): string {
  return text.replace(/[A-Za-z][A-Za-z0-9+.-]*:\/\/(?:[^\n]*@)?\S*/g, (u) => redact(u));
}
