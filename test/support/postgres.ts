// A throwaway PostgreSQL server for tests: `initdb` on a temporary datadir and `postgres` on a free
// loopback port and its own socket folder, run as a non-root user (PostgreSQL refuses root), with
// the app schema applied (prisma/postgres/migrations), and fault helpers (terminate backends, kill
// -9 of the whole server, an immediate shutdown, restart). It always goes away: `stop()` in an
// `after` hook, a process exit handler, and a watchdog shell that kills the server if this process
// dies without cleaning up.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, chownSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { forget, killOnExit } from "./exit-hook.ts";
import { freePort } from "./mariadb.ts";

const MIGRATIONS_DIR = new URL("../../prisma/postgres/migrations/", import.meta.url);
export const PG_APP_USER = "app";
export const PG_APP_DB = "app";

/** initdb and postgres: PATH first, then Debian's /usr/lib/postgresql/<version>/bin (newest first). */
export function requirePostgresBinaries(): { initdb: string; postgres: string } {
  const dirs = (process.env.PATH ?? "").split(":").filter(Boolean);
  const debian = "/usr/lib/postgresql";
  if (existsSync(debian)) {
    const versions = readdirSync(debian).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
    dirs.push(...versions.map((v) => join(debian, v, "bin")));
  }
  const find = (name: string) => dirs.map((d) => join(d, name)).find((p) => existsSync(p));
  const initdb = find("initdb");
  const postgres = find("postgres");
  if (!initdb || !postgres) {
    throw new Error(
      "The PostgreSQL tests start their own server, but `initdb` / `postgres` were not found.\n" +
        "Install them with `apt-get install -y postgresql` (Debian/Ubuntu) or `brew install postgresql` (macOS).",
    );
  }
  return { initdb, postgres };
}

/** The user the server runs as: this process's own, or (as root) Debian's `postgres` / `nobody`. */
function serverUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  for (const name of ["postgres", "nobody"]) {
    const res = spawnSync("id", ["-u", name], { encoding: "utf8" });
    const gid = spawnSync("id", ["-g", name], { encoding: "utf8" });
    if (res.status === 0 && gid.status === 0) return { uid: Number(res.stdout.trim()), gid: Number(gid.stdout.trim()) };
  }
  throw new Error("running as root, and neither a `postgres` nor a `nobody` user exists to run PostgreSQL as");
}

/** Migration SQL, oldest first, split into single statements. */
function migrationStatements(): string[] {
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

export interface BackendRow {
  pid: number;
  state: string | null;
  query: string;
  backendStart: Date;
  xactStart: Date | null;
  clientPort: number | null;
}

export class PostgresServer {
  readonly user = PG_APP_USER;
  readonly database = PG_APP_DB;
  readonly host = "127.0.0.1";
  readonly password = randomBytes(9).toString("base64url");
  child?: ChildProcess;
  watchdog?: ChildProcess;
  private adminPool?: pg.Pool;
  private readonly owner = serverUser();

  constructor(
    readonly bin: { initdb: string; postgres: string },
    readonly dir: string,
    readonly port: number,
  ) {}

  get datadir() {
    return join(this.dir, "data");
  }
  get socketDir() {
    return this.dir;
  }
  get logFile() {
    return join(this.dir, "postgres.log");
  }
  /** URL of the app user over TCP (postgresql://app:…@127.0.0.1:port/app). */
  get url() {
    return `postgresql://${this.user}:${this.password}@${this.host}:${this.port}/${this.database}`;
  }

  private spawnOptions() {
    return this.owner ? { uid: this.owner.uid, gid: this.owner.gid } : {};
  }

  initialize() {
    if (this.owner) {
      chownSync(this.dir, this.owner.uid, this.owner.gid);
      chmodSync(this.dir, 0o700);
    }
    const res = spawnSync(this.bin.initdb, ["-D", this.datadir, "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync"], {
      encoding: "utf8",
      ...this.spawnOptions(),
    });
    if (res.status !== 0) throw new Error(`initdb failed:\n${res.stdout}\n${res.stderr}`);
  }

  async start() {
    if (this.child) throw new Error("server already running");
    const args = [
      "-D", this.datadir,
      "-p", String(this.port),
      "-h", this.host,
      "-k", this.socketDir,
      "-c", "fsync=off", // a process crash keeps the OS page cache: no acknowledged commit is lost
      "-c", "full_page_writes=off",
      "-c", "max_connections=200",
      "-c", "shared_buffers=32MB",
      "-c", `log_directory=${this.dir}`,
      "-c", "logging_collector=off",
    ];
    // Its own process group: kill9() ends the postmaster and every backend at once, as a crash does.
    const child = spawn(this.bin.postgres, args, { stdio: ["ignore", "ignore", "pipe"], detached: true, ...this.spawnOptions() });
    const log: Buffer[] = [];
    child.stderr?.on("data", (b: Buffer) => {
      log.push(b);
      if (log.length > 200) log.shift();
    });
    this.tail = () => Buffer.concat(log).toString("utf8").split("\n").slice(-15).join("\n");
    this.child = child;
    child.once("exit", () => {
      if (this.child === child) this.child = undefined;
    });
    this.watchdog = spawn(
      "sh",
      ["-c", `while kill -0 ${process.pid} 2>/dev/null; do sleep 0.5; done; kill -9 -${child.pid} 2>/dev/null; sleep 0.5; rm -rf '${this.dir}'`],
      { stdio: "ignore", detached: true },
    );
    this.watchdog.unref();
    killOnExit(this.onExit);
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (!this.child) throw new Error(`postgres exited during start-up:\n${this.tail()}`);
      const probe = new pg.Client({ host: this.socketDir, port: this.port, user: "postgres", database: "postgres", connectionTimeoutMillis: 1000 });
      probe.on("error", () => undefined);
      try {
        await probe.connect();
        await probe.query("SELECT 1");
        await probe.end();
        break;
      } catch {
        await probe.end().catch(() => undefined);
        if (Date.now() > deadline) throw new Error(`postgres did not accept connections in 30 s:\n${this.tail()}`);
        await sleep(50);
      }
    }
    this.openAdmin();
  }
  private tail: () => string = () => "";
  /** The app database exists (before setup() the superuser connects to `postgres`). */
  private setUp = false;

  private openAdmin() {
    this.adminPool = new pg.Pool({ host: this.socketDir, port: this.port, user: "postgres", database: this.setUp ? this.database : "postgres", max: 2 });
    this.adminPool.on("error", () => undefined);
  }

  async setup() {
    await this.admin(`CREATE ROLE ${this.user} LOGIN PASSWORD '${this.password}'`);
    await this.admin(`CREATE DATABASE ${this.database} OWNER ${this.user}`);
    await this.closeAdmin();
    this.setUp = true;
    this.openAdmin();
    const app = new pg.Client({ connectionString: this.url });
    await app.connect();
    try {
      for (const stmt of migrationStatements()) await app.query(stmt);
    } finally {
      await app.end();
    }
  }

  /** Runs SQL as the superuser over the unix socket. */
  async admin<T = any[]>(sql: string, values?: unknown[]): Promise<T> {
    if (!this.adminPool) throw new Error("server is not running");
    return (await this.adminPool.query(sql, values)).rows as T;
  }

  /** The app user's backends, as the server sees them. */
  async appConnections(): Promise<BackendRow[]> {
    const rows = await this.admin<any[]>(
      "SELECT pid, state, query, backend_start, xact_start, client_port FROM pg_stat_activity WHERE usename = $1 AND backend_type = 'client backend'",
      [this.user],
    );
    return rows.map((r) => ({ pid: r.pid, state: r.state, query: r.query ?? "", backendStart: r.backend_start, xactStart: r.xact_start, clientPort: r.client_port }));
  }

  /**
   * Terminates the app's backends (pg_terminate_backend: 57P01 to the client): all of them, the idle
   * ones, the ones idle in a transaction, or the ones running a statement that contains `running`.
   * Resolves with their pids once the server no longer lists them.
   */
  async terminate(which: "all" | "idle" | "idle in transaction" | { running: string }): Promise<number[]> {
    const rows = await this.appConnections();
    const targets = rows.filter((r) => {
      if (which === "all") return true;
      if (which === "idle" || which === "idle in transaction") return r.state === which;
      return r.state === "active" && r.query.includes(which.running);
    });
    const pids = targets.map((t) => t.pid);
    for (const pid of pids) await this.admin("SELECT pg_terminate_backend($1)", [pid]).catch(() => undefined);
    const deadline = Date.now() + 5000;
    while (pids.length > 0) {
      const alive = (await this.appConnections()).filter((r) => pids.includes(r.pid));
      if (alive.length === 0) break;
      if (Date.now() > deadline) throw new Error(`backends ${alive.map((a) => a.pid)} survived pg_terminate_backend`);
      await sleep(10);
    }
    return pids;
  }

  /** Resolves once an app backend is running (or waiting in) a statement containing `fragment`. */
  async waitForStatement(fragment: string, timeoutMs = 5000): Promise<BackendRow> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const row = (await this.appConnections()).find((r) => r.state === "active" && r.query.includes(fragment));
      if (row) return row;
      if (Date.now() > deadline) throw new Error(`no app backend ran a statement with ${fragment} within ${timeoutMs} ms`);
      await sleep(10);
    }
  }

  async setSystem(name: string, value: string | number) {
    if (!/^[a-z_]+$/i.test(name)) throw new TypeError(`bad setting name ${name}`);
    await this.admin(`ALTER SYSTEM SET ${name} = '${String(value).replace(/'/g, "''")}'`);
    await this.admin("SELECT pg_reload_conf()");
  }

  /** Deletes every row of the app tables and restarts their ids. */
  async reset() {
    await this.admin(`TRUNCATE TABLE "Post", "Ledger", "User" RESTART IDENTITY CASCADE`);
  }

  private async closeAdmin() {
    const pool = this.adminPool;
    this.adminPool = undefined;
    await pool?.end().catch(() => undefined);
  }

  /** A crash: SIGKILL to the postmaster and every backend (its process group). */
  async kill9() {
    const child = this.child;
    if (!child) throw new Error("server is not running");
    await this.closeAdmin();
    const exited = new Promise((resolve) => child.once("exit", resolve));
    try {
      process.kill(-child.pid!, "SIGKILL");
    } catch {}
    await exited;
    // Backends of a SIGKILLed postmaster may linger a moment: wait until the group is gone.
    for (const until = Date.now() + 5000; Date.now() < until; ) {
      try {
        process.kill(-child.pid!, 0);
      } catch {
        break;
      }
      await sleep(20);
    }
    this.watchdog?.kill("SIGKILL");
  }

  /** `pg_ctl stop -m immediate`: SIGQUIT, every backend ends at once without a checkpoint. */
  async stopImmediate() {
    const child = this.child;
    if (!child) throw new Error("server is not running");
    await this.closeAdmin();
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGQUIT");
    await exited;
    this.watchdog?.kill("SIGKILL");
  }

  async restart(opts: { downMs?: number; immediate?: boolean } = {}) {
    if (opts.immediate) await this.stopImmediate();
    else await this.kill9();
    if (opts.downMs) await sleep(opts.downMs);
    await this.start();
  }

  private readonly onExit = () => this.killNow();

  killNow() {
    try {
      if (this.child?.pid) process.kill(-this.child.pid, "SIGKILL");
    } catch {}
  }

  async stop() {
    await this.closeAdmin();
    const child = this.child;
    if (child) {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {}
      await exited;
    }
    this.watchdog?.kill("SIGKILL");
    forget(this.onExit);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Starts a throwaway PostgreSQL server with the app schema applied. */
export async function startPostgres(): Promise<PostgresServer> {
  const bin = requirePostgresBinaries();
  const dir = mkdtempSync(join(tmpdir(), "resilience-pg-"));
  const server = new PostgresServer(bin, dir, await freePort());
  try {
    server.initialize();
    await server.start();
    await server.setup();
  } catch (error) {
    await server.stop().catch(() => undefined);
    throw error;
  }
  return server;
}
