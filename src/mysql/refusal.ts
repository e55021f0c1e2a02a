// A server's refusal of a connection (wrong password, no access, unknown database) told apart from
// a server that is not there: what a failed connect attempt means (see src/core/health.ts).
import { errorFacts, headerOf } from "./classify.ts";
import type { ConnectFailure } from "../core/errors.ts";
import type { ProbeResult } from "../core/health.ts";
import { ACCESS_CODES, AUTH_CODES, HOST_BLOCKED, UNKNOWN_DB_CODES } from "./codes.ts";

// No access: the account's (see codes.ts), or this host blocked for its aborted connects.
const ACCESS_REFUSED = new Set([...ACCESS_CODES, HOST_BLOCKED]);
const ACCESS_KINDS: Record<string, ConnectFailure> = {
  AuthenticationFailed: "auth",
  DatabaseAccessDenied: "access",
  DatabaseDoesNotExist: "unknown-database",
};

// A connection refused for a connection count: too many connections (1040), the account's
// max_user_connections (1203) or MAX_USER_CONNECTIONS / hourly connection quota (1226).
const CONNECTION_LIMIT_CODES = new Set([1040, 1203, 1226]);

/** The refusal an error carries at any depth (wrong password, no access, unknown database), if any. */
export function refusalOf(error: unknown): { reason: ConnectFailure; cause: unknown } | undefined {
  const seen = new Set<unknown>();
  const visit = (e: any, depth: number): { reason: ConnectFailure; cause: unknown } | undefined => {
    if (depth > 6 || e === null || e === undefined || seen.has(e)) return undefined;
    if (typeof e === "string") {
      // The driver adapter keeps a pool timeout's cause only as text: its error number is read from
      // the driver's header (no: NNNN) only, never from another number in it (conn:NNNN is a thread id).
      const { errno } = headerOf(e);
      const code = errno !== undefined ? errno : /access denied/i.test(e) ? 1045 : /unknown database/i.test(e) ? 1049 : undefined;
      const reason = code === undefined ? undefined : AUTH_CODES.has(code) ? "auth" : ACCESS_REFUSED.has(code) ? "access" : UNKNOWN_DB_CODES.has(code) ? "unknown-database" : undefined;
      return reason ? { reason, cause: e } : undefined;
    }
    if (typeof e !== "object") return undefined;
    seen.add(e);
    if (typeof e.kind === "string" && ACCESS_KINDS[e.kind]) return { reason: ACCESS_KINDS[e.kind], cause: e };
    const errno = typeof e.errno === "number" ? e.errno : typeof e.kind === "string" && typeof e.code === "number" ? e.code : undefined;
    if (errno !== undefined) {
      if (AUTH_CODES.has(errno)) return { reason: "auth", cause: e };
      if (ACCESS_REFUSED.has(errno)) return { reason: "access", cause: e };
      if (UNKNOWN_DB_CODES.has(errno)) return { reason: "unknown-database", cause: e };
    }
    return visit(e.meta?.driverAdapterError, depth + 1) ?? visit(e.cause, depth + 1);
  };
  return visit(error, 0);
}

export function failureOf(e: any): ProbeResult {
  const refusal = refusalOf(e);
  if (refusal) return { ok: false, reason: refusal.reason === "auth" ? "authentication failed" : refusal.reason === "access" ? "access denied" : "unknown database", refusal: refusal.reason, error: e };
  const code = e?.code ?? e?.cause?.code;
  if (code === "ECONNREFUSED" || code === "ENOENT") return { ok: false, reason: "connection refused", error: e };
  if (e?.errno === 45012 || code === "ETIMEDOUT") return { ok: false, reason: "no answer", error: e };
  // Too many connections, the server's or this account's (1226: MAX_USER_CONNECTIONS, all of them
  // the app's pool): the server is there and answering.
  if (CONNECTION_LIMIT_CODES.has(e?.errno)) return { ok: true };
  return { ok: false, reason: typeof code === "string" ? code : "connection lost", error: e };
}

// Pool errors that mean "no connection could be made": their cause says why.
const POOL_CONNECT_ERRORS = new Set([45028, 45060, 45061]);

/**
 * A refusal behind a call's error: only where the error is about making a connection (a pool
 * timeout, the pool failing to connect, or the driver adapter's AuthenticationFailed). A statement's
 * own "access denied" (1044, 1227 …) or "unknown database" (`USE x`) is the statement's error, not
 * a refusal of the app's connections.
 */
export function connectRefusal(error: unknown) {
  const f = errorFacts(error);
  if (f.kind === "AuthenticationFailed" || (f.errno !== undefined && POOL_CONNECT_ERRORS.has(f.errno))) return refusalOf(error);
  return undefined;
}
