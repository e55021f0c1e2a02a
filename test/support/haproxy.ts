// HAProxy in front of test servers: a child process (`haproxy -f cfg -db`, foreground) with a
// generated config in a temp dir, TCP mode on a free loopback port, and its runtime API (a stats
// socket in the temp dir) to move traffic (`set server db/s1 state maint`). For Galera nodes it runs
// the classic "clustercheck" beside it: a small HTTP server per node, in this process, that answers
// 200 only while the node's wsrep_local_state is 4 (Synced), so HAProxy takes a node that is down,
// joining, donating or non-Primary out of rotation. Torn down like the servers: `stop()`, an exit
// hook and a watchdog (see spawnGuarded in galera.ts).
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createConnection } from "node:net";
import { createServer as createHttpServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { ChildProcess } from "node:child_process";
import { killGuarded, spawnGuarded, type GaleraCluster } from "./galera.ts";
import { freePort } from "./mariadb.ts";

export interface HaproxyServer {
  name: string;
  port: number;
  host?: string;
  /** A `backup` server only takes traffic when no other server is up. */
  backup?: boolean;
  /**
   * Health check: an HTTP check on this port (200 = up); `"mysql"`: HAProxy's `option mysql-check`
   * (a real handshake as `mysqlCheckUser`, so no aborted connects pile up on the server); `"tcp"`: a
   * bare connect; or none.
   */
  check?: { httpPort: number } | "mysql" | "tcp" | "none";
}

export interface HaproxyOptions {
  servers: HaproxyServer[];
  /** Default roundrobin. */
  balance?: "roundrobin" | "leastconn" | "first";
  /** `retries N`. Default 3. */
  retries?: number;
  /** `option redispatch 1`: every retry of a failed connect goes to another server. Default true. */
  redispatch?: boolean;
  /** `on-marked-down shutdown-sessions`: a server marked down has its sessions closed. Default true. */
  shutdownSessionsOnDown?: boolean;
  /** Health check interval (ms). Default 500. */
  checkIntervalMs?: number;
  /** User (no password) for `option mysql-check`. Default haproxy_check. */
  mysqlCheckUser?: string;
}

export interface Haproxy {
  port: number;
  /** The app's URL through HAProxy, from a server URL (same user, password, database). */
  urlFor(serverUrl: string): string;
  /** Runs a runtime API command (`show servers state`, `set server db/n1 state maint` ...). */
  command(cmd: string): Promise<string>;
  setState(server: string, state: "ready" | "drain" | "maint"): Promise<void>;
  /** The operational state HAProxy has for each server: UP, DOWN, MAINT ... */
  serverStates(): Promise<Record<string, string>>;
  waitForServerState(server: string, predicate: (state: string) => boolean, what: string, timeoutMs?: number): Promise<void>;
  config: string;
  stop(): Promise<void>;
}

const BACKEND = "db";

export function requireHaproxy(): string {
  const found = spawnSync("sh", ["-c", "command -v haproxy || ls /usr/sbin/haproxy"], { encoding: "utf8" });
  const bin = found.stdout.trim().split("\n")[0];
  if (found.status !== 0 || !bin) {
    throw new Error("The cluster tests put HAProxy in front of the servers, but `haproxy` was not found.\nInstall it with `apt-get install -y haproxy` (Debian/Ubuntu).");
  }
  return bin;
}

function configText(dir: string, port: number, o: HaproxyOptions): string {
  const inter = o.checkIntervalMs ?? 500;
  const lines = [
    "global",
    "    maxconn 4000",
    `    stats socket ${join(dir, "admin.sock")} mode 600 level admin`,
    "",
    "defaults",
    "    mode tcp",
    "    timeout connect 1s",
    "    timeout client 120s",
    "    timeout server 120s",
    `    retries ${o.retries ?? 3}`,
    ...(o.redispatch === false ? [] : ["    option redispatch 1"]),
    "",
    `listen ${BACKEND}`,
    `    bind 127.0.0.1:${port}`,
    `    balance ${o.balance ?? "roundrobin"}`,
  ];
  const http = o.servers.some((s) => typeof s.check === "object");
  if (http) lines.push("    option httpchk GET /", "    http-check expect status 200");
  else if (o.servers.some((s) => s.check === "mysql")) lines.push(`    option mysql-check user ${o.mysqlCheckUser ?? "haproxy_check"} post-41`);
  const onDown = o.shutdownSessionsOnDown === false ? "" : " on-marked-down shutdown-sessions";
  lines.push(`    default-server inter ${inter}ms fastinter ${inter}ms downinter ${inter}ms fall 2 rise 2${onDown}`);
  for (const s of o.servers) {
    let check = "";
    if (typeof s.check === "object") check = ` check port ${s.check.httpPort}`;
    else if (s.check === "tcp" || s.check === "mysql") check = " check";
    lines.push(`    server ${s.name} ${s.host ?? "127.0.0.1"}:${s.port}${check}${s.backup ? " backup" : ""}`);
  }
  return lines.join("\n") + "\n";
}

export async function startHaproxy(options: HaproxyOptions): Promise<Haproxy> {
  const bin = requireHaproxy();
  const dir = mkdtempSync(join(tmpdir(), "resilience-haproxy-"));
  const port = await freePort();
  const config = configText(dir, port, options);
  const cfgFile = join(dir, "haproxy.cfg");
  writeFileSync(cfgFile, config);
  const check = spawnSync(bin, ["-c", "-f", cfgFile], { encoding: "utf8" });
  if (check.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`haproxy rejected its config:\n${check.stdout}${check.stderr}\n${config}`);
  }
  const { child, release } = spawnGuarded(bin, ["-f", cfgFile, "-db"], dir);
  let stopped = false;
  const sockPath = join(dir, "admin.sock");

  const command = (cmd: string) =>
    new Promise<string>((resolve, reject) => {
      const sock = createConnection({ path: sockPath });
      let out = "";
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new Error(`haproxy runtime API did not answer ${cmd}`));
      }, 3000);
      sock.on("connect", () => sock.write(cmd + "\n"));
      sock.on("data", (d) => (out += d.toString()));
      sock.on("error", (e) => {
        clearTimeout(timer);
        reject(e);
      });
      sock.on("close", () => {
        clearTimeout(timer);
        resolve(out);
      });
    });

  const serverStates = async () => {
    // "show stat" CSV: pxname,svname,...,status (column 18)
    const csv = await command("show stat");
    const header = csv.split("\n")[0].replace(/^# /, "").split(",");
    const col = header.indexOf("status");
    const out: Record<string, string> = {};
    for (const line of csv.split("\n").slice(1)) {
      const f = line.split(",");
      if (f[0] === BACKEND && f[1] && f[1] !== "FRONTEND" && f[1] !== "BACKEND") out[f[1]] = f[col];
    }
    return out;
  };

  // Wait until haproxy listens and answers on its runtime API (a child that never did is killed:
  // it would keep this test process alive).
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) {
      release();
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`haproxy exited at start-up (code ${child.exitCode})`);
    }
    try {
      await serverStates();
      break;
    } catch {
      if (Date.now() > deadline) {
        await killGuarded(child as ChildProcess).catch(() => undefined);
        release();
        rmSync(dir, { recursive: true, force: true, maxRetries: 2 });
        throw new Error("haproxy did not start within 10 s");
      }
      await sleep(50);
    }
  }

  const h: Haproxy = {
    port,
    config,
    urlFor(serverUrl) {
      const u = new URL(serverUrl);
      u.hostname = "127.0.0.1";
      u.port = String(port);
      return u.toString();
    },
    command,
    async setState(server, state) {
      const out = await command(`set server ${BACKEND}/${server} state ${state}`);
      if (out.trim()) throw new Error(`haproxy: ${out.trim()}`);
    },
    serverStates,
    async waitForServerState(server, predicate, what, timeoutMs = 15_000) {
      const until = Date.now() + timeoutMs;
      let last = "?";
      for (;;) {
        last = (await serverStates())[server] ?? "missing";
        if (predicate(last)) return;
        if (Date.now() > until) throw new Error(`haproxy: ${server} not ${what} within ${timeoutMs} ms (last: ${last})`);
        await sleep(50);
      }
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await killGuarded(child as ChildProcess).catch(() => undefined);
      release();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return h;
}

/**
 * The Galera health check HAProxy polls (like Percona's clustercheck): an HTTP server per node on a
 * free loopback port that answers 200 while `isSynced()` resolves true, else 503.
 */
export interface HealthCheck {
  port: number;
  close(): Promise<void>;
}

export async function startHealthCheck(isSynced: () => Promise<boolean>): Promise<HealthCheck> {
  const server = createHttpServer(async (_req, res) => {
    let ok = false;
    try {
      ok = await Promise.race([isSynced(), sleep(400).then(() => false)]);
    } catch {
      ok = false;
    }
    res.writeHead(ok ? 200 : 503, { "content-type": "text/plain", connection: "close" });
    res.end(ok ? "Synced\n" : "not synced\n");
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve((server.address() as { port: number }).port));
  });
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface GaleraProxy {
  haproxy: Haproxy;
  /** The app's URL through HAProxy. */
  url: string;
  stop(): Promise<void>;
}

/**
 * HAProxy round-robin over every node of `cluster`, each checked by an HTTP health check that is
 * up only while the node is Synced (wsrep_local_state = 4) in a Primary component.
 */
export async function haproxyForGalera(cluster: GaleraCluster, options: Omit<HaproxyOptions, "servers"> = {}): Promise<GaleraProxy> {
  const checks: HealthCheck[] = [];
  try {
    for (const node of cluster.nodes) {
      checks.push(
        await startHealthCheck(async () => {
          if (!node.running) return false;
          const s = await node.state();
          return s.localState === 4 && s.clusterStatus === "Primary";
        }),
      );
    }
    const haproxy = await startHaproxy({
      ...options,
      servers: cluster.nodes.map((n, i) => ({ name: n.name, port: n.port, check: { httpPort: checks[i].port } })),
    });
    try {
      for (const n of cluster.nodes) if (n.running) await haproxy.waitForServerState(n.name, (s) => s === "UP", "UP");
    } catch (error) {
      // Not left running: its child would keep this test process alive.
      await haproxy.stop().catch(() => undefined);
      throw error;
    }
    return {
      haproxy,
      url: haproxy.urlFor(cluster.nodes[0].url),
      async stop() {
        await haproxy.stop();
        for (const c of checks) await c.close();
      },
    };
  } catch (error) {
    for (const c of checks) await c.close();
    throw error;
  }
}
