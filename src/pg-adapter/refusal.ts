// A server that answers and refuses this app's connections (wrong password, no access, unknown
// database): never an outage, never retried (src/core/health.ts: refuse()). Read from the SQLSTATE
// the server sent at connect, in any of the shapes it reaches the wrapper in.
import type { ConnectFailure } from "../core/errors.ts";

const REFUSALS: Record<string, ConnectFailure> = {
  "28P01": "auth",
  "28000": "access",
  "3D000": "unknown-database",
  "42501": "access",
};
const KINDS: Record<string, ConnectFailure> = {
  AuthenticationFailed: "auth",
  DatabaseAccessDenied: "access",
  DatabaseDoesNotExist: "unknown-database",
};

/** The refusal the error carries, if it is one (and the original server error as its cause). */
export function connectRefusal(error: unknown): { reason: ConnectFailure; cause: unknown } | undefined {
  let e: any = error;
  for (let depth = 0; depth < 6 && typeof e === "object" && e !== null; depth++) {
    const candidates = [e, e.meta?.driverAdapterError?.cause, e.cause];
    for (const c of candidates) {
      if (typeof c !== "object" || c === null) continue;
      const code = typeof c.severity === "string" ? c.code : c.originalCode;
      if (typeof code === "string" && REFUSALS[code]) return { reason: REFUSALS[code], cause: c };
      if (typeof c.kind === "string" && KINDS[c.kind]) return { reason: KINDS[c.kind], cause: c };
    }
    e = e.cause;
  }
  return undefined;
}
