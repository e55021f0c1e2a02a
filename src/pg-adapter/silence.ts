// What a silent connection's backend is doing, judged from one pg_stat_activity row (watchdog.ts
// reads it over a side connection). Pure: durations are the server's own (now minus its timestamps)
// set against this process's own (performance.now()), never one clock's time against the other's.

/** One looked-up pid (watchdog.ts LOOKUP_SQL); the a.* columns are null when no backend of ours has it. */
export interface BackendRow {
  pid: number;
  state: string | null;
  started: string | null;
  changed: string | null;
  idle_ms: number | null;
  age_ms: number | null;
  uptime_ms: number | null;
  /** The side connection's backend pid as the server tells it. */
  me: number;
}

/** What the watchdog knows of the silent call (performance.now() ms). */
export interface Watch {
  /** When its query was first seen waiting: the server had finished every earlier one by then. */
  seen: number;
  /** When its client was first seen at all: its backend is at least this old. */
  born: number;
  /** Bytes written since the client was last seen with nothing to wait for: at least the query's size. */
  sent: number;
}

/**
 * running: never cut (asked again later). recheck: idle only a moment (a reply may be on its way).
 * idle: the backend waits for us, the call's statement is not running: the link is dead. gone: no
 * backend of ours has that pid (ended, or the server restarted and the pid is someone else's).
 */
export type Verdict = "running" | "recheck" | "idle" | "gone";

/** Idle for less than this: its reply may still be on its way (a round trip's grace). */
export const REPLY_GRACE_MS = 250;
/** Slack for comparing the two clocks' durations (each measured from a different moment). */
const SLACK_MS = 50;
/** A query this large may still be arriving over a slow link after silentAfter (src/adapter/watchdog.ts: LARGE_COMMAND_BYTES). */
export const LARGE_QUERY_BYTES = 16 * 1024;

const IDLE = new Set(["idle", "idle in transaction", "idle in transaction (aborted)"]);

/** `asked`: performance.now() just before the row was asked for. `sideKeyPid`: the side client's BackendKeyData pid. */
export function judge(row: BackendRow, w: Watch, asked: number, sideKeyPid: number | null | undefined): Verdict {
  // Behind a pooler (PgBouncer, Supavisor) BackendKeyData is the pooler's: a pid means nothing, never cut.
  if (typeof sideKeyPid !== "number" || Number(row.me) !== sideKeyPid) return "running";
  if (row.started === null || row.age_ms === null || row.uptime_ms === null) return "gone";
  const watched = asked - w.born - SLACK_MS;
  // The server started, or this pid's backend did, after our client was already there: not ours.
  if (row.uptime_ms < watched || row.age_ms < watched) return "gone";
  if (row.state === null || !IDLE.has(row.state)) return "running";
  if (row.idle_ms === null) return "running";
  if (row.idle_ms < REPLY_GRACE_MS) return "recheck";
  // Idle since before the query was first seen: it never arrived. A large one may still be arriving.
  if (row.idle_ms >= asked - w.seen && w.sent > LARGE_QUERY_BYTES) return "running";
  return "idle";
}
