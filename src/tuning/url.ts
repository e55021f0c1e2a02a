// Connection strings: parse the pool settings out of one, put them back in, and print one without
// its password. Every URL this package prints or puts in an error goes through redact().

const SCHEMES = new Set(["mysql:", "mariadb:"]);

/** The URL with its password (and any password-like query parameter) replaced by `****`. */
export function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "****";
    for (const key of [...u.searchParams.keys()]) {
      if (/pass|secret|token|key$/i.test(key)) u.searchParams.set(key, "****");
    }
    return u.toString().replace(/%2A%2A%2A%2A/g, "****");
  } catch {
    // Not a URL we can parse: hide whatever sits between "//user:" and "@".
    return url.replace(/(\/\/[^:/@]*:)[^@]*@/, "$1****@");
  }
}

/** Parses a mysql:// or mariadb:// URL, or throws a TypeError that never shows the password. */
export function parseDatabaseUrl(url: string): URL {
  if (typeof url !== "string" || url.length === 0) throw new TypeError("expected a mysql:// or mariadb:// connection string");
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new TypeError(`not a valid connection string: ${redact(url)}`);
  }
  if (!SCHEMES.has(u.protocol)) {
    throw new TypeError(`expected a mysql:// or mariadb:// connection string, got ${u.protocol}// (${redact(url)})`);
  }
  if (!u.hostname) throw new TypeError(`the connection string has no host: ${redact(url)}`);
  return u;
}
