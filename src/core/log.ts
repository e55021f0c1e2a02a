// DEBUG=prisma-extension-resilience (or DEBUG=*) prints what the package does: retries, outages,
// reconnects, ghost sessions killed. Messages are built here from codes and counts only: never a
// connection string, a statement's text or its values.
import { redactUrlsIn } from "./redact.ts";

const NAME = "prisma-extension-resilience";

function enabled(): boolean {
  const debug = typeof process !== "undefined" ? process.env?.DEBUG : undefined;
  if (!debug) return false;
  return debug.split(/[\s,]+/).some((p) => p === "*" || p === NAME || p === `${NAME}:*`);
}

const on = enabled();

export function log(message: string): void {
  // Messages carry no URL by design; should one slip in (a driver's text), its password does not.
  if (on) process.stderr.write(`${new Date().toISOString()} ${NAME} ${redactUrlsIn(message)}\n`);
}

/** A short description of an error for the log: its code(s), not its message. */
export function describeError(error: unknown): string {
  const e = error as any;
  const inner = e?.meta?.driverAdapterError?.cause ?? e?.cause;
  const parts = [e?.name, e?.code, typeof inner === "object" ? inner?.code ?? inner?.kind : undefined].filter(Boolean);
  return parts.join(" ") || typeof error;
}
