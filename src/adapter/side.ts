// Side connections: the adapter's own short-lived connections to the server, beside the app's pool.
// Probes, the silent-drop watchdog's session checks and ghost kills all use them. Each is a complete,
// authenticated connection made with the adapter's own settings (URL or config, `stream` included)
// and closed with COM_QUIT: the server does not count it as an aborted connect (a bare TCP connect
// closed before the handshake is one, and on a remote server enough of those block the app's host,
// error 1129). They need the mariadb driver; without it (another adapter) a TCP probe is the fallback.
import { connect as tcpConnect, type Socket } from "node:net";
import { directAuth, guardGreeting } from "../mysql/handshake.ts";
import type { ProbeResult } from "../core/health.ts";
import type { ConnOptions } from "./driver.ts";
import { failureOf } from "../mysql/refusal.ts";
import { flavorOf, serverIdentityOf, serverSql, type ServerIdentity } from "../mysql/identity.ts";

export type { ConnOptions } from "./driver.ts";

/** A server's own TCP address (a Galera node's client address), to reach it without the proxy. */
export interface NodeAddress {
  host: string;
  port: number;
}

export interface ProbeTarget {
  host?: string;
  port?: number;
  socketPath?: string;
}

export type { ProbeResult } from "../core/health.ts";
export { failureOf, refusalOf } from "../mysql/refusal.ts";
export { flavorOf, isSessionRow, processlist, restartOf, sameServer, serverIdentityOf, sessionIdentityOf, sessionRowSql, sessionSql, type Flavor, type ServerIdentity, type SessionIdentity } from "../mysql/identity.ts";

let driver: Promise<any> | undefined;
function loadDriver(): Promise<any> {
  driver ??= import("mariadb").then(
    (m: any) => m.default ?? m,
    () => undefined,
  );
  return driver;
}

/**
 * A timeout that a stalled event loop cannot fake: when it fires much later than asked (the loop
 * was blocked, so an answer may be sitting unread), it gives the answer a fresh window; and it ends
 * the wait only after already received I/O has been processed (setImmediate runs after the poll phase).
 */
export function patientTimeout(ms: number, fire: () => void): () => void {
  let start = performance.now();
  let stalls = 0;
  let timer: NodeJS.Timeout | undefined;
  let immediate: NodeJS.Immediate | undefined;
  const check = () => {
    const late = performance.now() - start - ms;
    if (late > Math.max(20, ms / 2) && stalls < 3) {
      stalls++;
      start = performance.now();
      timer = setTimeout(check, ms);
      return;
    }
    immediate = setImmediate(fire);
  };
  timer = setTimeout(check, ms);
  return () => {
    clearTimeout(timer);
    if (immediate) clearImmediate(immediate);
  };
}

/**
 * The driver's `stream` option, so that the side connection's socket is ours to close: the socket
 * path, else the app's own `stream` (called as the driver calls it), else host:port. `onSocket`
 * hears of each socket made.
 */
function ownStream(config: ConnOptions, onSocket: (s: Socket) => void): (cb: (err?: Error | null, s?: Socket) => void) => Socket | undefined {
  const theirs = typeof config.stream === "function" ? config.stream : undefined;
  const tcp = () => tcpConnect({ host: config.host ?? "localhost", port: config.port ?? 3306 });
  return (cb) => {
    if (!config.socketPath && theirs) {
      const returned: Socket | undefined = theirs.call(config, (err: Error | null | undefined, given?: Socket) => {
        const s = given ?? (err ? undefined : tcp());
        if (s) onSocket(s);
        cb(err, s);
      });
      if (returned) onSocket(returned);
      return returned;
    }
    const s = config.socketPath ? tcpConnect({ path: config.socketPath }) : tcp();
    onSocket(s);
    return s;
  };
}

/** An open side connection (mariadb ConnectionPromise). */
export interface SideConnection {
  query(sql: string, values?: unknown[]): Promise<any>;
  end(): Promise<void>;
  destroy(): void;
}

/** A connection of mariadb's pool (getConnection()). Its destroy() is guarded: see pool.ts guardDestroy. */
export interface PooledLike {
  query(sql: string, values?: unknown[]): Promise<any>;
  release(): Promise<void>;
  destroy(): void;
}

/**
 * Opens side connections and remembers the ones still being made, so that close() leaves nothing
 * behind: an attempt that answers after its caller gave up is closed properly when it does.
 */
export class SideConnections {
  private closed = false;
  /** A pool connection is borrowed (borrowFromPool): one at a time. */
  private borrowing = false;
  private readonly open = new Set<SideConnection>();
  private readonly sockets = new WeakMap<SideConnection, Socket>();
  /** Sockets of connections still being made. */
  private readonly connecting = new Set<Socket>();
  /** How long the last successful side connection took to open, in ms. */
  private lastAnswerMs = 0;

  constructor(
    private readonly config: () => ConnOptions | undefined,
    private readonly target: () => ProbeTarget | undefined,
    /** A connection of the app's own pool (undefined: none to be had), for when the account may open no more. */
    private readonly fromPool?: () => Promise<PooledLike | undefined>,
  ) {}

  /**
   * An idle connection of the app's own pool, used as a side connection: where the account has all
   * the connections it may have (MAX_USER_CONNECTIONS, 1226), all of them the pool's, no side
   * connection can be opened, and a verification would wait in vain. Only an idle one (never a place
   * in the pool's queue, ahead of the app's callers), one at a time. Given back when its session was
   * left as it was; destroyed after a `SET` or when forced. Bounded by `timeoutMs`.
   */
  async borrowFromPool(timeoutMs: number): Promise<SideConnection | undefined> {
    if (!this.fromPool || this.closed || this.borrowing) return undefined;
    this.borrowing = true;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), timeoutMs)));
    const getting = this.fromPool().catch(() => undefined);
    const pooled = await Promise.race([getting, late]);
    clearTimeout(timer);
    if (!pooled || this.closed) {
      this.borrowing = false;
      // One that came too late goes back unused.
      void (pooled ? Promise.resolve(pooled) : getting).then((p) => p?.release().catch(() => p.destroy()));
      return undefined;
    }
    let changed = false;
    let done = false;
    const finish = (keep: boolean) => {
      if (done) return Promise.resolve();
      done = true;
      this.borrowing = false;
      this.open.delete(side);
      // Not awaited: giving it back can take a round trip (a ROLLBACK), past the caller's deadline.
      if (keep && !changed) void pooled.release().catch(() => pooled.destroy());
      else pooled.destroy();
      return Promise.resolve();
    };
    const side: SideConnection = {
      query: (sql, values) => {
        if (/^\s*SET\b/i.test(sql)) changed = true;
        return pooled.query(sql, values);
      },
      end: () => finish(true),
      destroy: () => void finish(false),
    };
    this.open.add(side);
    return side;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  get canConnect(): boolean {
    return this.config() !== undefined || this.target() !== undefined;
  }

  /**
   * Can a side connection go to another address than the app's (same user, password, TLS)? Not
   * with a custom `stream` (it decides where the bytes go) or without the driver's settings.
   */
  get canConnectDirectly(): boolean {
    const config = this.config();
    return config !== undefined && typeof config.stream !== "function";
  }

  /**
   * Opens a side connection, or says why it could not within `timeoutMs` (a stalled loop excepted).
   * `at`: to that address instead of the app's (see canConnectDirectly).
   */
  async connect(timeoutMs: number, at?: NodeAddress): Promise<{ conn?: SideConnection; result: ProbeResult }> {
    if (at && !this.canConnectDirectly) return { result: { ok: false, reason: "no direct route" } };
    const base = this.config();
    const config =
      base && at
        ? {
            ...base,
            host: at.host,
            port: at.port,
            socketPath: undefined,
            stream: undefined,
            // An address the cluster advertised, not one the app was given: no plugin that would
            // hand it the password (also checked in the greeting: guardGreeting).
            restrictedAuth: directAuth(base),
          }
        : base;
    const mariadb = config ? await loadDriver() : undefined;
    if (at && !mariadb) return { result: { ok: false, reason: "no direct route" } };
    if (!config || !mariadb) return { result: await this.tcpProbe(timeoutMs) };
    if (this.closed) return { result: { ok: false, reason: "closed" } };
    // A server known to take longer than `timeoutMs` to accept a connection is given that time
    // (a probeTimeout below a round trip must not turn a slow answer into an outage).
    const waitMs = Math.max(timeoutMs, this.lastAnswerMs * 3);
    const t0 = performance.now();
    return await new Promise((resolve) => {
      let done = false;
      const cancel = patientTimeout(waitMs, () => {
        done = true;
        resolve({ result: { ok: false, reason: "no answer" } });
      });
      let socket: Socket | undefined;
      const guard = at ? directAuth(config) : undefined;
      const stream = ownStream(config, (s) => {
        socket = s;
        this.connecting.add(s);
        if (guard) guardGreeting(s, guard);
      });
      const settled = () => {
        if (socket) this.connecting.delete(socket);
      };
      // The driver's own connectTimeout is only the backstop of an attempt nobody waits for any more.
      const attempt: Promise<SideConnection> = mariadb.createConnection({
        ...config,
        socketPath: undefined, // the stream connects to it: the driver would take it before `stream`
        stream,
        // A side connection stays where it was sent (a redirect would bypass its socket).
        permitRedirect: false,
        connectTimeout: Math.max(10_000, timeoutMs * 4),
        socketTimeout: 0,
        queryTimeout: 0,
      });
      attempt.then(
        (conn) => {
          settled();
          if (socket) this.sockets.set(conn, socket);
          (conn as any).on?.("error", () => undefined);
          // Late answers count too; a direct route to one node says nothing about the app's address.
          if (!at) this.lastAnswerMs = performance.now() - t0;
          if (done || this.closed) {
            void conn.end().catch(() => this.destroy(conn));
            return;
          }
          done = true;
          cancel();
          this.open.add(conn);
          resolve({ conn, result: { ok: true } });
        },
        (e) => {
          settled();
          if (done) return;
          done = true;
          cancel();
          resolve({ result: failureOf(e) });
        },
      );
    });
  }

  /** Closes a side connection with COM_QUIT (or destroys it when `force`: a statement is stuck). */
  async release(conn: SideConnection, force = false) {
    this.open.delete(conn);
    if (force) this.destroy(conn);
    else await conn.end().catch(() => this.destroy(conn));
  }

  /**
   * Closes the socket. Not the driver's destroy(): with a statement running, that opens another
   * connection to the same address and sends `KILL <thread id>`, which behind a proxy reaches
   * another server and ends whatever session has that number there (and its failure, 1094, is an
   * unhandled rejection).
   */
  private destroy(conn: SideConnection) {
    const socket = this.sockets.get(conn);
    if (!socket) return conn.destroy();
    // 'end' first: the driver's handler fails what is pending and closes the socket it now uses
    // (a TLS socket on top of this one), without an error event nobody listens for any more.
    socket.emit("end");
    socket.destroy();
  }

  /**
   * A probe: a complete connection, closed at once. A connection lost half-way (the server accepted
   * it, then it was reset or killed) is tried once more: only a refusal or no answer is an outage.
   */
  async probe(timeoutMs: number): Promise<ProbeResult> {
    for (let attempt = 0; ; attempt++) {
      const { conn, result } = await this.connect(timeoutMs);
      if (conn) await this.release(conn);
      if (result.ok || result.refusal || attempt > 0 || this.closed) return result;
      if (result.reason === "connection refused" || result.reason === "no answer") return result;
    }
  }

  /** Server identity over a side connection. */
  static async serverIdentity(conn: SideConnection): Promise<ServerIdentity | undefined> {
    // undefined where the server does not say (no rights on the status table): then nothing is killed.
    const rows = await conn.query(serverSql(flavorOf(conn))).catch(() => undefined);
    return serverIdentityOf(rows?.[0]);
  }

  /** Without the driver's settings (another adapter): a TCP connect; it does count as an aborted connect. */
  private tcpProbe(timeoutMs: number): Promise<ProbeResult> {
    const target = this.target();
    if (!target) return Promise.resolve({ ok: false, reason: "unknown server" });
    return new Promise((resolve) => {
      const socket = target.socketPath
        ? tcpConnect({ path: target.socketPath })
        : tcpConnect({ host: target.host ?? "localhost", port: target.port ?? 3306 });
      const done = (result: ProbeResult) => {
        cancel();
        socket.destroy();
        resolve(result);
      };
      const cancel = patientTimeout(timeoutMs, () => done({ ok: false, reason: "no answer" }));
      socket.once("connect", () => done({ ok: true }));
      socket.once("error", (e: NodeJS.ErrnoException) =>
        done({ ok: false, reason: e.code === "ECONNREFUSED" || e.code === "ENOENT" ? "connection refused" : (e.code ?? "connection lost") }),
      );
    });
  }

  close() {
    this.closed = true;
    for (const conn of this.open) this.destroy(conn);
    // Attempts nobody waits for any more (the driver's connectTimeout is long): ended now.
    for (const s of this.connecting) {
      s.emit("end"); // the driver fails the attempt (and clears its connect timer)
      s.destroy();
    }
    this.connecting.clear();
    this.open.clear();
  }
}
