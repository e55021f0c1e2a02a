// Exactly-once without a mark table: after a COMMIT whose reply was lost, the transaction's own id
// (read before COMMIT was sent: wire.ts) is looked up on a fresh side connection with
// pg_xact_status(): `committed` or `aborted` decide; `in progress` means the old backend still
// holds it (a silent drop): it is ended only when provably ours (its pid is the one the server gave
// our connection AND it runs our transaction id: never a foreign session; behind a transaction-mode
// pooler the pid never matches, so nothing is ended and the backend is waited for); NULL: unknown.
import { setTimeout as sleep } from "node:timers/promises";
import { describeError, log } from "../core/log.ts";
import type { PgSide, SideClient } from "./side.ts";

export type PgCommitVerdict = "committed" | "not-committed" | "unknown";

/** The transaction as the server knows it: its id (xid8, epoch included), and its backend's pid. */
export interface XactIdentity {
  xactId: string;
  pid?: number;
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
    "SELECT pg_terminate_backend(pid) AS ended FROM pg_stat_activity WHERE pid = $1 AND backend_xid::text = $2 AND usename = current_user AND datname = current_database()",
    [who.pid, shortXid(who.xactId)],
  );
  return rows.rows.some((r: any) => r.ended === true);
}

/** The backend of `who` as the server sees it now (undefined: not there, or not running that transaction). */
export async function backendState(client: SideClient, who: XactIdentity): Promise<string | undefined> {
  if (who.pid === undefined) return undefined;
  const rows = await client.query("SELECT state FROM pg_stat_activity WHERE pid = $1 AND backend_xid::text = $2", [who.pid, shortXid(who.xactId)]);
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
      const status: string | null = (await client.query("SELECT pg_xact_status($1::xid8) AS s", [who.xactId])).rows[0]?.s ?? null;
      if (status === "committed") return "committed" as const;
      if (status === "aborted") return "not-committed" as const;
      if (status === null) return "unknown" as const;
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
