// The adapter's flight records (src/core/flight.ts): what had reached the server when a call
// failed, read from the error and the statement by the dialect's rules (src/mysql/).
import { tag, type FlightPhase, type FlightRecord } from "../core/flight.ts";
import { provesNotSent, serverAnswered } from "../mysql/classify.ts";
import { firstKeyword, isMultiStatement, isReadOnlySql } from "../mysql/sql.ts";

export function tagged(phase: FlightPhase, error: unknown, sql: string, context: RecordContext = {}): unknown {
  tag(error, makeRecord(phase, error, sql, firstKeyword(sql), context.readOnly ?? isReadOnlySql(sql), context));
  return error;
}

export interface RecordContext {
  threadId?: number;
  heldBack?: boolean;
  committedEarlier?: boolean;
  verification?: FlightRecord["verification"];
  duringOutage?: boolean;
  transactionEnded?: boolean;
  /** Overrides what the statement's text says: a COMMIT of a transaction that only read. */
  readOnly?: boolean;
  /** Overrides what the error says: an answer that does not tell what happened to the transaction. */
  answered?: boolean;
}

export function makeRecord(phase: FlightPhase, error: unknown, sql: string, statement: string, readOnly: boolean, context: RecordContext = {}): FlightRecord {
  const { threadId, heldBack, committedEarlier = false, verification, duringOutage, transactionEnded } = context;
  return Object.freeze({
    phase,
    statement,
    readOnly,
    notSent: heldBack === true || provesNotSent(error),
    threadId,
    heldBack,
    answered: context.answered ?? (serverAnswered(error) && !isMultiStatement(sql)),
    committedEarlier,
    verification,
    duringOutage: duringOutage || undefined,
    transactionEnded: transactionEnded || undefined,
  });
}
