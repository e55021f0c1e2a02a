// Who each pooled connection is as the server sees it (thread id, user, client host:port, server),
// and the one rule that uses it: a session is ended (KILL) only when it is provably this
// connection's, on the same server (see README.md#the-safety-rule and docs/faults-and-caveats.md).
import { describeError, log } from "../core/log.ts";
import type { ServerHealth } from "../core/health.ts";
import type { DriverConnection } from "./driver.ts";
import type { ResolvedAdapterOptions } from "./options.ts";
import { flavorOf, processlist, sameServer, sessionIdentityOf, sessionSql, SideConnections, type ServerIdentity, type SessionIdentity, type SideConnection } from "./side.ts";

// Side work (a session check, a ghost kill) never outlives this: its connection is destroyed.
const SIDE_WORK_MS = 2000;

export class Sessions {
  /** Who each connection is, as the server sees it (keyed by the connection's `info`, shared with the promise API). */
  private readonly identities = new WeakMap<object, SessionIdentity>();
  /** When each pooled connection went idle in the pool (absent while it is handed out). */
  readonly idleSince = new WeakMap<object, number>();

  constructor(
    private readonly options: ResolvedAdapterOptions,
    private readonly health: ServerHealth<SideConnections>,
    /** A connection's session was identified (commit verification learns the cluster's nodes from it). */
    private readonly onIdentified: (id: SessionIdentity) => void,
  ) {}

  /** The recorded identity of a driver connection (or of the promise API's connection sharing its `info`). */
  of(connection: unknown): SessionIdentity | undefined {
    const info = (connection as DriverConnection | undefined)?.info;
    return info ? this.identities.get(info) : undefined;
  }

  /** Reads who a new connection is as the server sees it (thread id, user, client host:port, server). */
  identify(conn: DriverConnection) {
    if (!this.options.killGhostSessions && this.options.silentAfter === 0 && !this.options.verifyCommits) return;
    if (typeof conn.query !== "function" || !conn.info) return;
    // Without it, the watchdog never cuts this connection and no ghost of it is killed.
    const unidentified = () => log(`connection ${conn.threadId ?? "?"}: its session could not be identified (CONNECTION_ID() is another thread, or the query failed): never cut as silent`);
    try {
      conn.query(
        { sql: sessionSql(flavorOf(conn)) },
        (rows: any) => {
          const id = sessionIdentityOf(rows?.[0]);
          // Behind a multiplexing proxy the session may not be this connection's own: then none is kept.
          const own = Number(conn.threadId ?? conn.info?.threadId);
          if (id && (!Number.isFinite(own) || id.threadId === own)) {
            this.identities.set(conn.info as object, id);
            this.onIdentified(id);
          } else unidentified();
        },
        unidentified,
      );
    } catch {
      // not the mariadb driver's connection: no identity, so never a kill
    }
  }

  /**
   * A pooled connection's close that is no fault: the driver's socketTimeout (45026), or a bare
   * close (FIN or reset, no reason given) of a connection idle in the pool for its session's
   * wait_timeout, read with its identity (less a tenth of it, up to 2 s: the pool's idle clock
   * starts at release, the server's at the reply). Without the identity every close counts.
   */
  routineClose(conn: DriverConnection, error: unknown): boolean {
    const e = error as any;
    if (e?.errno === 45026) return true;
    if (e?.errno !== 45009 && e?.code !== "ECONNRESET" && e?.code !== "EPIPE") return false;
    const waitTimeout = conn.info ? this.identities.get(conn.info)?.waitTimeout : undefined;
    const since = this.idleSince.get(conn);
    if (waitTimeout === undefined || since === undefined) return false;
    return Date.now() - since >= waitTimeout * 1000 - Math.min(2000, waitTimeout * 100);
  }

  /** Ends a connection's session from a side connection, when it is provably that connection's (see kill). */
  async end(conn: DriverConnection, state: "busy" | "idle") {
    if (!this.options.killGhostSessions || this.health.isClosed) return;
    const { conn: side } = await this.health.side.connect(this.options.probeTimeout);
    if (!side) return;
    await this.bounded(side, async () => {
      await this.kill(side, conn, await SideConnections.serverIdentity(side), state);
    }).catch((e) => log(`ending a destroyed connection's session failed (${describeError(e)})`));
  }

  /** After a silent drop inside a transaction: ends the session the server still holds, when provably ours. */
  async killGhost(threadId: number, connection?: unknown): Promise<void> {
    if (!this.options.killGhostSessions || this.health.isClosed) return;
    // Only a session that is provably this connection's (same server, thread id, user and client
    // host:port as the server saw them when it was opened) and idle ("Sleep": its client is gone).
    const identity = this.of(connection);
    if (!identity || identity.threadId !== Math.trunc(threadId)) {
      log(`ghost session ${threadId}: who it is was not recorded, so it is not killed`);
      return;
    }
    const { conn: side } = await this.health.side.connect(this.options.probeTimeout);
    if (!side) return;
    await this.bounded(side, async () => {
      const server = await SideConnections.serverIdentity(side);
      await this.kill(side, connection, server);
    }).catch((e) => log(`could not kill ghost session ${threadId} (${describeError(e)})`));
  }

  /**
   * KILL of a session that is provably this connection's (same server, thread id, user, client
   * host:port), and idle unless `state` is "busy" (a connection destroyed while it waited for a reply).
   */
  async kill(side: SideConnection, conn: unknown, server: ServerIdentity | undefined, state: "busy" | "idle" = "idle") {
    if (!this.options.killGhostSessions) return;
    const identity = this.of(conn);
    if (!identity || !server || !sameServer(identity.server, server)) return;
    const rows: any[] = await side.query(
      `SELECT ID FROM ${processlist(flavorOf(side))} WHERE ID = ? AND USER = ? AND HOST = ?${state === "idle" ? " AND COMMAND = 'Sleep'" : ""}`,
      [identity.threadId, identity.user, identity.host],
    );
    if (!rows?.length) return;
    await side.query(`KILL CONNECTION ${Math.trunc(identity.threadId)}`);
    log(`killed the ${state === "idle" ? "ghost session" : "session of a destroyed busy connection"} ${identity.threadId}`);
  }

  /** Runs side work, then closes the side connection; work that takes too long is cut (the connection destroyed). */
  async bounded(side: SideConnection, work: () => Promise<void>) {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      void this.health.side.release(side, true);
    }, SIDE_WORK_MS);
    try {
      await work();
    } finally {
      clearTimeout(timer);
      if (!timedOut) await this.health.side.release(side);
    }
  }
}
