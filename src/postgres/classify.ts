// STUB (pg-adapter branch): PostgreSQL error rules, until the pg-rules branch's file replaces it.
import type { ErrorClass } from "../core/facts.ts";

const LOST_CODES = new Set(["57P01", "57P02", "57P05", "25P03", "08000", "08003", "08006", "08007", "ConnectionClosed", "SocketTimeout", "ECONNRESET", "EPIPE", "P1017"]);
const UNAVAILABLE_CODES = new Set(["57P03", "53300", "DatabaseNotReachable", "TooManyConnections", "ECONNREFUSED", "ENOTFOUND", "P1001", "EHOSTUNREACH"]);
const CONFLICT_CODES = new Set(["40001", "40P01", "TransactionWriteConflict", "P2034"]);
const LOST_TEXT = /Connection terminated|not queryable|Client was closed|terminating connection|socket hang up|ECONNRESET|EPIPE/i;

function* chain(error: unknown): Generator<any> {
  let e: any = error;
  for (let d = 0; d < 6 && typeof e === "object" && e !== null; d++) {
    yield e;
    const dae = e.meta?.driverAdapterError;
    if (dae) yield dae;
    if (dae?.cause) yield dae.cause;
    e = e.cause;
  }
}
function codes(error: unknown): string[] {
  const out: string[] = [];
  for (const e of chain(error)) {
    for (const v of [e.code, e.originalCode, e.kind]) if (typeof v === "string") out.push(v);
  }
  return out;
}
export function classify(error: unknown): ErrorClass {
  const cs = codes(error);
  if (cs.some((c) => CONFLICT_CODES.has(c))) return "conflict";
  if (cs.some((c) => UNAVAILABLE_CODES.has(c)) || (error as any)?.name === "ServerDownError") return "unavailable";
  if (cs.some((c) => LOST_CODES.has(c))) return "connection-lost";
  for (const e of chain(error)) if (typeof e.message === "string" && LOST_TEXT.test(e.message)) return "connection-lost";
  if (cs.includes("P2028")) return "unavailable";
  return "fatal";
}
export function provesNotSent(error: unknown): boolean {
  const cs = codes(error);
  if (cs.some((c) => c === "ECONNREFUSED" || c === "ENOTFOUND" || c === "DatabaseNotReachable" || c === "P1001" || c === "57P03" || c === "53300")) return true;
  for (const e of chain(error)) {
    if (e.name === "ServerDownError" || e.name === "ConnectFailedError") return true;
    if (typeof e.message === "string" && /is not queryable|timeout exceeded when trying to connect/.test(e.message)) return true;
  }
  return false;
}
export function serverAnswered(error: unknown): boolean {
  for (const e of chain(error)) {
    const code = e.originalCode ?? (typeof e.severity === "string" ? e.code : undefined) ?? (e.kind === "postgres" ? e.code : undefined);
    if (typeof code === "string" && /^[0-9A-Z]{5}$/.test(code)) return !/^(08|57P)/.test(code) && code !== "25P03";
    if (e.kind === "TransactionWriteConflict") return true;
  }
  return false;
}
export function isTransactionStartTimeout(error: unknown): boolean {
  return codes(error).includes("P2028");
}
export function unavailableReason(error: unknown): string {
  const cs = codes(error);
  if (cs.includes("57P03")) return "the database system is starting up";
  if (cs.includes("53300") || cs.includes("TooManyConnections")) return "too many connections";
  if (cs.includes("P2028")) return "no connection in time to start a transaction";
  return "server not reachable";
}
