// The options of withResilience(), validated once when the adapter is wrapped.
import type { StateChange } from "../core/health.ts";

export interface ResilientAdapterOptions {
  /**
   * Called when the server is found down (a probe after a lost connection is refused or
   * unanswered) and when it is back (a fresh pool is in use). Default none.
   */
  onStateChange?: (change: StateChange) => void;
  /**
   * ms a call waits for the server while it is down, before it fails unsent and the retry loop
   * decides again (it bounds how far past its deadline an operation can end). Default 200, at least 50
   * (a shorter wait only makes the retry loop spin).
   */
  outageWait?: number;
  /** ms between probes while the server is down (± 25 % jitter). Default 50, at least 10. */
  probeInterval?: number;
  /** ms a probe (a complete, authenticated connection) waits for an answer. Default 1000, at least 10. */
  probeTimeout?: number;
  /**
   * ms a call may wait for a reply without a byte from the server (or for a pool connection) before
   * the adapter asks the server, over a side connection, what that session is doing: still executing
   * → keep waiting; idle or gone → the connection is dead and is destroyed; server unreachable → an
   * outage. It never cuts a query the server is still running. Default 1000, at least 100; 0 turns
   * the watchdog off.
   */
  silentAfter?: number;
  /**
   * May this package send `KILL <thread id>` (only ever to a session that is provably this app's
   * connection's): to end the ghost session of a silently dropped transaction, the session of a
   * busy pool connection that is destroyed, and the old session of a lost COMMIT before its mark
   * is read. false: no KILL is ever sent; a ghost keeps its locks until the server ends it, and a
   * lost COMMIT is verified only once its old session has ended by itself within verifyTimeout
   * (else OutcomeUnknownError). Default true.
   */
  killGhostSessions?: boolean;
  /**
   * Exactly-once: a writing transaction leaves a mark with its COMMIT, so that a COMMIT whose reply
   * is lost is verified (committed → the operation resolves; not → it is re-run) instead of being
   * reported as OutcomeUnknownError. Writes outside a transaction (`createMany`, `updateMany`,
   * `deleteMany`, `$executeRaw` DML) then run inside one. Needs the `_resilience_commits` table
   * (created when missing and allowed). Default true.
   */
  verifyCommits?: boolean;
  /** Called after each lost COMMIT reply was verified, with what was found and how long it took. Default none. */
  onCommitVerified?: (outcome: CommitVerification) => void;
  /** ms a lost COMMIT may take to verify (the old session ended, the mark read) before it is reported unknown. Default 10000, at least 100. */
  verifyTimeout?: number;
  /**
   * On a Galera cluster behind a proxy: a node whose own client address refuses connections (it
   * answered there before) and which the Primary component no longer counts is taken as stopped,
   * so a COMMIT lost with it is verified on another node without waiting for it to come back. Set
   * false when a firewall may start *rejecting* (not dropping) connections to a node that is still
   * running while it is cut off from the cluster. Default true.
   */
  refusedMeansStopped?: boolean;
}

/** What verifying one lost COMMIT reply found. */
export interface CommitVerification {
  /** `committed`: the operation resolved; `not-committed`: it is re-run; `unknown`: OutcomeUnknownError. */
  readonly verdict: "committed" | "not-committed" | "unknown";
  /** ms the verification took (reaching the server, ending the old session, reading the mark). */
  readonly ms: number;
}

export interface ResolvedAdapterOptions extends Required<Omit<ResilientAdapterOptions, "onStateChange" | "onCommitVerified">> {
  onStateChange?: (change: StateChange) => void;
  onCommitVerified?: (outcome: CommitVerification) => void;
}

export function resolveAdapterOptions(options: ResilientAdapterOptions | undefined): ResolvedAdapterOptions {
  if (options === undefined) options = {};
  if (typeof options !== "object" || options === null) throw new TypeError("withResilience(): options must be an object");
  const known = new Set(["onStateChange", "outageWait", "probeInterval", "probeTimeout", "silentAfter", "killGhostSessions", "verifyCommits", "verifyTimeout", "onCommitVerified", "refusedMeansStopped"]);
  for (const key of Object.keys(options)) if (!known.has(key)) throw new TypeError(`withResilience(): unknown option \`${key}\``);
  const ms = (name: keyof ResilientAdapterOptions, fallback: number, min: number) => {
    const v = options![name];
    if (v === undefined) return fallback;
    if (typeof v !== "number" || !Number.isFinite(v) || v < min) {
      throw new TypeError(`withResilience(): \`${name}\` must be a number of ms ≥ ${min}, got ${String(v)}`);
    }
    return v;
  };
  for (const name of ["onStateChange", "onCommitVerified"] as const) {
    if (options[name] !== undefined && typeof options[name] !== "function") throw new TypeError(`withResilience(): \`${name}\` must be a function`);
  }
  for (const name of ["killGhostSessions", "verifyCommits", "refusedMeansStopped"] as const) {
    if (options[name] !== undefined && typeof options[name] !== "boolean") throw new TypeError(`withResilience(): \`${name}\` must be true or false`);
  }
  return {
    onStateChange: options.onStateChange,
    onCommitVerified: options.onCommitVerified,
    outageWait: ms("outageWait", 200, 50),
    probeInterval: ms("probeInterval", 50, 10),
    probeTimeout: ms("probeTimeout", 1000, 10),
    silentAfter: silentAfter(options.silentAfter),
    killGhostSessions: options.killGhostSessions ?? true,
    verifyCommits: options.verifyCommits ?? true,
    verifyTimeout: ms("verifyTimeout", 10_000, 100),
    refusedMeansStopped: options.refusedMeansStopped ?? true,
  };
}

function silentAfter(v: unknown): number {
  if (v === undefined) return 1000;
  if (v === 0) return 0;
  if (typeof v !== "number" || !Number.isFinite(v) || v < 100) {
    throw new TypeError(`withResilience(): \`silentAfter\` must be 0 (off) or a number of ms ≥ 100, got ${String(v)}`);
  }
  return v;
}
