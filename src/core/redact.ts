// Never a secret in printed text: connection strings printed without the password, and every URL
// in free text (log lines) redacted. Every URL this package parses goes through splitUrl() (also
// src/mysql/url.ts); every URL it prints goes through redact().
//
// The driver (lib/config/connection-options.js) matches
//   mariadb://[user[:password]@]host[:port]/database[?k=v&…]
// with a password that holds no `/`: the credentials end at the last `@` before the first `/`, and a
// password may hold raw `#`, `?`, `:` or `@`. An `@` after that `/` belongs to the database name or
// a query value. It percent-decodes user, password, host, database and each query value; `#` is an
// ordinary character (no fragment). A raw `/` in the password makes the driver read part of the
// password as host or database, so parseDatabaseUrl() (src/mysql/url.ts) refuses what looks like one
// (write %2F).

export const SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*:)\/\//;

/** A host (name, IPv4, or bracketed IPv6) and optional port, then the path, the query or the end. */
const HOST_PORT = /^(\[[0-9A-Fa-f:.]+\]|[\w.%-]+)(?::(\d*))?(?=[/?]|$)/;

/** Query parameters whose value is a secret (`password` overrides the URL's own in the driver). */
export const SECRET_PARAM = /pass|pwd|secret|token|credential|key$/i;

/** The raw (still percent-encoded) parts of a `scheme://…` string, or undefined if it has no host. */
export interface RawParts {
  scheme: string;
  user?: string;
  password?: string;
  host: string;
  port?: string;
  /** Text after the host: `/database?query` (either part may be missing). */
  path: string;
}

export function splitUrl(url: string): RawParts | undefined {
  const m = SCHEME.exec(url);
  if (!m) return undefined;
  const rest = url.slice(m[0].length);
  // As the driver: the credentials end at the last `@` before the first `/`.
  const slash = rest.indexOf("/");
  const at = (slash < 0 ? rest : rest.slice(0, slash)).lastIndexOf("@");
  const after = rest.slice(at + 1);
  const h = HOST_PORT.exec(after);
  if (!h) return undefined;
  const parts: RawParts = { scheme: m[1], host: h[1], port: h[2] || undefined, path: after.slice(h[0].length) };
  if (at >= 0) {
    const userinfo = rest.slice(0, at);
    const colon = userinfo.indexOf(":");
    parts.user = colon < 0 ? userinfo : userinfo.slice(0, colon);
    if (colon >= 0) parts.password = userinfo.slice(colon + 1);
  }
  return parts;
}

/**
 * Where in `path` the last `@` is that could end credentials holding a raw `/` (one in the database
 * name, or in a query piece without `=`), or -1. `inQuery` says it is in the query.
 */
export function strayAt(path: string): { at: number; inQuery: boolean } {
  const q = path.indexOf("?");
  let at = (q < 0 ? path : path.slice(0, q)).lastIndexOf("@");
  let inQuery = false;
  if (q >= 0) {
    let pos = q + 1;
    for (const piece of path.slice(q + 1).split("&")) {
      if (!piece.includes("=") && piece.includes("@")) [at, inQuery] = [pos + piece.lastIndexOf("@"), true];
      pos += piece.length + 1;
    }
  }
  return { at, inQuery };
}

/**
 * Masks the value of every password-like `?key=` or `&key=` in `text`, up to the next `&` (with
 * `lineEnd`, for free text: also a `key=` after a space, masked up to the end of the line or `&`),
 * wherever it stands, before any URL is split.
 */
function maskSecretParams(text: string, lineEnd = false): string {
  let out = "";
  let last = 0;
  // In free text a `key=` may also start a line or follow a space.
  for (const m of text.matchAll(lineEnd ? /(?:^|[?&\s])([^=&?\s]*)=/gm : /[?&]([^=&?]*)=/g)) {
    if (m.index! < last || !SECRET_PARAM.test(m[1])) continue;
    const from = m.index! + m[0].length;
    const length = text.slice(from).search(lineEnd ? /[&\r\n\u2028\u2029]/ : /&/);
    out += text.slice(last, from) + "****";
    last = length < 0 ? text.length : from + length;
  }
  return out + text.slice(last);
}

/**
 * The URL with its password (and any password-like query parameter) replaced by `****`. A string
 * it cannot read shows as `scheme://****` (it may be nothing but a password); what may be a password
 * holding a raw `/` (an `@` after the host) is masked up to that `@`.
 */
export function redact(url: string): string {
  if (typeof url !== "string") return "****";
  const masked = maskSecretParams(url);
  const scheme = SCHEME.exec(masked)?.[1];
  const p = splitUrl(masked);
  const tail = (text: string) => redact(`${scheme}//${text}`).slice(scheme!.length + 2);
  if (!p) {
    // Perhaps a raw `/` in the password: everything up to the last `@` that a host follows is masked.
    const rest = scheme ? masked.slice(scheme.length + 2) : "";
    for (let at = rest.lastIndexOf("@"); at >= 0; at = at === 0 ? -1 : rest.lastIndexOf("@", at - 1)) {
      if (splitUrl(`${scheme}//${rest.slice(at + 1)}`)) return `${scheme}//****@${tail(rest.slice(at + 1))}`;
    }
    return `${scheme ? `${scheme}//` : ""}****`;
  }
  const stray = strayAt(p.path).at;
  if (stray >= 0) return `${p.scheme}//****@${tail(p.path.slice(stray + 1))}`;
  const userinfo =
    p.user === undefined ? "" : /\s/.test(p.user) ? "****@" : `${p.user}${p.password === undefined ? "" : ":****"}@`;
  return `${p.scheme}//${userinfo}${p.host}${p.port ? `:${p.port}` : ""}${p.path}`;
}

/** Every form a secret may take in printed text: as given, percent-encoded, form-encoded, inside JSON. */
export function secretForms(secret: string | undefined): string[] {
  if (!secret) return [];
  const encoded = encodeURIComponent(secret);
  return [...new Set([secret, encoded, encoded.replace(/%20/g, "+"), JSON.stringify(secret).slice(1, -1)])];
}

/**
 * Replaces every form of each secret in `text` with `****`: the last guard before anything is
 * printed. A secret shorter than 4 characters is replaced where it stands alone (`pw` in `u:pw@h`,
 * not in `pwd`), so that the rest of the text stays readable.
 */
export function scrub(text: string, secrets: Array<string | undefined>): string {
  const forms = [...new Set(secrets.flatMap(secretForms))].sort((a, b) => b.length - a.length);
  for (const f of forms) {
    const escaped = f.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    text = text.replace(new RegExp(f.length >= 4 ? escaped : `(?<![A-Za-z0-9])${escaped}(?![A-Za-z0-9])`, "g"), "****");
  }
  return text;
}

/**
 * Redacts every URL in free text (log lines): password-like query values up to the next `&` or the
 * end of the line, then each URL from `scheme://` through the last `@` before its first `/` (which
 * may cross spaces and line breaks, as a password can), the host and the path.
 */
export function redactUrlsIn(text: string): string {
  return maskSecretParams(text, true).replace(/[A-Za-z][A-Za-z0-9+.-]*:\/\/(?:[^/]*@)?\S*/g, (u) => redact(u));
}
