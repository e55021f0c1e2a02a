// Commit verification's state for one adapter: the commit-mark table is checked (or created) once,
// then each write's COMMIT carries a mark, and a lost COMMIT reply is verified (see verify.ts and
// docs/exactly-once.md).
import { log } from "../core/log.ts";
import type { ServerHealth } from "../core/health.ts";
import { recordVerification } from "../core/telemetry.ts";
import { markKey, type CommitVerdict } from "../mysql/marks.ts";
import type { ClusterNodes } from "./nodes.ts";
import type { ResolvedAdapterOptions } from "./options.ts";
import type { Sessions } from "./sessions.ts";
import type { Flavor, SideConnections } from "./side.ts";
import { prepareCommitTable, verifyCommit } from "./verify.ts";

export class CommitMarks {
  /** Commit verification: `pending` until the table is checked, then `on` or `off`. */
  state: "pending" | "on" | "off";
  /** The server has `@@in_transaction` (MariaDB): marks are guarded by it. */
  guarded = false;
  /** `@@innodb_rollback_on_timeout`, read with the commit table (undefined: not known). */
  rollbackOnTimeout?: boolean;

  constructor(
    private readonly options: ResolvedAdapterOptions,
    private readonly health: ServerHealth<SideConnections>,
    private readonly sessions: Sessions,
    private readonly nodes: ClusterNodes,
    /** The driver's settings are known (the factory built the pool). */
    private readonly configured: () => boolean,
    private readonly flavor: () => Flavor | undefined,
  ) {
    this.state = options.verifyCommits ? "pending" : "off";
  }

  /** Checks (or creates) the commit-mark table once, over a side connection; verification is off until it is there. */
  async prepare() {
    if (!this.health.side.canConnect || !this.configured()) return this.off("the driver's settings are unknown (a pool you created yourself)");
    if (this.health.state !== "up") return; // tried again once the server is back
    const { ok, why, reached, guarded, rollbackOnTimeout } = await prepareCommitTable(this.health.side, true, Math.max(this.options.probeTimeout, 2000));
    if (this.state !== "pending") return;
    if (ok) {
      this.state = "on";
      this.guarded = guarded === true;
      this.rollbackOnTimeout = rollbackOnTimeout;
      log("commit verification is on");
    } else if (reached) this.off(why ?? "unknown");
    else log(`commit verification waits for the server (${why})`);
  }

  off(why: string) {
    if (this.state === "off") return;
    this.state = "off";
    process.emitWarning(
      `prisma-extension-resilience: commit verification is off (${why}); a lost COMMIT reply is reported as OutcomeUnknownError. See the README, "Exactly-once".`,
      { code: "RESILIENCE_VERIFY_OFF" },
    );
  }

  /** The mark key of this driver connection, when verification is on and its identity is known. */
  keyOf(connection: unknown): string | undefined {
    if (this.state !== "on") return undefined;
    const identity = this.sessions.of(connection);
    return identity ? markKey(identity) : undefined;
  }

  /** After a lost COMMIT reply: did it commit? (The old session is made sure to be gone first.) */
  async verify(connection: unknown, key: string, token: string, found?: { token?: string }): Promise<CommitVerdict> {
    const identity = this.sessions.of(connection);
    const started = performance.now();
    const verdict: CommitVerdict =
      !identity || this.health.isClosed ? "unknown" : await verifyCommit(this.health.side, identity, key, token, started + this.options.verifyTimeout, {
            nodes: this.nodes,
            refusedMeansStopped: this.options.refusedMeansStopped,
            killSessions: this.options.killGhostSessions,
          }, found);
    const ms = Math.round(performance.now() - started);
    try {
      this.options.onCommitVerified?.(Object.freeze({ verdict, ms }));
    } catch {
      // an observer's failure is not the database's
    }
    recordVerification(verdict, ms, this.flavor());
    return verdict;
  }
}
