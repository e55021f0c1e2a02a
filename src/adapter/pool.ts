// Watching the driver's pool: its new connections (their settings, and who they are as the server
// sees them), a pooled connection's error, and the pool failing to open one. A refusal is acted on at
// once: callers waiting in the pool fail now, not at acquireTimeout.
import { describeError, log } from "../core/log.ts";
import type { ServerHealth } from "../core/health.ts";
import { isAccountConnectionLimit } from "../mysql/classify.ts";
import { refusalOf } from "../mysql/refusal.ts";
import { busy, destroyConnection, type DriverConnection, type DriverPool } from "./driver.ts";
import { serializePrepares } from "./prepare.ts";
import { closedByOwnFence } from "./pipelined-begin.ts";
import type { Sessions } from "./sessions.ts";
import type { SideConnections } from "./side.ts";

/** What the adapter does with what its pools tell. */
export interface PoolEvents {
  /** The pool is the one in use (or the app's own, watched): its faults count. */
  inUse(pool: DriverPool): boolean;
  /** A connection was adopted: its settings and the server's flavour. */
  learn(conn: DriverConnection): void;
  /** A fault was met (see ResilientAdapter.noteFault). */
  noteFault(): void;
  /** A connection closed. */
  forget(conn: DriverConnection): void;
}

export class PoolWatch {
  /** The pool's open connections (mariadb Connection objects), for the watchdog and outages. */
  readonly conns = new Set<DriverConnection>();
  /** Connections already watched (adopted at 'connection' or, made before the watch, at 'acquire'). */
  private readonly adopted = new WeakSet<object>();

  constructor(
    private readonly health: ServerHealth<SideConnections>,
    private readonly sessions: Sessions,
    private readonly events: PoolEvents,
  ) {}

  /**
   * Listens to the pool: its new connections (their settings, and who they are as the server sees
   * them), a pooled connection's error, and the pool failing to open one (a refusal is acted on at
   * once: callers waiting in the pool fail now, not at acquireTimeout). The 'error' listener also
   * keeps the driver from throwing an unhandled 'error' event.
   */
  watch(pool: DriverPool | undefined) {
    if (typeof pool?.on !== "function") return;
    const suspect = () => {
      if (this.events.inUse(pool)) void this.health.suspect();
    };
    const adopt = (conn: DriverConnection | undefined) => {
      if (!conn || typeof conn.on !== "function" || this.adopted.has(conn)) return;
      this.adopted.add(conn);
      this.events.learn(conn);
      this.conns.add(conn);
      const forget = () => {
        this.conns.delete(conn);
        this.events.forget(conn);
      };
      conn.once("end", forget);
      // A graceful close (idle reaping, pool.end) emits no 'end' on the connection: its socket's
      // 'close' does (unless the driver moved the connection to another socket: a redirect).
      const socket = conn.socket;
      // (clear() drops conn.socket before that 'close': gone or the same socket both mean closed.)
      socket?.once?.("close", () => {
        if (!conn.socket || conn.socket === socket) forget();
      });
      this.guardDestroy(conn);
      // A failed PREPARE must not let its pipelined EXECUTE run the previous statement (see prepare.ts).
      serializePrepares(conn);
      conn.on("error", (error: unknown) => {
        // A pooled connection closed under us: the server or a proxy went away (a node killed closes
        // every connection to it, idle ones included; the driver has already failed the calls in
        // flight). Not the driver retiring an idle one (socketTimeout), the server's wait_timeout, or
        // the pipelined BEGIN's fence ending its own session (pipelined-begin.ts).
        if (this.events.inUse(pool) && !this.sessions.routineClose(conn, error) && !closedByOwnFence(conn)) this.events.noteFault();
        forget();
        suspect();
      });
      this.sessions.identify(conn);
    };
    pool.on("connection", (conn: DriverConnection | undefined) => {
      if (conn) this.sessions.idleSince.set(conn, Date.now());
      adopt(conn);
    });
    // Connections a pool made before it was watched (a pool the app created itself opens some at
    // once) are adopted when first handed out.
    pool.on("acquire", (conn: DriverConnection | undefined) => {
      if (conn) this.sessions.idleSince.delete(conn);
      adopt(conn);
    });
    pool.on("release", (conn: DriverConnection | undefined) => {
      if (conn) this.sessions.idleSince.set(conn, Date.now());
    });
    pool.on("error", (e: unknown) => {
      log(`the pool could not open a connection (${describeError(e)})`);
      if (!this.events.inUse(pool)) return;
      const refusal = refusalOf(e);
      if (refusal) this.health.refuse(refusal.reason, refusal.cause);
      // The account has all its connections (MAX_USER_CONNECTIONS): the app's own pool holds them,
      // callers wait for one of those. Not a fault, not an outage.
      else if (isAccountConnectionLimit(e)) return;
      else {
        this.events.noteFault();
        suspect();
      }
    });
  }

  /** Outage: every connection waiting for a reply is destroyed now; its caller goes on under the safety rule. */
  destroyBusy() {
    for (const conn of this.conns) if (busy(conn)) destroyConnection(conn);
  }

  /**
   * mariadb's destroy() of a busy connection (pool.end() calls it for connections still busy after
   * 10 s; so may anyone) sends `KILL <thread id>` over a new connection to the same address: behind
   * a proxy that reaches another server and ends whichever session has that number there, and its
   * failure (1094) is an unhandled rejection. Such a connection is failed at the socket first (the
   * driver then has nothing left to kill), its session ended only when provably ours, and the
   * pool's own destroy() still does its bookkeeping.
   */
  private guardDestroy(conn: DriverConnection) {
    const destroy = conn.destroy;
    // Not mariadb 3.4's Connection (its socketErrorHandler is how the socket is failed): left as it is.
    if (typeof destroy !== "function" || typeof conn.socketErrorHandler !== "function") return;
    const writable = conn as { destroy: DriverConnection["destroy"] };
    writable.destroy = (...args: unknown[]) => {
      if (busy(conn)) {
        void this.sessions.end(conn, "busy");
        try {
          conn.socketErrorHandler!();
        } catch {
          // the pool's destroy below still runs
        }
      }
      return destroy.apply(conn, args);
    };
  }
}
