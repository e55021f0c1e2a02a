// Exactly-once without a mark table: after a COMMIT whose reply was lost, the transaction's own id
// (read before COMMIT was sent: wire.ts) is looked up on a fresh side connection with
// pg_xact_status(): `committed` or `aborted` decide; `in progress` means the old backend still
// holds it (a silent drop): it is ended only when provably ours (its pid is the one the server gave
// our connection AND it runs our transaction id: never a foreign session; behind a transaction-mode
// pooler the pid never matches, so nothing is ended and the backend is waited for); NULL: unknown.
//
// Across a crash an id means less: ids handed out but never written to the WAL are handed out again
// after crash recovery (a crash of the server, or of one backend: the postmaster then reinitialises),
// so pg_xact_status() may answer for another transaction. When the server's run has changed since the
// id was read (wire.ts RUN_SQL), "aborted" and "in the future" mean ours did not commit; "in progress"
// is waited for (never ended: it may be someone else's); "committed" is believed only for an id below
// the first id of the new run (the next id of the checkpoint that ended recovery: ids below it were
// on disk before the crash, so they are ours), and an id at or above it was not on disk, so it did not
// commit. When that checkpoint cannot be told, unknown. Only a primary answers (never a standby, whose
// ids lag).
import { setTimeout as sleep } from "node:timers/promises";
import { describeError, log } from "../core/log.ts";
import type { PgSide, SideClient } from "./side.ts";
import { RUN_SQL } from "./wire.ts";

export type PgCommitVerdict = "committed" | "not-committed" | "unknown";

/** The transaction as the server knows it: its id (xid8, epoch included), and its backend's pid. */
export interface XactIdentity {
  xactId: string;
  pid?: number;
  /** pg_postmaster_start_time() (epoch seconds as text) when the id was read. */
  serverStart?: string;
}

/** The first id a run of the server hands out, per server start (undefined: it cannot be told). */
const firstIdOfRun = new Map<string, bigint | undefined>();
// A checkpoint this close to the server's start, with nothing written during it, is the one that
// ended crash recovery (or the shutdown checkpoint before a clean restart): its next id is exact.
// A later one (timed checkpoints come checkpoint_timeout, at least 30 s, apart) counts ids of the new run.
const RECOVERY_CHECKPOINT_WINDOW_S = 30;

/** Reads the first id of the server's current run from its control file, once per run. */
async function firstId(client: SideClient, run: string): Promise<bigint | undefined> {
  const started = Math.max(...run.split("/").map((t) => (t === "" ? 0 : Number(t))));
  if (firstIdOfRun.has(run)) return firstIdOfRun.get(run);
  let first: bigint | undefined;
  try {
    const row = (
      await client.query(
        "SELECT next_xid, extract(epoch FROM checkpoint_time)::float8 AS at, redo_lsn = checkpoint_lsn AS quiet FROM pg_control_checkpoint()",
      )
    ).rows[0];
    const [epoch, xid] = String(row?.next_xid ?? "").split(":");
    const at = Number(row?.at);
    // checkpoint_time has whole seconds: it may read up to 1 s before the run's start.
    if (row?.quiet === true && /^\d+$/.test(epoch ?? "") && /^\d+$/.test(xid ?? "") && at >= started - 1 && at <= started + RECOVERY_CHECKPOINT_WINDOW_S) {
      first = (BigInt(epoch!) << 32n) | BigInt(xid!);
    }
  } catch (e) {
    log(`the server's checkpoint could not be read (${describeError(e)}): a lost COMMIT from before its restart stays unknown`);
  }
  if (firstIdOfRun.size > 100) firstIdOfRun.clear();
  firstIdOfRun.set(run, first);
  return first;
}

/** txid_status() (pg_xact_status's PostgreSQL 10+ name), with "future" for an id not handed out yet (22023). */
async function xactStatus(client: SideClient, xactId: string): Promise<string | null> {
  try {
    return (await client.query("SELECT txid_status($1::bigint) AS s", [xactId])).rows[0]?.s ?? null;
  } catch (e: any) {
    if (e?.code === "22023" && /in the future/i.test(String(e?.message))) return "future";
    throw e;
  }
}

/** The verdict on a transaction whose id was read before the server's current run began. */
async function acrossRestart(client: SideClient, who: XactIdentity, status: string | null, run: string): Promise<PgCommitVerdict | undefined> {
  if (status === "aborted" || status === "future") return "not-committed";
  if (status === "in progress") return undefined;
  if (status !== "committed") return "unknown";
  const first = await firstId(client, run);
  if (first === undefined) return "unknown";
  return BigInt(who.xactId) < first ? "committed" : "not-committed";
}

/** The 32-bit xid pg_stat_activity.backend_xid shows for a full (xid8) id. */
export function shortXid(xactId: string): string {
  return (BigInt(xactId) & 0xffffffffn).toString();
}

/**
 * Ends the backend `pid` only when it is this transaction's (backend_xid = the id's low 32 bits)
 * and this user's. Returns whether a backend was ended.
 */
export async function terminateIfOurs(client: SideClient, who: XactIdentity): Promise<boolean> {
  if (who.pid === undefined || who.pid === null) return false;
  const rows = await client.query(
    // Only a backend waiting for its client (a ghost): never one still executing, e.g. its COMMIT.
    "SELECT pg_terminate_backend(pid) AS ended FROM pg_stat_activity WHERE pid = $1 AND backend_xid::text = $2 AND state = 'idle in transaction' AND usename = session_user AND datname = current_database()",
    [who.pid, shortXid(who.xactId)],
  );
  return rows.rows.some((r: any) => r.ended === true);
}

/** The backend of `who` as the server sees it now (undefined: not there, or not running that transaction). */
export async function backendState(client: SideClient, who: XactIdentity): Promise<string | undefined> {
  if (who.pid === undefined) return undefined;
  // By pid alone: once its transaction has ended (committed, its reply lost) the backend shows "idle".
  const rows = await client.query("SELECT state FROM pg_stat_activity WHERE pid = $1 AND usename = session_user", [who.pid]);
  return rows.rows[0]?.state ?? undefined;
}

/**
 * Polls pg_xact_status until it decides or `deadlineAt` (performance.now() ms) passes. `kill`:
 * a backend still holding the transaction may be ended (identity checked).
 */
export async function verifyXact(side: PgSide, who: XactIdentity, deadlineAt: number, kill: boolean): Promise<PgCommitVerdict> {
  let pause = 20;
  let told = false;
  while (performance.now() < deadlineAt && !side.isClosed) {
    const left = Math.max(50, Math.min(1000, deadlineAt - performance.now()));
    const { value, result } = await side.with(left, async (client) => {
      // Both on this one connection: a restart in between would end it. A standby's ids lag the primary's.
      const here = (await client.query(`SELECT ${RUN_SQL} AS run, pg_is_in_recovery() AS standby`)).rows[0];
      if (here?.standby !== false) return undefined;
      const run = String(here.run);
      const status = await xactStatus(client, who.xactId);
      if (who.serverStart !== undefined && run !== who.serverStart) return acrossRestart(client, who, status, run);
      // Without the run the id came from, a "committed" may be another transaction's.
      if (status === "committed") return who.serverStart === undefined ? ("unknown" as const) : ("committed" as const);
      if (status === "aborted") return "not-committed" as const;
      if (status === null || status === "future") return "unknown" as const;
      // In progress: the old backend still holds it.
      if (kill && (await terminateIfOurs(client, who))) log(`verifying a lost COMMIT: ended its old backend ${who.pid} (pid and transaction id checked)`);
      else if (!told) {
        told = true;
        log(`verifying a lost COMMIT: transaction ${who.xactId} still in progress${kill ? " on a backend that is not provably ours" : ""}: waiting for it to end`);
      }
      return undefined;
    });
    if (value !== undefined) return value;
    if (!result.ok) log(`verifying a lost COMMIT failed once (${result.reason}${result.error ? `: ${describeError(result.error)}` : ""}); trying again`);
    await sleep(Math.min(pause, Math.max(0, deadlineAt - performance.now())));
    pause = Math.min(250, pause * 2);
  }
  return "unknown";
}
