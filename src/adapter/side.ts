// Side connections: the adapter's own short-lived connections to the server, beside the app's pool.
// Probes, the silent-drop watchdog's session checks and ghost kills all use them. Each is a complete,
// authenticated connection made with the adapter's own settings (URL or config, `stream` included)
// and closed with COM_QUIT: the server does not count it as an aborted connect (a bare TCP connect
// closed before the handshake is one, and on a remote server enough of those block the app's host,
// error 1129). They need the mariadb driver; without it (another adapter) a TCP probe is the fallback.
import { EventEmitter } from "node:events";
import { connect as tcpConnect, type Socket } from "node:net";
import { headerOf } from "../errors/classify.ts";
import type { ConnectFailure } from "../errors/errors.ts";
import { flavorOf, serverIdentityOf, serverSql, type ServerIdentity } from "./identity.ts";

/** The driver's connection options (mariadb `ConnOptions`): host, port, socketPath, stream, user, password … */
export type ConnOptions = Record<string, any>;

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

export type ProbeResult =
  | { ok: true }
  | { ok: false; reason: string; /** The server answered and refused us: never retried. */ refusal?: ConnectFailure; error?: unknown };

export { flavorOf, isSessionRow, processlist, restartOf, sameServer, serverIdentityOf, sessionIdentityOf, sessionRowSql, sessionSql, type Flavor, type ServerIdentity, type SessionIdentity } from "./identity.ts";

let driver: Promise<any> | undefined;
function loadDriver(): Promise<any> {
  driver ??= import("mariadb").then(
    (m: any) => m.default ?? m,
    () => undefined,
  );
  return driver;
}

/**
 * Runs `connect` (a driver adapter factory's connect()) and returns the mariadb pool it creates, if
 * it creates one. mariadb's Pool registers its own listeners in its constructor, synchronously
 * inside connect() (before connect's first await), so `EventEmitter.prototype.on` is observed for
 * exactly that synchronous stretch and restored before anything else can run. The adapter keeps its
 * settings in a private field; this is how the probe learns them before any connection succeeds.
 * `onPool` runs the moment the pool is recognised: still inside its constructor, before it starts
 * its first connection.
 */
export function capturePool<T>(connect: () => T, onPool?: (pool: any) => void): { result: T; pool?: any } {
  const original = EventEmitter.prototype.on;
  let pool: any;
  EventEmitter.prototype.on = function (this: any, name: string | symbol, listener: (...args: any[]) => void) {
    if (pool === undefined && this?.opts?.connOptions && typeof this.getConnection === "function") {
      pool = this;
      onPool?.(pool);
    }
    return original.call(this, name, listener);
  } as typeof original;
  try {
    const result = connect();
    return { result, pool };
  } finally {
    EventEmitter.prototype.on = original;
  }
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

// An expired password at login (1862: the server disconnects an expired account) is the account's
// credentials, like a wrong password; a locked account (4151 MariaDB, 3118 MySQL) is no access. Both
// are answers of a running server about this account, never a verdict that the server is down.
const AUTH_CODES = new Set([1045, 1698, 1251, 1862]);
const ACCESS_CODES = new Set([1044, 1130, 1227, 1129, 3118, 4151]);
const UNKNOWN_DB_CODES = new Set([1049]);
const ACCESS_KINDS: Record<string, ConnectFailure> = {
  AuthenticationFailed: "auth",
  DatabaseAccessDenied: "access",
  DatabaseDoesNotExist: "unknown-database",
};

// A connection refused for a connection count: too many connections (1040), the account's
// max_user_connections (1203) or MAX_USER_CONNECTIONS / hourly connection quota (1226).
const CONNECTION_LIMIT_CODES = new Set([1040, 1203, 1226]);

/** The refusal an error carries at any depth (wrong password, no access, unknown database), if any. */
export function refusalOf(error: unknown): { reason: ConnectFailure; cause: unknown } | undefined {
  const seen = new Set<unknown>();
  const visit = (e: any, depth: number): { reason: ConnectFailure; cause: unknown } | undefined => {
    if (depth > 6 || e === null || e === undefined || seen.has(e)) return undefined;
    if (typeof e === "string") {
      // The driver adapter keeps a pool timeout's cause only as text: its error number is read from
      // the driver's header (no: NNNN) only, never from another number in it (conn:NNNN is a thread id).
      const { errno } = headerOf(e);
      const code = errno !== undefined ? errno : /access denied/i.test(e) ? 1045 : /unknown database/i.test(e) ? 1049 : undefined;
      const reason = code === undefined ? undefined : AUTH_CODES.has(code) ? "auth" : ACCESS_CODES.has(code) ? "access" : UNKNOWN_DB_CODES.has(code) ? "unknown-database" : undefined;
      return reason ? { reason, cause: e } : undefined;
    }
    if (typeof e !== "object") return undefined;
    seen.add(e);
    if (typeof e.kind === "string" && ACCESS_KINDS[e.kind]) return { reason: ACCESS_KINDS[e.kind], cause: e };
    const errno = typeof e.errno === "number" ? e.errno : typeof e.kind === "string" && typeof e.code === "number" ? e.code : undefined;
    if (errno !== undefined) {
      if (AUTH_CODES.has(errno)) return { reason: "auth", cause: e };
      if (ACCESS_CODES.has(errno)) return { reason: "access", cause: e };
      if (UNKNOWN_DB_CODES.has(errno)) return { reason: "unknown-database", cause: e };
    }
    return visit(e.meta?.driverAdapterError, depth + 1) ?? visit(e.cause, depth + 1);
  };
  return visit(error, 0);
}

/** The connection string of these options, with the password as ****. */
export function redactedUrl(o: ConnOptions | undefined): string {
  if (!o) return "mysql://(unknown)";
  const user = o.user ? `${encodeURIComponent(String(o.user))}:****@` : "";
  const host = o.socketPath ? "localhost" : `${o.host ?? "localhost"}:${o.port ?? 3306}`;
  const query = o.socketPath ? `?socketPath=${encodeURIComponent(String(o.socketPath))}` : "";
  return `mysql://${user}${host}/${o.database ?? ""}${query}`;
}

export function failureOf(e: any): ProbeResult {
  const refusal = refusalOf(e);
  if (refusal) return { ok: false, reason: refusal.reason === "auth" ? "authentication failed" : refusal.reason === "access" ? "access denied" : "unknown database", refusal: refusal.reason, error: e };
  const code = e?.code ?? e?.cause?.code;
  if (code === "ECONNREFUSED" || code === "ENOENT") return { ok: false, reason: "connection refused", error: e };
  if (e?.errno === 45012 || code === "ETIMEDOUT") return { ok: false, reason: "no answer", error: e };
  // Too many connections, the server's or this account's (1226: MAX_USER_CONNECTIONS, all of them
  // the app's pool): the server is there and answering.
  if (CONNECTION_LIMIT_CODES.has(e?.errno)) return { ok: true };
  return { ok: false, reason: typeof code === "string" ? code : "connection lost", error: e };
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

/**
 * Authentication plugins a direct connection to a node's advertised address may use: none that
 * hands the password to the other end. With TLS of any kind the driver sends it in clear inside the
 * TLS session for the sha256 plugins (and it checks the certificate only after authentication), so
 * those two are allowed only without TLS and without fetching the server's RSA key.
 */
function directAuth(config: ConnOptions): string[] {
  const plugins = ["mysql_native_password", "client_ed25519", "parsec"];
  if (!config.ssl && !config.allowPublicKeyRetrieval) plugins.push("caching_sha2_password", "sha256_password");
  const theirs = pluginList(config.restrictedAuth);
  return theirs ? plugins.filter((p) => theirs.includes(p)) : plugins;
}

/** `restrictedAuth` as the driver reads it (an array, or a comma-separated string). */
function pluginList(value: unknown): string[] | undefined {
  if (Array.isArray(value)) return value.map(String);
  if (typeof value === "string") return value.split(",").map((p) => p.trim());
  return undefined;
}

/** The auth plugin a protocol-10 greeting names, read as mariadb 3.4's InitialHandshake reads it. */
export function greetingPlugin(payload: Buffer): string | undefined {
  try {
    if (payload[0] !== 10) return undefined;
    let at = payload.indexOf(0, 1);
    if (at < 0) return undefined;
    at += 1 + 4 + 8 + 1; // NUL after the version, thread id, seed part 1, filler
    let caps = payload.readUInt16LE(at);
    at += 2 + 1 + 2; // capabilities (low), collation, status
    caps += payload.readUInt16LE(at) * 0x10000;
    at += 2;
    const pluginAuth = (caps & (1 << 19)) !== 0;
    const saltLength = pluginAuth ? Math.max(12, payload[at] - 9) : 0;
    at += 1 + 10;
    if (caps & (1 << 15)) at += saltLength;
    at += 1;
    if (!pluginAuth) return "mysql_native_password";
    const end = payload.indexOf(0, at);
    if (at > payload.length || end < 0) return undefined;
    return payload.toString("latin1", at, end);
  } catch {
    return undefined;
  }
}

/**
 * The driver answers the server's greeting with the plugin the greeting names, without looking at
 * `restrictedAuth` (that covers only a later switch), and before any certificate check. On a direct
 * connection the greeting is read first (buffered until whole: the driver cannot answer earlier
 * either): a plugin not in `allowed` closes the socket before the driver can answer. An error
 * packet is let through (the driver answers nothing to it).
 */
function guardGreeting(socket: Socket, allowed: string[]) {
  let buffered = Buffer.alloc(0);
  const onData = (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    if (buffered.length < 4 || buffered.length < 4 + buffered.readUIntLE(0, 3)) return;
    socket.off("data", onData);
    const payload = buffered.subarray(4, 4 + buffered.readUIntLE(0, 3));
    if (payload[0] === 0xff) return;
    const plugin = greetingPlugin(payload);
    if (plugin === undefined || !allowed.includes(plugin)) {
      socket.destroy(Object.assign(new Error("refused: the server asked for an authentication plugin a direct connection does not use"), { code: "EPROTO" }));
    }
  };
  socket.prependListener("data", onData);
}

/** An open side connection (mariadb ConnectionPromise). */
export interface SideConnection {
  query(sql: string, values?: unknown[]): Promise<any>;
  end(): Promise<void>;
  destroy(): void;
}

/**
 * Opens side connections and remembers the ones still being made, so that close() leaves nothing
 * behind: an attempt that answers after its caller gave up is closed properly when it does.
 */
export class SideConnections {
  private closed = false;
  private readonly open = new Set<SideConnection>();
  private readonly sockets = new WeakMap<SideConnection, Socket>();
  /** Sockets of connections still being made. */
  private readonly connecting = new Set<Socket>();
  /** How long the last successful side connection took to open, in ms. */
  private lastAnswerMs = 0;

  constructor(
    private readonly config: () => ConnOptions | undefined,
    private readonly target: () => ProbeTarget | undefined,
  ) {}

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
