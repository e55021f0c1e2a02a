// What a PostgreSQL error says about itself: the common facts (src/core/facts.ts) plus the
// SQLSTATEs that node-postgres and @prisma/adapter-pg carry as strings, which the common reader
// does not collect (it reads MySQL's numeric codes). No judgement here: classify.ts judges.
import { errorFacts, isObject, type ErrorFacts } from "../core/facts.ts";

export interface PgFacts extends ErrorFacts {
  /** Every layer's SQLSTATE, outermost first ("57P01", "40001" ...). */
  sqlStates: string[];
  /** The first of them. */
  state?: string;
  /** The severity the server gave the first of them (ERROR, FATAL, PANIC), when a layer kept it. */
  severity?: string;
  /** Each message split into lines, trimmed: Prisma puts its invocation text before the driver's. */
  lines: string[];
}

const SQLSTATE = /^[0-9A-Z]{5}$/;
const MAX_DEPTH = 6;

/**
 * The SQLSTATE of one layer: a pg DatabaseError (`code` + `severity`), adapter-pg's mapped error
 * (`kind: "postgres"` with `code`, or any kind with `originalCode`). A Prisma error's own `code`
 * (P2010) is never one: it has neither `severity` nor `kind`.
 */
function stateOf(e: Record<string, any>): string | undefined {
  if (typeof e.originalCode === "string" && SQLSTATE.test(e.originalCode)) return e.originalCode;
  if (typeof e.code === "string" && SQLSTATE.test(e.code) && (e.kind === "postgres" || typeof e.severity === "string")) return e.code;
  return undefined;
}

/** Collects the facts of an error and of everything it wraps (`meta.driverAdapterError`, `cause`). */
export function pgFacts(error: unknown): PgFacts {
  const sqlStates: string[] = [];
  let severity: string | undefined;
  const seen = new Set<unknown>();
  const visit = (e: unknown, depth: number) => {
    if (depth > MAX_DEPTH || !isObject(e) || seen.has(e)) return;
    seen.add(e);
    const state = stateOf(e);
    if (state && !sqlStates.includes(state)) sqlStates.push(state);
    if (state && state === sqlStates[0] && typeof e.severity === "string" && e.severity !== "N/A") severity ??= e.severity;
    if (isObject(e.meta)) visit(e.meta.driverAdapterError, depth + 1);
    visit(e.cause, depth + 1);
  };
  visit(error, 0);
  const base = errorFacts(error);
  // P0001..P0004 are PL/pgSQL SQLSTATEs that look like Prisma codes: never take them for one.
  if (base.prismaCode !== undefined && base.prismaCode.startsWith("P0")) base.prismaCode = undefined;
  const lines = base.messages.flatMap((m) => m.split("\n")).map((l) => l.trim()).filter(Boolean);
  return { ...base, sqlStates, state: sqlStates[0], severity, lines };
}
