// The PostgreSQL wrapper's flight records (src/core/flight.ts): what had reached the server when a
// call failed, read from the error and the statement by PostgreSQL's rules (src/postgres/).
import { tag, type FlightPhase, type FlightRecord } from "../core/flight.ts";
import { provesNotSent, serverAnswered } from "../postgres/classify.ts";
import { firstKeyword, isMultiStatement, isReadOnlySql } from "../postgres/sql.ts";

export interface PgRecordContext {
  heldBack?: boolean;
  notSent?: boolean;
  committedEarlier?: boolean;
  verification?: FlightRecord["verification"];
  duringOutage?: boolean;
  /** Overrides what the statement's text says: a COMMIT of a transaction that wrote nothing. */
  readOnly?: boolean;
  /** Overrides what the error says. */
  answered?: boolean;
  /** The backend's pid (shown as the record's threadId). */
  pid?: number;
}

/** Attaches the record for a failure at `phase` of `sql` to `error`, and returns the error. */
export function tagged(phase: FlightPhase, error: unknown, sql: string, context: PgRecordContext = {}): unknown {
  const record: FlightRecord = Object.freeze({
    phase,
    statement: firstKeyword(sql),
    readOnly: context.readOnly ?? isReadOnlySql(sql),
    notSent: context.heldBack === true || context.notSent === true || provesNotSent(error),
    threadId: typeof context.pid === "number" ? context.pid : undefined,
    heldBack: context.heldBack,
    answered: context.answered ?? (serverAnswered(error) && !isMultiStatement(sql)),
    committedEarlier: context.committedEarlier ?? false,
    verification: context.verification,
    duringOutage: context.duringOutage || undefined,
  });
  tag(error, record);
  return error;
}
