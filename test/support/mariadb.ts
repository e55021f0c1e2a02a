// A throwaway MariaDB server for tests: `mariadbd` on a temporary datadir, a free loopback port and
// its own socket, with the app schema applied, and fault helpers (kill connections, set globals,
// kill -9 and restart). It always goes away: `stop()` in an `after` hook, a process exit handler,
// and a watchdog shell that kills the server if this process dies without cleaning up (SIGKILL).
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import mariadb from "mariadb";
import { tolerateDriverInitRejections } from "./driver-bug.ts";
import { forget, killOnExit } from "./exit-hook.ts";

const MIGRATIONS_DIR = new URL("../../prisma/migrations/", import.meta.url);
export const APP_USER = "app";
export const APP_DB = "app";

const SERVER_BINARIES = ["mariadbd", "mysqld"];
const INSTALL_BINARIES = ["mariadb-install-db", "mysql_install_db"];
const SBIN_DIRS = ["/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"];

function findBinary(names: string[], dirs: string[]): string | undefined {
  for (const name of names) {
    for (const dir of dirs) if (existsSync(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

/** Finds mariadbd and mariadb-install-db on PATH and in the sbin folders, or explains how to get them. */
export function requireServerBinaries(
  dirs: string[] = [...(process.env.PATH ?? "").split(":").filter(Boolean), ...SBIN_DIRS],
): { server: string; install: string } {
  const server = findBinary(SERVER_BINARIES, dirs);
  const install = findBinary(INSTALL_BINARIES, dirs);
  if (!server || !install) {
    throw new Error(
      "The tests start their own MariaDB server, but `mariadbd` / `mariadb-install-db` were not found.\n" +
        "Install them with `apt-get install -y mariadb-server` (Debian/Ubuntu) or `brew install mariadb` (macOS),\n" +
        "or point the tests at a server you run with TEST_DATABASE_URL=mysql://root:pw@127.0.0.1:3306/test.",
    );
  }
  return { server, install };
}

export async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** Migration SQL in Prisma's layout, oldest first, split into single statements. */
export function migrationStatements(): string[] {
  const dirs = readdirSync(MIGRATIONS_DIR, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => d.name)
    .sort();
  return dirs.flatMap((dir) =>
    readFileSync(new URL(`${dir}/migration.sql`, MIGRATIONS_DIR), "utf8")
      .split(/;\s*$/m)
      .map((s) => s.replace(/^\s*--.*$/gm, "").trim())
      .filter(Boolean),
  );
}

/** A connection busy with a statement: text protocol (`Query`) or prepared (`Execute`). */
function isRunning(r: ProcessRow): boolean {
  return r.command === "Query" || r.command === "Execute";
}

export interface ProcessRow {
  id: number;
  user: string;
  command: string;
  time: number;
  state: string | null;
  info: string | null;
}

export interface TestDatabase {
  /** URL of the app user over TCP (mysql://app:…@127.0.0.1:port/app). */
  url: string;
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  /** true when the server was started here and can be killed and restarted. */
  embedded: boolean;
  /** With `startDatabase({ tls: true })`: the CA (PEM file) that signed the server's certificate (for 127.0.0.1). */
  tls?: { ca: string };
  /** Runs SQL as an administrator (root over the unix socket when embedded). */
  admin<T = any>(sql: string, values?: unknown[]): Promise<T>;
  /** The app user's connections, as the server sees them. */
  appConnections(): Promise<ProcessRow[]>;
  /**
   * Kills the app's connections: all of them, the idle ones (`Sleep`), or the ones running a
   * statement that contains `running`. Resolves with the killed thread ids once the server no longer
   * lists them.
   */
  killConnections(which: "all" | "idle" | { running: string }): Promise<number[]>;
  /** Resolves once an app connection is running a statement containing `fragment`. */
  waitForStatement(fragment: string, timeoutMs?: number): Promise<ProcessRow>;
  /** A dedicated administrator connection (for session state such as LOCK TABLES). */
  adminConnection(): Promise<mariadb.Connection>;
  setGlobal(name: string, value: number | string): Promise<void>;
  getGlobal(name: string): Promise<string>;
  statusCounter(name: string): Promise<number>;
  /** Deletes every row of the app tables. */
  reset(): Promise<void>;
  kill9(): Promise<void>;
  start(): Promise<void>;
  restart(opts?: { downMs?: number }): Promise<void>;
  stop(): Promise<void>;
}

class MariaDbServer implements TestDatabase {
  readonly embedded = true;
  readonly user = APP_USER;
  readonly database = APP_DB;
  readonly password: string;
  child?: ChildProcess;
  watchdog?: ChildProcess;
  adminPool?: mariadb.Pool;
  readonly socket: string;
  readonly logFile: string;
  tls?: { ca: string };

  constructor(
    readonly bin: { server: string; install: string },
    readonly dir: string,
    readonly port: number,
    readonly host = "127.0.0.1",
    readonly serverId?: number,
    password?: string,
  ) {
    this.password = password ?? randomBytes(9).toString("base64url");
    this.socket = join(dir, "mysqld.sock");
    this.logFile = join(dir, "error.log");
  }

  /** A throwaway CA and a server certificate for 127.0.0.1 / localhost, made with openssl. */
  generateTls() {
    const f = (name: string) => join(this.dir, name);
    writeFileSync(f("san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
    const steps = [
      ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=resilience test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout", f("ca-key.pem"), "-out", f("ca.pem")],
      ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", f("server-key.pem"), "-out", f("server.csr")],
      ["x509", "-req", "-in", f("server.csr"), "-CA", f("ca.pem"), "-CAkey", f("ca-key.pem"), "-CAcreateserial",
        "-days", "2", "-extfile", f("san.ext"), "-out", f("server-cert.pem")],
    ];
    for (const args of steps) {
      const res = spawnSync("openssl", args, { encoding: "utf8", timeout: 30_000 });
      if (res.status !== 0) throw new Error(`openssl ${args[0]} failed (is openssl installed?):\n${res.stderr ?? res.error}`);
    }
    this.tls = { ca: f("ca.pem") };
  }

  get url() {
    return `mysql://${this.user}:${this.password}@${this.host}:${this.port}/${this.database}`;
  }

  get datadir() {
    return join(this.dir, "data");
  }

  initialize() {
    const args = [
      "--no-defaults",
      `--datadir=${this.datadir}`,
      "--auth-root-authentication-method=normal",
      "--skip-test-db",
    ];
    if (process.getuid?.() === 0) args.push("--user=root");
    const res = spawnSync(this.bin.install, args, { encoding: "utf8" });
    if (res.status !== 0) throw new Error(`mariadb-install-db failed:\n${res.stdout}\n${res.stderr}`);
  }

  async start() {
    if (this.child) throw new Error("server already running");
    const args = [
      "--no-defaults",
      `--datadir=${this.datadir}`,
      `--port=${this.port}`,
      `--bind-address=${this.host}`,
      `--socket=${this.socket}`,
      `--pid-file=${join(this.dir, "mysqld.pid")}`,
      `--log-error=${this.logFile}`,
      "--skip-name-resolve",
      "--skip-log-bin",
      "--innodb-buffer-pool-size=64M",
      "--innodb-log-file-size=16M",
      "--innodb-flush-log-at-trx-commit=2",
      "--max-connections=200",
    ];
    if (this.serverId !== undefined) args.push(`--server-id=${this.serverId}`);
    if (this.tls) {
      const f = (name: string) => join(this.dir, name);
      args.push(`--ssl-ca=${f("ca.pem")}`, `--ssl-cert=${f("server-cert.pem")}`, `--ssl-key=${f("server-key.pem")}`);
    }
    if (process.getuid?.() === 0) args.push("--user=root");
    const child = spawn(this.bin.server, args, { stdio: "ignore" });
    this.child = child;
    child.once("exit", () => {
      if (this.child === child) this.child = undefined;
    });
    // Kills the server if this process goes away without calling stop() (even on SIGKILL).
    this.watchdog = spawn(
      "sh",
      ["-c", `while kill -0 ${process.pid} 2>/dev/null; do sleep 0.5; done; kill -9 ${child.pid} 2>/dev/null; sleep 0.5; rm -rf '${this.dir}'`],
      { stdio: "ignore", detached: true },
    );
    this.watchdog.unref();
    killOnExit(this.onExit);
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (!this.child) throw new Error(`mariadbd exited during start-up:\n${this.tailLog()}`);
      try {
        const conn = await mariadb.createConnection({ socketPath: this.socket, user: "root", connectTimeout: 500 });
        await conn.end();
        break;
      } catch {
        if (Date.now() > deadline) throw new Error(`mariadbd did not accept connections in 30 s:\n${this.tailLog()}`);
        await sleep(50);
      }
    }
    this.adminPool = mariadb.createPool({
      socketPath: this.socket,
      user: "root",
      connectionLimit: 2,
      multipleStatements: true,
    });
    // The pool opens its connections in the background; wait for them (bounded), so that what a
    // test connects next gets the thread ids that follow, not ones the pool takes meanwhile.
    for (const until = Date.now() + 5_000; this.adminPool.totalConnections() < 2 && Date.now() < until; ) await sleep(10);
  }

  tailLog() {
    try {
      return readFileSync(this.logFile, "utf8").split("\n").slice(-15).join("\n");
    } catch {
      return "(no error log)";
    }
  }

  async setup() {
    await this.admin(`CREATE DATABASE IF NOT EXISTS \`${this.database}\``);
    await this.admin(`CREATE USER IF NOT EXISTS '${this.user}'@'%' IDENTIFIED BY '${this.password}'`);
    await this.admin(`GRANT ALL ON \`${this.database}\`.* TO '${this.user}'@'%'`);
    for (const stmt of migrationStatements()) await this.admin(`USE \`${this.database}\`; ${stmt}`);
  }

  async admin<T = any>(sql: string, values?: unknown[]): Promise<T> {
    if (!this.adminPool) throw new Error("server is not running");
    return (await this.adminPool.query(sql, values)) as T;
  }

  async appConnections(): Promise<ProcessRow[]> {
    const rows = await this.admin<any[]>(
      "SELECT ID, USER, COMMAND, TIME, STATE, INFO FROM information_schema.PROCESSLIST WHERE USER = ?",
      [this.user],
    );
    return rows.map((r) => ({
      id: Number(r.ID),
      user: r.USER,
      command: r.COMMAND,
      time: Number(r.TIME),
      state: r.STATE,
      info: r.INFO,
    }));
  }

  async killConnections(which: "all" | "idle" | { running: string }): Promise<number[]> {
    const rows = await this.appConnections();
    const targets = rows.filter((r) => {
      if (r.command === "Killed") return false;
      if (which === "all") return true;
      if (which === "idle") return r.command === "Sleep";
      return isRunning(r) && (r.info ?? "").includes(which.running);
    });
    for (const t of targets) await this.admin(`KILL ${t.id}`).catch(() => undefined);
    const ids = targets.map((t) => t.id);
    const deadline = Date.now() + 5000;
    while (ids.length > 0) {
      const alive = (await this.appConnections()).filter((r) => ids.includes(r.id));
      if (alive.length === 0) break;
      if (Date.now() > deadline) throw new Error(`connections ${alive.map((a) => a.id)} survived KILL`);
      await sleep(10);
    }
    return ids;
  }

  async waitForStatement(fragment: string, timeoutMs = 5000): Promise<ProcessRow> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const row = (await this.appConnections()).find((r) => isRunning(r) && (r.info ?? "").includes(fragment));
      if (row) return row;
      if (Date.now() > deadline) throw new Error(`no app connection ran a statement with ${fragment} within ${timeoutMs} ms`);
      await sleep(10);
    }
  }

  async adminConnection(): Promise<mariadb.Connection> {
    const conn = await mariadb.createConnection({ socketPath: this.socket, user: "root", database: this.database });
    conn.on("error", () => undefined);
    return conn;
  }

  async setGlobal(name: string, value: number | string) {
    if (!/^[a-z_]+$/i.test(name)) throw new TypeError(`bad variable name ${name}`);
    await this.admin(`SET GLOBAL ${name} = ?`, [value]);
  }

  async getGlobal(name: string): Promise<string> {
    if (!/^[a-z_]+$/i.test(name)) throw new TypeError(`bad variable name ${name}`);
    const rows = await this.admin<any[]>(`SELECT @@global.${name} AS v`);
    return String(rows[0].v);
  }

  async statusCounter(name: string): Promise<number> {
    const rows = await this.admin<any[]>("SHOW GLOBAL STATUS LIKE ?", [name]);
    if (rows.length === 0) throw new Error(`no status variable ${name}`);
    return Number(rows[0].Value);
  }

  async reset() {
    await this.admin(
      `USE \`${this.database}\`; SET FOREIGN_KEY_CHECKS = 0; TRUNCATE TABLE Post; TRUNCATE TABLE Ledger; TRUNCATE TABLE User; SET FOREIGN_KEY_CHECKS = 1`,
    );
  }

  async closeAdmin() {
    const pool = this.adminPool;
    this.adminPool = undefined;
    await pool?.end().catch(() => undefined);
  }

  async kill9() {
    const child = this.child;
    if (!child) throw new Error("server is not running");
    await this.closeAdmin();
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGKILL");
    await exited;
    this.watchdog?.kill("SIGKILL");
  }

  async restart(opts: { downMs?: number } = {}) {
    await this.kill9();
    if (opts.downMs) await sleep(opts.downMs);
    await this.start();
  }

  private readonly onExit = () => this.killNow();

  /** On process exit: kill the server now; the watchdog (left running) removes the datadir. */
  killNow() {
    try {
      this.child?.kill("SIGKILL");
    } catch {}
  }

  async stop() {
    await this.closeAdmin();
    const child = this.child;
    if (child) {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGKILL");
      await exited;
    }
    this.watchdog?.kill("SIGKILL");
    forget(this.onExit);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A server the user runs (TEST_DATABASE_URL): faults that need the process are unavailable. */
class ExternalServer implements TestDatabase {
  readonly embedded = false;
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  readonly database: string;
  pool: mariadb.Pool;

  constructor(readonly url: string) {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      // Node's TypeError carries the input, password and all: never printed.
      throw new TypeError("the database URL is not a valid URL (a character such as / or @ in the password must be percent-encoded)");
    }
    this.host = u.hostname;
    this.port = Number(u.port || 3306);
    this.user = decodeURIComponent(u.username);
    this.password = decodeURIComponent(u.password);
    this.database = u.pathname.slice(1);
    this.pool = mariadb.createPool({
      host: this.host,
      port: this.port,
      user: this.user,
      password: this.password,
      database: this.database,
      connectionLimit: 2,
      multipleStatements: true,
    });
  }

  admin<T = any>(sql: string, values?: unknown[]): Promise<T> {
    return this.pool.query(sql, values) as Promise<T>;
  }

  async setup() {
    const tables = await this.admin<any[]>("SHOW TABLES");
    if (tables.length === 0) for (const stmt of migrationStatements()) await this.admin(stmt);
  }

  appConnections = MariaDbServer.prototype.appConnections;
  waitForStatement = MariaDbServer.prototype.waitForStatement;
  async adminConnection(): Promise<mariadb.Connection> {
    const conn = await mariadb.createConnection({ host: this.host, port: this.port, user: this.user, password: this.password, database: this.database });
    conn.on("error", () => undefined);
    return conn;
  }
  killConnections = MariaDbServer.prototype.killConnections;
  setGlobal = MariaDbServer.prototype.setGlobal;
  getGlobal = MariaDbServer.prototype.getGlobal;
  statusCounter = MariaDbServer.prototype.statusCounter;

  async reset() {
    await this.admin(
      "SET FOREIGN_KEY_CHECKS = 0; DELETE FROM Post; DELETE FROM Ledger; DELETE FROM User; SET FOREIGN_KEY_CHECKS = 1",
    );
  }

  notHere(): never {
    throw new Error("TEST_DATABASE_URL points at a server this process did not start: it cannot kill or restart it");
  }
  async kill9() {
    this.notHere();
  }
  async start() {
    this.notHere();
  }
  async restart() {
    this.notHere();
  }
  async stop() {
    await this.pool.end();
  }
}

/** Uses a server someone else runs (its user must be allowed to KILL and SET GLOBAL for the faults). */
export async function connectDatabase(url: string): Promise<TestDatabase> {
  tolerateDriverInitRejections();
  const server = new ExternalServer(url);
  await server.setup();
  return server;
}

export interface StartOptions {
  tls?: boolean;
  /** A loopback address to listen on (default 127.0.0.1): two servers can then share a port. */
  host?: string;
  port?: number;
  /** `--server-id` (default the server's own, 1). */
  serverId?: number;
  /** The app user's password (default a random one). */
  password?: string;
}

/**
 * Starts a fresh MariaDB (or connects to TEST_DATABASE_URL) with the app schema applied.
 * `tls: true` also gives the server a certificate signed by a throwaway CA (`db.tls.ca`): TLS is
 * then available, not required (create a user `REQUIRE SSL` for that). Call `stop()` in an `after` hook.
 */
export async function startDatabase(options: StartOptions = {}): Promise<TestDatabase> {
  tolerateDriverInitRejections();
  const external = process.env.TEST_DATABASE_URL;
  if (external && options.tls) throw new Error("TLS tests need a server they start themselves: unset TEST_DATABASE_URL");
  if (external) return await connectDatabase(external);
  const bin = requireServerBinaries();
  const dir = mkdtempSync(join(tmpdir(), "resilience-mariadb-"));
  const server = new MariaDbServer(bin, dir, options.port ?? (await freePort()), options.host, options.serverId, options.password);
  try {
    if (options.tls) server.generateTls();
    server.initialize();
    await server.start();
    await server.setup();
  } catch (error) {
    await server.stop().catch(() => undefined);
    throw error;
  }
  return server;
}
