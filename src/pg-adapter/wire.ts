// One statement of a transaction and the read of the transaction's own id in ONE round trip: a pg
// Submittable (node_modules/pg/lib/query.js) that writes, corked, Parse/Bind/Describe/Execute of the
// statement, then of `SELECT pg_current_xact_id_if_assigned()::text`, then a single Sync. Within one
// Sync group an error skips everything up to the Sync (the server does that), so the id read never
// runs after a failed statement. With `begin`, the group opens with an extended-protocol BEGIN: the
// statement can then never run outside the transaction (a failed BEGIN skips it too).
import { pgDriver } from "./driver.ts";

// With the id, the server's run: an id read before a crash can be handed out again after it
// (verify.ts), so the verifier must know which run gave it. A run starts when the postmaster starts,
// and again when it reinitialises after one backend crashed (the postmaster lives on; the shared
// statistics, bgwriter's `stats_reset` among them, start afresh). txid_* (PostgreSQL 10+, the id with
// its epoch, as xid8) rather than pg_current_xact_id_if_assigned(), which needs 13.
export const RUN_SQL = "extract(epoch FROM pg_postmaster_start_time())::text || '/' || coalesce(extract(epoch FROM (SELECT stats_reset FROM pg_stat_bgwriter))::text, '')";
export const XACT_ID_SQL = `SELECT txid_current_if_assigned()::text, ${RUN_SQL}`;


/** What one pipelined flight answered: the statement's result for adapter-pg, and the id (null: none yet). */
export interface WithId {
  result: unknown;
  xactId: string | null;
  /** The server's run when the id was read (RUN_SQL: start and reinit times, epoch seconds). */
  serverStart: string | null;
}

/** pg query config as adapter-pg's performIO builds it. */
export interface QueryConfig {
  name?: string;
  text: string;
  values?: unknown[];
  rowMode?: string;
  types?: unknown;
}

/** Sends `config` (with BEGIN first when `begin`) and the id read in one Sync group on `client`. */
/** `begin`: open the transaction in the same group (true: "BEGIN"; a string: that BEGIN text). */
export function queryWithId(client: { query(q: unknown): unknown }, config: QueryConfig, begin: boolean | string): Promise<WithId> {
  return new Promise((resolve, reject) => {
    const { Query, prepareValue } = pgDriver();
    const query = new Query({ ...config, callback: undefined });
    query.callback = (err: unknown, results: any) => {
      if (err) return reject(err);
      const list: any[] = Array.isArray(results) ? results : [results];
      const offset = begin ? 1 : 0;
      const idResult = list[offset + 1];
      const row = idResult?.rows?.[0];
      resolve({ result: list[offset], xactId: (row?.[0] as string | null | undefined) ?? null, serverStart: (row?.[1] as string | null | undefined) ?? null });
    };
    query.requiresPreparation = () => true;
    query.prepare = (connection: any) => {
      if (begin) unnamed(connection, begin === true ? "BEGIN" : begin, [], false, prepareValue);
      // The statement, as Query.prepare sends it (a named statement is parsed once per connection).
      if (!query.hasBeenParsed(connection)) {
        connection.parse({ text: query.text, name: query.name, types: query.types });
        if (query.name) connection.submittedNamedStatements[query.name] = query.text;
      }
      try {
        connection.bind({ portal: "", statement: query.name, values: query.values, binary: query.binary, valueMapper: prepareValue });
      } catch (err) {
        connection.close({ type: "S", name: query.name });
        connection.sync();
        query.handleError(err, connection);
        return;
      }
      connection.describe({ type: "P", name: "" });
      connection.execute({ portal: "" });
      unnamed(connection, XACT_ID_SQL, [], true, prepareValue);
      connection.sync();
    };
    client.query(query);
  });
}

function unnamed(connection: any, text: string, values: unknown[], describe: boolean, prepareValue: (v: unknown) => unknown) {
  connection.parse({ text, name: "", types: [] });
  connection.bind({ portal: "", statement: "", values, binary: false, valueMapper: prepareValue });
  if (describe) connection.describe({ type: "P", name: "" });
  connection.execute({ portal: "" });
}
