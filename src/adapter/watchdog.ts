// The silent-drop watchdog: one interval per adapter scans the pool's connections (never a timer per
// call). A connection that has waited `silentAfter` for a reply without receiving a byte, or callers
// queued that long for a connection, make it ask the server, over a side connection, what is going
// on; a connection whose session is provably idle or gone is destroyed, its caller goes on under the
// safety rule (see README.md#the-safety-rule).
import { setTimeout as sleep } from "node:timers/promises";
import { describeError, log } from "../core/log.ts";
import type { ServerHealth } from "../core/health.ts";
import { busy, destroyConnection, type DriverConnection, type DriverPool } from "./driver.ts";
import type { ResolvedAdapterOptions } from "./options.ts";
import type { Sessions } from "./sessions.ts";
import { flavorOf, isSessionRow, processlist, restartOf, sameServer, sessionRowSql, SideConnections, type ServerIdentity, type SideConnection } from "./side.ts";

// How often the watchdog scans the pool's connections.
const SCAN_MS = 250;

/**
 * A command this large (bytes written since the connection was last seen before it) may still be on
 * its way to the server after silentAfter: the server shows `Sleep` until it has read the whole
 * packet, over a slow link for seconds (more than certainly fits in flight at once).
 */
const LARGE_COMMAND_BYTES = 16 * 1024;

/** What the watchdog remembers about a pool connection that is waiting for a reply. */
interface Watch extends WaitState {
  /**
   * When the command it waits on was first seen (kept across progress): the server had finished
   * every command before it by then (their replies had arrived).
   */
  seen: number;
  /** Bytes written since the connection was last seen before that command: at least the command's own size. */
  sent: number;
  /** Commands in the receive queue: behind the head, some of `sent` may be theirs. */
  queued: number;
  since: number;
  nextCheck: number;
  checks: number;
}

interface WaitState {
  /** Bytes read from the socket. */
  bytes: number;
  /** Bytes the driver has written to the socket, and those of them not yet handed to the kernel. */
  written: number;
  pending: number;
  /** The command it waits on (the driver's receive queue's head). */
  waitingOn: unknown;
}

/** The command a connection waits on and its bytes read, written and still pending: a change is progress. */
function waitState(conn: DriverConnection): WaitState {
  const socket = conn.socket;
  return {
    bytes: socket?.bytesRead ?? -1,
    written: socket?.bytesWritten ?? -1,
    pending: (socket?.writableLength ?? 0) + (socket?._handle?.writeQueueSize ?? 0),
    waitingOn: conn.receiveQueue?.peekFront?.(),
  };
}

function sameState(a: WaitState, b: WaitState): boolean {
  return a.bytes === b.bytes && a.written === b.written && a.pending === b.pending && a.waitingOn === b.waitingOn;
}

function backoff(checks: number): number {
  return Math.min(1000 * 2 ** checks, 10_000);
}

export class Watchdog {
  private readonly watches = new Map<DriverConnection, Watch>();
  /** Bytes each connection had written when the watchdog last saw it with nothing to wait for. */
  private readonly idleWritten = new WeakMap<object, number>();
  private queuedSince = 0;
  private lastProgress = 0;
  private queueNextCheck = 0;
  private queueChecks = 0;
  private checking = false;
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly options: ResolvedAdapterOptions,
    private readonly health: ServerHealth<SideConnections>,
    private readonly sessions: Sessions,
    /** The pool's open connections. */
    private readonly conns: ReadonlySet<DriverConnection>,
    /** The pool in use (its queue of callers waiting for a connection). */
    private readonly pool: () => DriverPool | undefined,
  ) {}

  start() {
    this.timer = setInterval(() => this.scan(), SCAN_MS);
    this.timer.unref();
  }

  stop() {
    if (this.timer) clearInterval(this.timer);
  }

  /** A connection closed: nothing to watch on it any more. */
  forget(conn: DriverConnection) {
    this.watches.delete(conn);
  }

  /**
   * Every SCAN_MS: a connection that has waited `silentAfter` for a reply without receiving a byte,
   * or callers queued that long for a connection, make the adapter ask the server, over a side
   * connection, what is going on. Costs nothing per call; nothing at all while no call waits.
   */
  private scan() {
    if (this.health.state !== "up" || this.checking || this.health.isClosed) return;
    const now = performance.now();
    const after = this.options.silentAfter;
    const silent: DriverConnection[] = [];
    for (const conn of this.conns) {
      if (!busy(conn)) {
        this.watches.delete(conn);
        this.idleWritten.set(conn, conn.socket?.bytesWritten ?? 0);
        continue;
      }
      const state = waitState(conn);
      const w = this.watches.get(conn);
      if (!w || !sameState(w, state)) {
        const same = w !== undefined && w.waitingOn === state.waitingOn;
        // Bytes written since last seen are this command's (or later ones'); with commands queued
        // behind the previous head, what was counted for it may be this one's too.
        const carried = w !== undefined && (same || w.queued > 1) ? w.sent : 0;
        const sent = carried + state.written - (w ? w.written : (this.idleWritten.get(conn) ?? 0));
        this.watches.set(conn, { ...state, seen: same ? w.seen : now, sent, queued: conn.receiveQueue!.length, since: now, nextCheck: 0, checks: 0 });
        this.lastProgress = now;
        continue;
      }
      if (now - w.since >= after && now >= w.nextCheck) silent.push(conn);
    }
    const pool = this.pool();
    const queued = typeof pool?.taskQueueSize === "function" ? pool.taskQueueSize() > 0 : false;
    if (!queued) {
      this.queuedSince = 0;
      this.queueChecks = 0;
    } else if (this.queuedSince === 0) this.queuedSince = now;
    // Callers queued for a connection while no connection makes progress: the pool cannot connect
    // (a saturated pool whose connections are receiving replies is only busy).
    const queueStuck = queued && now - this.queuedSince >= after && now - this.lastProgress >= after && now >= this.queueNextCheck;
    if (silent.length === 0 && !queueStuck) return;
    if (queueStuck) this.queueNextCheck = now + backoff(++this.queueChecks);
    this.checking = true;
    void this.checkSessions(silent)
      .catch((e) => log(`session check failed (${describeError(e)})`))
      .finally(() => {
        this.checking = false;
      });
  }

  /** Asks the server what the silent connections' sessions are doing, and acts on the answer. */
  private async checkSessions(silent: DriverConnection[]) {
    const { conn: side, result } = await this.health.side.connect(this.options.probeTimeout);
    if (!side) {
      // The server cannot be reached (or refuses us): an outage, noticed without any timeout of the driver.
      this.health.judge(result);
      return;
    }
    await this.sessions.bounded(side, async () => {
      if (silent.length === 0) return;
      const server = await SideConnections.serverIdentity(side);
      const suspects: Array<{ conn: DriverConnection; w: Watch | undefined; verdict: "idle" | "gone" }> = [];
      let slowest = 0;
      for (const conn of silent) {
        const w = this.watches.get(conn);
        const asked = performance.now();
        const verdict = await this.sessionVerdict(side, conn, server, w);
        slowest = Math.max(slowest, performance.now() - asked);
        if (verdict === "executing") {
          if (w) w.nextCheck = performance.now() + backoff(++w.checks);
        } else suspects.push({ conn, w, verdict });
      }
      // An answer describes the session when the server read it. An idle session may just have
      // answered: its reply can still be on its way (a round trip's grace). A connection that has
      // read or written a byte or moved on to another command since is not silent: the answer is stale.
      if (suspects.some((x) => x.verdict === "idle")) await sleep(Math.min(250, Math.max(20, slowest)), undefined, { ref: false });
      if (this.health.isClosed) return;
      // Each connection still silent is destroyed in this same tick (nothing more can be sent on it),
      // and only then is its idle session ended: the KILL can only reach the ghost.
      const dead = suspects.filter(({ conn, w }) => {
        const now = waitState(conn);
        const still = w !== undefined && busy(conn) && sameState(now, w);
        if (!still) log(`connection ${conn.threadId ?? "?"} got an answer while its session was being checked: left alone`);
        return still;
      });
      for (const { conn, verdict } of dead) {
        log(`connection ${conn.threadId ?? "?"} silent for ${this.options.silentAfter}+ ms and its session is ${verdict}: destroying it`);
        destroyConnection(conn);
      }
      for (const { conn, verdict } of dead) {
        if (verdict === "idle") await this.sessions.kill(side, conn, server).catch((e) => log(`could not end the ghost session of connection ${conn.threadId ?? "?"} (${describeError(e)})`));
      }
    });
  }

  /**
   * What a silent connection's session is doing, as the server tells it. Only a session that is
   * provably this connection's (its identity, on the same server) is ever "idle" or "gone": without
   * that, a thread id looked up over the side connection may be another session's, or none, on
   * another server (a proxy, a balancer), and a silent statement (a lock wait) is cut on a healthy
   * server. Then it is taken as executing: a dead link is left to the driver's socketTimeout.
   */
  private async sessionVerdict(side: SideConnection, conn: DriverConnection, server: ServerIdentity | undefined, w: Watch | undefined): Promise<"executing" | "idle" | "gone"> {
    const identity = this.sessions.of(conn);
    if (!identity || !server || !w) return "executing";
    if (!sameServer(identity.server, server)) {
      // The same host and port, started later: a restart, no session from before survives it.
      // Another server (a proxy in front of a cluster): its sessions are out of sight; never cut.
      if (!restartOf(server, identity.server)) return "executing";
      // Its session still listed: the same server after all (a start time read late), not a restart.
      const [row] = await side.query(`SELECT USER AS user, HOST AS host FROM ${processlist(flavorOf(side))} WHERE ID = ?`, [identity.threadId]);
      return isSessionRow(row, identity) ? "executing" : "gone";
    }
    const asked = performance.now();
    const rows: any[] = await side.query(sessionRowSql(flavorOf(side)), [identity.threadId]);
    const row = rows?.[0];
    if (!isSessionRow(row, identity)) return "gone";
    if (row.command !== "Sleep") return "executing";
    // A server still reading a command shows `Sleep` too, idle since its previous command ended
    // (TIME_MS, measured). Idle for less time than since this command was first seen: the server
    // has finished it (the reply is lost). Else it may not have wholly reached the server. A small
    // one would have (it was lost on the way); a large one, or one whose bytes have not all left
    // this side, may still be arriving over a slow link: never cut (nor when it was answered before
    // the watchdog first saw it, within a scan: its lost reply is left to socketTimeout).
    if (row.ms !== null && row.ms !== undefined && Number(row.ms) < asked - w.seen) return "idle";
    return w.sent > LARGE_COMMAND_BYTES || w.pending > 0 ? "executing" : "idle";
  }
}
