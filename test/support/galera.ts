// A throwaway 3-node MariaDB Galera cluster for the cluster tests: `mariadbd` processes with the
// galera-4 provider on free loopback ports (mysql, gcomm, IST, SST for each node), rsync SST, the app
// schema applied through the first node (Galera replicates DDL). Faults: `kill -9` a node and start
// it again (it rejoins by IST), isolate a node from the others (it goes non-Primary and answers
// 1047), make a node read-only. It always goes away: `stop()` in an `after` hook, a process exit
// handler, and a watchdog shell per process that kill -9s it (its whole process group: rsync SST
// helpers included) and removes the temp dir if the test process dies without cleaning up.
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import mariadb from "mariadb";
import { tolerateDriverInitRejections } from "./driver-bug.ts";
import { forget, killOnExit } from "./exit-hook.ts";
import { APP_DB, APP_USER, freePort, migrationStatements, requireServerBinaries, type ProcessRow, type TestDatabase } from "./mariadb.ts";

const PROVIDERS = ["/usr/lib/galera/libgalera_smm.so", "/usr/lib/libgalera_smm.so", "/usr/lib64/galera-4/libgalera_smm.so", "/usr/local/lib/libgalera_smm.so"];

/** Finds the galera-4 provider and rsync (for SST), or explains how to get them. */
export function requireGalera(candidates: string[] = PROVIDERS): { provider: string } {
  const provider = candidates.find((p) => existsSync(p));
  const rsync = spawnSync("sh", ["-c", "command -v rsync"], { encoding: "utf8" }).status === 0;
  if (!provider || !rsync) {
    throw new Error(
      "The cluster tests start a 3-node Galera cluster, but the galera-4 provider (libgalera_smm.so) or rsync was not found.\n" +
        "Install them with `apt-get install -y galera-4 haproxy rsync` (Debian/Ubuntu).",
    );
  }
  return { provider };
}

// ---------------------------------------------------------------------------------------------
// Child processes that cannot outlive the test process.


function killGroup(pid: number) {
  try {
    process.kill(-pid, "SIGKILL");
  } catch {}
  try {
    process.kill(pid, "SIGKILL");
  } catch {}
}

/**
 * Spawns `command` in its own process group and a detached watchdog shell that kill -9s the group
 * (and removes `cleanupDir`) once this process is gone, however it died.
 */
export function spawnGuarded(command: string, args: string[], cleanupDir?: string): { child: ChildProcess; release: () => void } {
  const child = spawn(command, args, { stdio: "ignore", detached: true });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start ${command}`);
  const kill = () => killGroup(pid);
  killOnExit(kill);
  const rm = cleanupDir ? `; sleep 0.5; rm -rf '${cleanupDir}'` : "";
  const watchdog = spawn(
    "sh",
    ["-c", `while kill -0 ${process.pid} 2>/dev/null; do sleep 0.5; done; kill -9 -${pid} 2>/dev/null; kill -9 ${pid} 2>/dev/null${rm}`],
    { stdio: "ignore", detached: true },
  );
  watchdog.unref();
  child.once("exit", () => forget(kill));
  return {
    child,
    release: () => {
      try {
        watchdog.kill("SIGKILL");
      } catch {}
    },
  };
}

/** Kills a guarded child's whole process group and waits for the child to exit (bounded). */
export async function killGuarded(child: ChildProcess, timeoutMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  killGroup(child.pid!);
  await Promise.race([exited, sleep(timeoutMs, undefined, { ref: false }).then(() => Promise.reject(new Error(`pid ${child.pid} survived kill -9 for ${timeoutMs} ms`)))]);
}

// ---------------------------------------------------------------------------------------------

export interface GaleraState {
  /** wsrep_cluster_size: how many nodes this node sees in its component. */
  clusterSize: number;
  /** wsrep_cluster_status: Primary, non-Primary or Disconnected. */
  clusterStatus: string;
  /** wsrep_local_state: 1 Joining, 2 Donor/Desynced, 3 Joined, 4 Synced. */
  localState: number;
  localStateComment: string;
  /** wsrep_ready: the node accepts queries. */
  ready: boolean;
}

export interface GaleraClusterOptions {
  /** Number of nodes. Default 3. */
  nodes?: number;
  /** Extra wsrep provider options, appended to the harness's own (timeouts, addresses). */
  providerOptions?: string;
}

// A dead node is evicted in ~3 s (once every peer suspects it: evs.suspect_timeout) instead of
// Galera's default ~5-6 s. The install timeout stays near its default (7.5 s): with 3 s, a node
// rejoining a loaded 2-core machine timed the view installation out and split the survivors into
// non-Primary components for ~2 s (1180 "Not connected to Primary Component" for the app).
const FAST_EVICTION =
  "evs.keepalive_period=PT0.5S; evs.inactive_check_period=PT0.5S; evs.suspect_timeout=PT3S; " +
  "evs.inactive_timeout=PT8S; evs.install_timeout=PT7S; pc.wait_prim_timeout=PT10S; " +
  "gcache.size=64M; gcs.fc_limit=64";

const START_TIMEOUT_MS = 90_000;

export class GaleraNode {
  child?: ChildProcess;
  release?: () => void;
  adminPool?: mariadb.Pool;
  readonly socket: string;
  readonly logFile: string;
  readonly datadir: string;
  /** Times of the last start: ms until the server accepted connections and until it was Synced. */
  lastStart?: { acceptMs: number; syncedMs: number };

  constructor(
    readonly cluster: GaleraCluster,
    readonly index: number,
    readonly dir: string,
    readonly port: number,
    readonly gcommPort: number,
    readonly istPort: number,
    readonly sstPort: number,
  ) {
    this.socket = join(dir, "mysqld.sock");
    this.logFile = join(dir, "error.log");
    this.datadir = join(dir, "data");
  }

  get name() {
    return `node${this.index + 1}`;
  }

  get running() {
    return this.child !== undefined;
  }

  /** URL of the app user straight to this node (no proxy). */
  get url() {
    return `mysql://${this.cluster.user}:${this.cluster.password}@127.0.0.1:${this.port}/${this.cluster.database}`;
  }

  args(bootstrap: boolean): string[] {
    const c = this.cluster;
    const peers = c.nodes.map((n) => `127.0.0.1:${n.gcommPort}`).join(",");
    const provider = [
      `gmcast.listen_addr=tcp://127.0.0.1:${this.gcommPort}`,
      `base_host=127.0.0.1`,
      `base_port=${this.gcommPort}`,
      `ist.recv_addr=127.0.0.1:${this.istPort}`,
      FAST_EVICTION,
      c.options.providerOptions ?? "",
    ]
      .filter(Boolean)
      .join("; ");
    const args = [
      "--no-defaults",
      `--datadir=${this.datadir}`,
      `--port=${this.port}`,
      "--bind-address=127.0.0.1",
      `--socket=${this.socket}`,
      `--pid-file=${join(this.dir, "mysqld.pid")}`,
      `--log-error=${this.logFile}`,
      "--skip-name-resolve",
      "--innodb-buffer-pool-size=48M",
      "--innodb-log-file-size=16M",
      "--innodb-flush-log-at-trx-commit=2",
      "--max-connections=300",
      "--wsrep-on=ON",
      `--wsrep-provider=${c.provider}`,
      `--wsrep-cluster-address=gcomm://${peers}`,
      "--wsrep-cluster-name=resilience-test",
      `--wsrep-node-name=${this.name}`,
      "--wsrep-node-address=127.0.0.1",
      `--wsrep-node-incoming-address=127.0.0.1:${this.port}`,
      `--wsrep-provider-options=${provider}`,
      "--wsrep-sst-method=rsync",
      `--wsrep-sst-receive-address=127.0.0.1:${this.sstPort}`,
      "--wsrep-slave-threads=2",
      "--binlog-format=ROW",
      "--default-storage-engine=InnoDB",
      "--innodb-autoinc-lock-mode=2",
    ];
    // Globals the test set on the cluster: a node started again has them from its first session on.
    for (const [name, value] of c.globals) args.push(`--${name.replace(/_/g, "-")}=${value}`);
    if (bootstrap) args.push("--wsrep-new-cluster");
    if (this.cluster.runAs) args.push(`--user=${this.cluster.runAs}`);
    return args;
  }

  /**
   * Starts the node (bootstrapping a new cluster when asked) and resolves once it is Synced.
   * A node started again after `kill9()` recovers its position and rejoins by IST.
   */
  async start(opts: { bootstrap?: boolean; timeoutMs?: number } = {}) {
    if (this.child) throw new Error(`${this.name} already running`);
    // A node started again before its peers evicted its previous incarnation tangles the membership:
    // seen here, the view installation timed out and the survivors went non-Primary for ~10 s (1180
    // "Not connected to Primary Component" for the app). So wait for the eviction first, as a
    // restart by a supervisor normally does (it takes longer than Galera's suspect timeout).
    const peers = this.cluster.nodes.filter((n) => n !== this && n.running);
    if (!opts.bootstrap) {
      await Promise.all(
        peers.map((n) => n.waitForState((s) => s.clusterSize <= peers.length, `without ${this.name}'s previous incarnation`, 20_000)),
      );
    }
    const t0 = performance.now();
    const { child, release } = spawnGuarded(this.cluster.bin.server, this.args(opts.bootstrap ?? false));
    this.child = child;
    this.release = release;
    child.once("exit", () => {
      if (this.child === child) this.child = undefined;
    });
    const deadline = Date.now() + (opts.timeoutMs ?? START_TIMEOUT_MS);
    for (;;) {
      if (!this.child) throw new Error(`${this.name} exited during start-up:\n${this.tailLog()}`);
      try {
        const conn = await mariadb.createConnection({ socketPath: this.socket, user: "root", connectTimeout: 500 });
        await conn.end();
        break;
      } catch {
        if (Date.now() > deadline) throw new Error(`${this.name} did not accept connections in time:\n${this.tailLog()}`);
        await sleep(100);
      }
    }
    const acceptMs = performance.now() - t0;
    this.adminPool = mariadb.createPool({
      socketPath: this.socket,
      user: "root",
      connectionLimit: 2,
      multipleStatements: true,
      // Reads after writes made through other nodes see them (Galera applies asynchronously).
      initSql: "SET SESSION wsrep_sync_wait = 1",
    });
    await this.waitForState((s) => s.localState === 4 && s.clusterStatus === "Primary", "Synced in a Primary component", deadline - Date.now());
    this.lastStart = { acceptMs: Math.round(acceptMs), syncedMs: Math.round(performance.now() - t0) };
  }

  tailLog(lines = 25) {
    try {
      return readFileSync(this.logFile, "utf8").split("\n").slice(-lines).join("\n");
    } catch {
      return "(no error log)";
    }
  }

  /** Reads the node's wsrep status over a fresh socket connection (works on a non-Primary node). */
  async state(): Promise<GaleraState> {
    // Bounded per query, not by the driver's queryTimeout option: that one's `SET max_statement_time`
    // at connect leaves a rejection unhandled when the node resets the connection then (mariadb 3.4.5
    // to 3.5.4, Connection.executeSessionTimeout; test/harness.test.ts), and the test runner fails
    // whichever test is running (seen in CI while a node restarted). Nor by destroy() on a timer:
    // with a query in flight it sends KILL on a new connection and leaves that promise unhandled.
    // socketTimeout: a node that answers nothing (stopped, wedged) fails the read in 3 s (the
    // driver's own fatal timeout: the socket destroyed, no KILL sent).
    const conn = await mariadb.createConnection({ socketPath: this.socket, user: "root", connectTimeout: 1000, socketTimeout: 3000 });
    conn.on("error", () => undefined);
    try {
      const rows: any[] = await conn.query({
        sql: "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_cluster_size','wsrep_cluster_status','wsrep_local_state','wsrep_local_state_comment','wsrep_ready')",
        timeout: 2000,
      });
      const v = Object.fromEntries(rows.map((r) => [String(r.Variable_name).toLowerCase(), String(r.Value)]));
      return {
        clusterSize: Number(v.wsrep_cluster_size ?? 0),
        clusterStatus: v.wsrep_cluster_status ?? "?",
        localState: Number(v.wsrep_local_state ?? 0),
        localStateComment: v.wsrep_local_state_comment ?? "?",
        ready: v.wsrep_ready === "ON",
      };
    } finally {
      await conn.end().catch(() => conn.destroy());
    }
  }

  /** Polls `state()` until `predicate` holds; rejects after timeoutMs with the last state seen. */
  async waitForState(predicate: (s: GaleraState) => boolean, what: string, timeoutMs = 30_000): Promise<GaleraState> {
    const deadline = Date.now() + timeoutMs;
    let last: GaleraState | string = "never read";
    for (;;) {
      if (!this.child) throw new Error(`${this.name} is not running (waiting for ${what})`);
      try {
        const s = await this.state();
        last = s;
        if (predicate(s)) return s;
      } catch (error) {
        last = String((error as Error).message);
      }
      if (Date.now() > deadline) {
        throw new Error(`${this.name} not ${what} within ${timeoutMs} ms; last: ${JSON.stringify(last)}\n${this.tailLog(10)}`);
      }
      await sleep(100);
    }
  }

  async admin<T = any>(sql: string, values?: unknown[]): Promise<T> {
    if (!this.adminPool) throw new Error(`${this.name} is not running`);
    return (await this.adminPool.query(sql, values)) as T;
  }

  /** A dedicated root connection to this node (no wsrep_sync_wait), e.g. to hold row locks. */
  async adminConnection(): Promise<mariadb.Connection> {
    const conn = await mariadb.createConnection({ socketPath: this.socket, user: "root", database: this.cluster.database, multipleStatements: true });
    conn.on("error", () => undefined);
    return conn;
  }

  async closeAdmin() {
    const pool = this.adminPool;
    this.adminPool = undefined;
    // Bounded: ending waits for each idle connection's QUIT reply, which a wedged node never sends.
    await Promise.race([pool?.end().catch(() => undefined), sleep(5000, undefined, { ref: false })]);
  }

  /** kill -9 (no shutdown: its peers see it vanish). */
  async kill9() {
    const child = this.child;
    if (!child) throw new Error(`${this.name} is not running`);
    await this.closeAdmin();
    await killGuarded(child);
    this.child = undefined;
    this.release?.();
  }

  /**
   * Cuts this node off from its peers (`gmcast.isolate=1`): it forms a non-Primary component of
   * one, and answers queries with 1047 "WSREP has not yet prepared node for application use".
   */
  async isolate() {
    await this.admin("SET GLOBAL wsrep_provider_options = 'gmcast.isolate=1'");
  }

  /** Ends `isolate()` and resolves once the node is Synced in the Primary component again. */
  async heal(timeoutMs = 30_000) {
    await this.admin("SET GLOBAL wsrep_provider_options = 'gmcast.isolate=0'");
    await this.waitForState(
      (s) => s.localState === 4 && s.clusterStatus === "Primary" && s.clusterSize === this.cluster.runningNodes().length,
      "back in the Primary component",
      timeoutMs,
    );
  }

  async setGlobal(name: string, value: number | string) {
    if (!/^[a-z_]+$/i.test(name)) throw new TypeError(`bad variable name ${name}`);
    await this.admin(`SET GLOBAL ${name} = ?`, [value]);
  }

  /** The app user's connections on this node. */
  async appConnections(): Promise<ProcessRow[]> {
    const rows = await this.admin<any[]>(
      "SELECT ID, USER, COMMAND, TIME, STATE, INFO FROM information_schema.PROCESSLIST WHERE USER = ?",
      [this.cluster.user],
    );
    return rows.map((r) => ({ id: Number(r.ID), user: r.USER, command: r.COMMAND, time: Number(r.TIME), state: r.STATE, info: r.INFO }));
  }

  async stop() {
    await this.closeAdmin();
    if (this.child) await killGuarded(this.child).catch(() => undefined);
    this.child = undefined;
    this.release?.();
  }
}

export class GaleraCluster {
  readonly user = APP_USER;
  readonly database = APP_DB;
  readonly password = randomBytes(9).toString("base64url");
  readonly nodes: GaleraNode[] = [];
  /** Globals set with setGlobal(), passed to a node that starts again (a restart forgets them). */
  readonly globals = new Map<string, number | string>();
  /** ms from the first spawn until every node was Synced. */
  startupMs = 0;
  private cleanupRelease?: () => void;
  /** The OS user mariadbd runs as (`--user`): `mysql` when the tests run as root, else none. */
  readonly runAs = process.getuid?.() === 0 ? (spawnSync("id", ["-u", "mysql"]).status === 0 ? "mysql" : "root") : undefined;

  constructor(
    readonly bin: { server: string; install: string },
    readonly provider: string,
    readonly dir: string,
    readonly options: GaleraClusterOptions,
  ) {}

  runningNodes() {
    return this.nodes.filter((n) => n.running);
  }

  /** A running node other than those in `except` (Synced nodes first), for admin work and data checks. */
  anyNode(except: GaleraNode[] = []): GaleraNode {
    const n = this.nodes.find((x) => x.running && x.adminPool && !except.includes(x));
    if (!n) throw new Error("no running node");
    return n;
  }

  async admin<T = any>(sql: string, values?: unknown[]): Promise<T> {
    return await this.anyNode().admin<T>(sql, values);
  }

  /** Resolves once every running node sees a Primary component of `size` and is Synced. */
  async waitForSize(size: number, timeoutMs = 30_000) {
    await Promise.all(
      this.runningNodes().map((n) =>
        n.waitForState((s) => s.clusterSize === size && s.clusterStatus === "Primary" && s.localState === 4, `Synced in a cluster of ${size}`, timeoutMs),
      ),
    );
  }

  /** Sets a global on every running node, and on each node started later. */
  async setGlobal(name: string, value: number | string) {
    this.globals.set(name, value);
    for (const n of this.runningNodes()) await n.setGlobal(name, value);
  }

  async reset() {
    await this.admin(
      `USE \`${this.database}\`; SET FOREIGN_KEY_CHECKS = 0; DELETE FROM Post; DELETE FROM Ledger; DELETE FROM User; SET FOREIGN_KEY_CHECKS = 1`,
    );
  }

  async setup() {
    const first = this.nodes[0];
    await first.admin(`CREATE DATABASE IF NOT EXISTS \`${this.database}\``);
    await first.admin(`CREATE USER IF NOT EXISTS '${this.user}'@'%' IDENTIFIED BY '${this.password}'`);
    await first.admin(`GRANT ALL ON \`${this.database}\`.* TO '${this.user}'@'%'`);
    for (const stmt of migrationStatements()) await first.admin(`USE \`${this.database}\`; ${stmt}`);
  }

  chownToServerUser() {
    if (!this.runAs || this.runAs === "root") return;
    const chown = spawnSync("chown", ["-R", `${this.runAs}:`, this.dir], { encoding: "utf8" });
    if (chown.status !== 0) throw new Error(`chown ${this.runAs} ${this.dir} failed: ${chown.stderr}`);
  }

  async boot() {
    const t0 = performance.now();
    const [first, ...rest] = this.nodes;
    // One install-db; the other nodes start from copies of the same empty datadir and get the
    // bootstrap node's state by SST (rsync).
    const template = join(this.dir, "template");
    this.chownToServerUser();
    const args = ["--no-defaults", `--datadir=${template}`, "--auth-root-authentication-method=normal", "--skip-test-db"];
    if (this.runAs) args.push(`--user=${this.runAs}`);
    const res = spawnSync(this.bin.install, args, { encoding: "utf8" });
    if (res.status !== 0) throw new Error(`mariadb-install-db failed:\n${res.stdout}\n${res.stderr}`);
    for (const n of this.nodes) {
      mkdirSync(n.dir, { recursive: true });
      cpSync(template, n.datadir, { recursive: true });
    }
    // The SST script runs as the server's user; as root its rsync daemon would drop to `nobody`
    // and could not write the joiner's datadir. So as root the nodes run as `mysql`.
    this.chownToServerUser();
    await first.start({ bootstrap: true });
    await this.setup();
    // A joiner that fails its first start (seen once in ~20 boots on a busy 2-core machine) gets one
    // more try from a fresh copy of the empty datadir; the first failure's log is kept for the error.
    for (const n of rest) {
      try {
        await n.start();
      } catch (first) {
        const firstLog = n.tailLog(40);
        await n.stop();
        rmSync(n.datadir, { recursive: true, force: true });
        cpSync(template, n.datadir, { recursive: true });
        this.chownToServerUser();
        try {
          await n.start();
        } catch (second) {
          throw new Error(`${n.name} failed to join twice.\nfirst: ${(first as Error).message}\n${firstLog}\nsecond: ${(second as Error).message}`);
        }
        console.warn(`galera harness: ${n.name} joined on its second try; first failure:\n${firstLog}`);
      }
    }
    rmSync(template, { recursive: true, force: true });
    await this.waitForSize(this.nodes.length);
    this.startupMs = Math.round(performance.now() - t0);
  }

  async stop() {
    for (const n of this.nodes) await n.stop();
    this.cleanupRelease?.();
    // GALERA_KEEP_DIR=1 keeps the datadirs and error logs for a post-mortem.
    if (!process.env.GALERA_KEEP_DIR) rmSync(this.dir, { recursive: true, force: true });
  }

  guardDir() {
    // Removes the cluster's temp dir if this process dies without stop().
    const w = spawn("sh", ["-c", `while kill -0 ${process.pid} 2>/dev/null; do sleep 0.5; done; sleep 1; rm -rf '${this.dir}'`], {
      stdio: "ignore",
      detached: true,
    });
    w.unref();
    if (process.env.GALERA_KEEP_DIR) w.kill("SIGKILL");
    this.cleanupRelease = () => {
      try {
        w.kill("SIGKILL");
      } catch {}
    };
  }
}

/**
 * Starts a fresh Galera cluster (3 nodes by default) with the app schema applied, every node
 * Synced. Call `stop()` in an `after` hook.
 */
export async function startGaleraCluster(options: GaleraClusterOptions = {}): Promise<GaleraCluster> {
  tolerateDriverInitRejections();
  const bin = requireServerBinaries();
  const { provider } = requireGalera();
  const dir = mkdtempSync(join(tmpdir(), "resilience-galera-"));
  const cluster = new GaleraCluster(bin, provider, dir, options);
  cluster.guardDir();
  const used = new Set<number>();
  const port = async () => {
    for (;;) {
      const p = await freePort();
      if (!used.has(p)) {
        used.add(p);
        return p;
      }
    }
  };
  for (let i = 0; i < (options.nodes ?? 3); i++) {
    cluster.nodes.push(new GaleraNode(cluster, i, join(dir, `node${i + 1}`), await port(), await port(), await port(), await port()));
  }
  try {
    await cluster.boot();
  } catch (error) {
    await cluster.stop().catch(() => undefined);
    throw error;
  }
  return cluster;
}

/**
 * The cluster seen as one TestDatabase: the app's URL is `url` (HAProxy), admin work and data
 * checks go to a running node (reads wait for causality, `wsrep_sync_wait = 1`), globals are set on
 * every running node, and `kill9()` / `start()` act on `victim` (for runChaos's restart).
 */
export function clusterDatabase(cluster: GaleraCluster, url: string, opts: { adminNode?: () => GaleraNode; victim?: GaleraNode } = {}): TestDatabase {
  const u = new URL(url);
  const adminNode = opts.adminNode ?? (() => cluster.anyNode(opts.victim ? [opts.victim] : []));
  return {
    url,
    host: u.hostname,
    port: Number(u.port),
    user: cluster.user,
    password: cluster.password,
    database: cluster.database,
    embedded: true,
    admin: (sql, values) => adminNode().admin(sql, values),
    appConnections: () => adminNode().appConnections(),
    async killConnections(which) {
      const node = adminNode();
      const rows = (await node.appConnections()).filter((r) => {
        if (r.command === "Killed") return false;
        if (which === "all") return true;
        if (which === "idle") return r.command === "Sleep";
        return (r.command === "Query" || r.command === "Execute") && (r.info ?? "").includes(which.running);
      });
      for (const r of rows) await node.admin(`KILL ${r.id}`).catch(() => undefined);
      return rows.map((r) => r.id);
    },
    async waitForStatement(fragment, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        for (const n of cluster.runningNodes()) {
          const row = (await n.appConnections()).find((r) => (r.info ?? "").includes(fragment));
          if (row) return row;
        }
        if (Date.now() > deadline) throw new Error(`no app connection ran ${fragment} within ${timeoutMs} ms`);
        await sleep(10);
      }
    },
    adminConnection: () => adminNode().adminConnection(),
    setGlobal: (name, value) => cluster.setGlobal(name, value),
    async getGlobal(name) {
      if (!/^[a-z_]+$/i.test(name)) throw new TypeError(`bad variable name ${name}`);
      const rows = await adminNode().admin<any[]>(`SELECT @@global.${name} AS v`);
      return String(rows[0].v);
    },
    async statusCounter(name) {
      const rows = await adminNode().admin<any[]>("SHOW GLOBAL STATUS LIKE ?", [name]);
      return Number(rows[0]?.Value);
    },
    reset: () => cluster.reset(),
    async kill9() {
      if (!opts.victim) throw new Error("no victim node given");
      await opts.victim.kill9();
    },
    async start() {
      if (!opts.victim) throw new Error("no victim node given");
      await opts.victim.start();
    },
    async restart(o = {}) {
      await this.kill9();
      if (o.downMs) await sleep(o.downMs);
      await this.start();
    },
    stop: () => cluster.stop(),
  };
}

/** Bounded wait: a fault or a hold that never happened fails the test in seconds. */
export function within<T>(p: Promise<T>, what: string, ms = 8000): Promise<T> {
  return Promise.race([p, sleep(ms, undefined, { ref: false }).then(() => assert.fail(`${what} did not happen within ${ms} ms`))]);
}

/**
 * Brute-force-aborts the transaction whose packets a proxy holds in front of `node1`: `node2` adds
 * 100 to the row's balance (0 before), and `node1` is read until it has applied that (with
 * wsrep_sync_wait), which aborts the held transaction there. Release the hold afterwards.
 */
export async function abortByConflict(node1: GaleraNode, node2: GaleraNode, database: string, userId: number): Promise<void> {
  await sleep(200); // what went before the held packet has been applied
  await node2.admin(`UPDATE \`${database}\`.User SET balance = balance + 100 WHERE id = ?`, [userId]);
  const waiter = await node1.adminConnection();
  try {
    await waiter.query("SET SESSION wsrep_sync_wait = 1");
    const [seen] = await within(waiter.query("SELECT balance FROM User WHERE id = ?", [userId]), "node1 applying the conflicting update");
    assert.equal(Number(seen.balance), 100, "node1 applied the other node's update: the held transaction was aborted");
  } finally {
    await waiter.end();
  }
}
