// A verified write outside a transaction, in one round trip: BEGIN, a fence, the statement, its
// counted mark and the COMMIT go in one flight (transaction.ts executeAndCommit), where bare Prisma
// sends the statement alone. Nothing is awaited between them.
//
// Why the fence: a BEGIN the server refuses (an error answered to it) does not stop the commands
// behind it. The statement would then commit on its own, its mark (written only inside a
// transaction) would not, and after a lost reply the verification would read "not committed": a
// duplicate on re-run. The fence, right behind BEGIN, ends its own session when no transaction is
// open, so the statement never runs outside one (the server runs a connection's commands in order;
// measured on MariaDB 10.11: the fence answers 1927 and the connection closes). What is left: BEGIN
// refused AND the fence itself failing (another session's KILL QUERY on each of them) AND every
// reply lost; docs/exactly-once.md says so.
//
// How: @prisma/adapter-mariadb's startTransaction() takes a pool connection and awaits its BEGIN
// (node_modules/@prisma/adapter-mariadb/dist/index.mjs). It is called here with a pool whose
// connection sends BEGIN and the fence at once and answers the adapter at once; their real replies
// are kept for the flight. Any other first command (an isolation level, a changed adapter) goes as
// it is, and the write takes the path with BEGIN awaited.
import type { AdapterLike, TransactionLike } from "../core/driver-adapter.ts";
import { classify, errorFacts, provesNotSent, serverAnswered } from "../mysql/classify.ts";
import { transactionEnded } from "../mysql/adapter-errors.ts";
import { refusedMarkRolledBack } from "../mysql/marks.ts";

/** MariaDB 10.1.1+ (anonymous compound statement): ends the session unless a transaction is open. */
export const FENCE = "BEGIN NOT ATOMIC IF @@in_transaction = 0 THEN KILL CONNECTION_ID(); END IF; END";
/** ER_CONNECTION_KILLED: what the fence answers when it ended its own session. */
export const FENCE_FIRED = 1927;

/** What a server that cannot run the fence answers it: a syntax error (1064, 1149), not supported (1235), not allowed here (1314). (Under `sql_mode=ORACLE` the fence runs; BEGIN is the syntax error there.) */
export const FENCE_UNSUPPORTED = new Set([1064, 1149, 1235, 1314]);

export type Reply = { ok: unknown } | { error: unknown };
const settle = (p: Promise<unknown>, onError?: (error: unknown) => void): Promise<Reply> =>
  p.then(
    (ok) => ({ ok }),
    (error: unknown) => (onError?.(error), { error }),
  );

const SHIM_UNFIT = new WeakSet<object>();

/** Connections their own fence closed (keyed by `info`, shared with the promise API). */
const FENCE_CLOSED = new WeakSet<object>();
const fenceKey = (conn: any): object => conn?.info ?? conn;

/** The connection closed because its own fence fired (its 1927, then the socket's close): not a fault. */
export function closedByOwnFence(conn: unknown): boolean {
  return typeof conn === "object" && conn !== null && FENCE_CLOSED.has(fenceKey(conn));
}

/** The flight's first two commands, sent without waiting: their replies, and the mark key chosen for the flight. */
export interface Opening {
  key: string;
  begun: Promise<Reply>;
  fenced: Promise<Reply>;
}

/**
 * Starts a transaction on `adapter` (adapter-mariadb) whose BEGIN and fence are sent without
 * waiting, when `keyFor` gives the connection a mark key (it may go in one flight); otherwise as
 * usual. The OK the adapter is given for BEGIN is not the server's: the caller must read `opening`.
 */
export async function startPipelined(adapter: AdapterLike, keyFor: (conn: any) => string | undefined): Promise<{ tx: TransactionLike; opening?: Opening }> {
  const pool = (adapter as any).client;
  if (typeof pool?.getConnection !== "function" || SHIM_UNFIT.has(adapter)) return { tx: await adapter.startTransaction() };
  let opening: Opening | undefined;
  const getConnection = () =>
    pool.getConnection().then((conn: any) => {
      const key = keyFor(conn);
      if (key === undefined || typeof conn?.query !== "function") return conn;
      const own = Object.prototype.hasOwnProperty.call(conn, "query");
      const query = conn.query;
      const restore = () => (own ? (conn.query = query) : delete conn.query);
      conn.query = function (cmd: any, ...rest: unknown[]) {
        restore();
        if (cmd?.sql !== "BEGIN" || Object.keys(cmd).length !== 1 || rest.length > 0) return query.call(conn, cmd, ...rest);
        // Both are queued on the socket, in this order, before this returns (as strings: the driver
        // copies its connection options for a command given as an object).
        // It fired only behind a refused BEGIN; a 1927 behind an open transaction is another
        // session's KILL. Flags set where each one fails: the normal path costs nothing.
        let beginRefused = false;
        let fenceFired = false;
        const closedByFence = () => beginRefused && fenceFired && FENCE_CLOSED.add(fenceKey(conn));
        const begun = settle(query.call(conn, "BEGIN"), () => ((beginRefused = true), closedByFence()));
        const fenced = settle(query.call(conn, FENCE), (error) => ((fenceFired = errorFacts(error).errno === FENCE_FIRED), closedByFence()));
        opening = { key, begun, fenced };
        return Promise.resolve({ affectedRows: 0 });
      };
      return conn;
    });
  let acquired = false;
  const shim = Object.create(adapter, { client: { value: { getConnection: () => ((acquired = true), getConnection()) } } });
  try {
    return { tx: await adapter.startTransaction.call(shim), opening };
  } catch (error) {
    // Failed before it asked for a connection: an adapter this shim does not fit (not a driver
    // error). The usual start, and no shim from now on.
    if (acquired) throw error;
    SHIM_UNFIT.add(adapter);
    return { tx: await adapter.startTransaction() };
  }
}

/** What became of a flight whose BEGIN the server refused: BEGIN's answer, and one of the outcomes. */
export type RefusedBeginOutcome = { begin: unknown } & ({ refused: unknown } | { n: number } | { answered: unknown } | { unknown: unknown });

/**
 * Undefined (the usual path) when BEGIN opened the transaction, when its reply was lost (then every
 * reply after it is lost, and the mark decides), or when the mark was written (a transaction was
 * open after all: `autocommit=0` opens one at the statement). BEGIN answered an error:
 * - the fence ended the session before the statement ran (its 1927, or its reply lost behind
 *   BEGIN's answer) and nothing answered after it: BEGIN's answer is the outcome (`refused`);
 * - the fence failed too, and the statement ran (the session's autocommit is not known here): on
 *   its own, or in a transaction `autocommit=0` opened. Acknowledged (`n`) when the mark found no
 *   transaction (it committed alone; not on Galera, where a brute-force abort ends one silently),
 *   or when the mark was refused alone and the COMMIT answered OK (committed either way; not on
 *   Galera either). Its own
 *   error when answered or unsent. Else unknown: a deadlock answered to the mark rolled back what
 *   `autocommit=0` opened, and a failed COMMIT decides only there.
 * A fence refused as a statement the server cannot run switches the path off (`fenceFailed`).
 */
export function afterRefusedBegin(
  [begun, fenced]: [Reply, Reply],
  statement: { n: number } | { error: unknown },
  mark: { affectedRows?: number } | { error: unknown },
  commit: true | unknown,
  handler: { fenceFailed?(error: unknown): void; silentAbortPossible?: boolean; rollbackOnTimeout?: boolean },
): RefusedBeginOutcome | undefined {
  const fenceErrno = "error" in fenced ? errorFacts(fenced.error).errno : undefined;
  if (fenceErrno !== undefined && FENCE_UNSUPPORTED.has(fenceErrno)) handler.fenceFailed?.((fenced as { error: unknown }).error);
  if ("ok" in begun || !serverAnswered(begun.error) || "ok" in fenced) return undefined;
  if ("affectedRows" in mark && (mark.affectedRows ?? 0) > 0) return undefined;
  const begin = begun.error;
  const statementLost = "error" in statement && classify(statement.error) === "connection-lost" && !serverAnswered(statement.error);
  if (statementLost && (fenceErrno === FENCE_FIRED || !serverAnswered(fenced.error))) return { begin, refused: begin };
  if ("n" in statement && "affectedRows" in mark && !handler.silentAbortPossible) return { begin, n: statement.n };
  if ("n" in statement && "error" in mark && serverAnswered(mark.error) && commit === true && !handler.silentAbortPossible && refusedMarkRolledBack(mark.error, handler.rollbackOnTimeout) === "mark") {
    return { begin, n: statement.n };
  }
  if ("error" in statement && (serverAnswered(statement.error) || provesNotSent(statement.error))) return { begin, answered: statement.error };
  return { begin, unknown: "error" in statement ? statement.error : "error" in mark ? mark.error : transactionEnded() };
}
