// Proves the cluster harness: each fault really happens (cluster size, wsrep_local_state, HAProxy's
// view, the error a client sees), so a cluster test that passes is not passing because its fault
// never happened. Also reads the nodes' state with src/mysql/galera.ts (what the doctor reports).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import mariadb from "mariadb";
import { runDoctor } from "../../src/index.ts";
import { readGaleraState, describeGaleraState } from "../../src/mysql/galera.ts";
import { requireGalera, startGaleraCluster, type GaleraCluster, type GaleraNode } from "../support/galera.ts";
import { haproxyForGalera, type GaleraProxy } from "../support/haproxy.ts";

let cluster: GaleraCluster;
let proxy: GaleraProxy;
const log = (...a: unknown[]) => console.log("   ", ...a);

async function connect(url: string, opts: Partial<mariadb.ConnectionConfig> = {}) {
  const u = new URL(url);
  const conn = await mariadb.createConnection({
    host: u.hostname,
    port: Number(u.port),
    user: decodeURIComponent(u.username),
    password: decodeURIComponent(u.password),
    database: u.pathname.slice(1),
    connectTimeout: 2000,
    ...opts,
  });
  conn.on("error", () => undefined);
  return conn;
}

async function errorOf(p: Promise<unknown>): Promise<any> {
  try {
    await p;
  } catch (error) {
    return error;
  }
  throw new Error("expected an error, the statement succeeded");
}

before(async () => {
  cluster = await startGaleraCluster();
  proxy = await haproxyForGalera(cluster);
  log(`cluster of 3 Synced in ${cluster.startupMs} ms; node starts: ${JSON.stringify(cluster.nodes.map((n) => n.lastStart))}`);
});
after(async () => {
  await proxy?.stop();
  await cluster?.stop();
});

describe("galera harness", () => {
  test("fails at once, saying how to install, when the galera provider is missing", () => {
    const empty = mkdtempSync(join(tmpdir(), "no-galera-"));
    assert.throws(() => requireGalera([join(empty, "libgalera_smm.so")]), /apt-get install -y galera-4 haproxy rsync/);
  });

  test("starts 3 Synced nodes that replicate the schema and writes; HAProxy spreads new connections over all of them", async () => {
    for (const n of cluster.nodes) {
      const s = await n.state();
      assert.deepEqual([s.clusterSize, s.clusterStatus, s.localState, s.ready], [3, "Primary", 4, true], n.name);
    }
    await cluster.nodes[0].admin(`INSERT INTO \`${cluster.database}\`.Ledger (\`key\`, amount) VALUES ('harness-replicated', 7)`);
    const rows = await cluster.nodes[2].admin<any[]>(`SELECT amount FROM \`${cluster.database}\`.Ledger WHERE \`key\` = 'harness-replicated'`);
    assert.deepEqual(rows.map((r) => r.amount), [7], "a write on node1 is read on node3");
    const tablesOn = async (n: GaleraNode) =>
      (await n.admin<any[]>(`SHOW TABLES FROM \`${cluster.database}\``)).map((r) => String(Object.values(r)[0])).sort();
    const onFirst = await tablesOn(cluster.nodes[0]);
    for (const t of ["Ledger", "Post", "User"]) assert.ok(onFirst.includes(t), `the migration made ${t}`);
    assert.deepEqual(await tablesOn(cluster.nodes[1]), onFirst, "the schema (DDL) replicated to node2");
    assert.deepEqual(await tablesOn(cluster.nodes[2]), onFirst, "the schema (DDL) replicated to node3");
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const c = await connect(proxy.url);
      const [row] = await c.query("SELECT @@wsrep_node_name AS n");
      seen.add(row.n);
      await c.end();
    }
    assert.deepEqual([...seen].sort(), ["node1", "node2", "node3"], "round-robin reaches every node");
    await cluster.nodes[0].admin(`DELETE FROM \`${cluster.database}\`.Ledger WHERE \`key\` = 'harness-replicated'`);
  });

  test("kill -9 of a node: its sessions are lost, the peers evict it, HAProxy marks it DOWN; started again it rejoins by IST", async () => {
    const victim = cluster.nodes[2];
    const survivor = cluster.nodes[0];
    const conn = await connect(victim.url);
    const t0 = performance.now();
    await victim.kill9();
    // Before the health check notices: new connections through HAProxy still succeed, because a
    // refused connect is retried on another node (retries 3 + option redispatch 1).
    let refused = 0;
    for (let i = 0; i < 9; i++) {
      try {
        const c = await connect(proxy.url);
        await c.query("SELECT 1");
        await c.end();
      } catch {
        refused++;
      }
    }
    const lost = await errorOf(conn.query("SELECT 1"));
    assert.ok([45009, 45013, 2013, 2006].includes(lost.errno) || /ECONNRESET|EPIPE/.test(String(lost.code)), `connection loss, got ${lost.errno} ${lost.code}`);
    await survivor.waitForState((s) => s.clusterSize === 2 && s.clusterStatus === "Primary", "in a cluster of 2", 15_000);
    const evictedMs = Math.round(performance.now() - t0);
    assert.equal(refused, 0, "no new connection failed while HAProxy still had the dead node UP");
    await proxy.haproxy.waitForServerState(victim.name, (s) => s.startsWith("DOWN"), "DOWN", 10_000);
    // Writes go on through the survivors while the node is away (they make the IST non-empty).
    const c = await connect(proxy.url);
    for (let i = 0; i < 5; i++) await c.query("INSERT INTO Ledger (`key`, amount) VALUES (?, 1)", [`harness-ist-${i}`]);
    await c.end();
    const t1 = performance.now();
    await victim.start();
    const rejoinMs = Math.round(performance.now() - t1);
    assert.match(victim.tailLog(400), /IST received/, "the node rejoined by IST, not a full SST");
    await cluster.waitForSize(3);
    const [{ n }] = await victim.admin<any[]>(`SELECT COUNT(*) AS n FROM \`${cluster.database}\`.Ledger WHERE \`key\` LIKE 'harness-ist-%'`);
    assert.equal(Number(n), 5, "the rejoined node has the writes it missed");
    await proxy.haproxy.waitForServerState(victim.name, (s) => s === "UP", "UP", 10_000);
    log(`kill -9: evicted by the survivors after ${evictedMs} ms; restart to Synced (IST) in ${rejoinMs} ms`);
    await survivor.admin(`DELETE FROM \`${cluster.database}\`.Ledger WHERE \`key\` LIKE 'harness-ist-%'`);
  });

  test("an isolated node goes non-Primary, answers 1047, and HAProxy takes it out; healed it is Synced again", async () => {
    const node = cluster.nodes[1];
    const conn = await connect(node.url);
    const t0 = performance.now();
    await node.isolate();
    let healed = false;
    try {
      // wsrep_cluster_status turns non-Primary a moment before wsrep_local_state leaves 4 (Synced):
      // wait for both (CI read the first alone once, and the node was then never healed).
      const s = await node.waitForState((x) => x.clusterStatus === "non-Primary" && x.localState !== 4, "non-Primary and not Synced", 15_000);
      const isolatedMs = Math.round(performance.now() - t0);
      assert.equal(s.clusterSize, 1);
      assert.notEqual(s.localState, 4);
      const e = await errorOf(conn.query("INSERT INTO Ledger (`key`, amount) VALUES ('harness-1047', 1)"));
      assert.equal(e.errno, 1047, `1047, got ${e.errno} ${e.message}`);
      assert.match(e.message, /WSREP has not yet prepared node for application use/);
      await proxy.haproxy.waitForServerState(node.name, (x) => x.startsWith("DOWN"), "DOWN", 10_000);
      // what the doctor reads on such a node
      const direct = await node.adminConnection();
      const galera = await readGaleraState(direct);
      await direct.end();
      assert.equal(galera.galera, true);
      assert.equal(galera.healthy, false);
      assert.equal(galera.clusterStatus, "non-Primary");
      assert.match(galera.notes.join("\n"), /1047/);
      const t1 = performance.now();
      await node.heal();
      healed = true;
      log(`isolation: non-Primary after ${isolatedMs} ms; healed and Synced in ${Math.round(performance.now() - t1)} ms`);
      const [row] = await conn.query("SELECT COUNT(*) AS n FROM Ledger WHERE `key` = 'harness-1047'");
      assert.equal(Number(row.n), 0, "the write answered with 1047 did not apply");
      await conn.end();
      await proxy.haproxy.waitForServerState(node.name, (x) => x === "UP", "UP", 10_000);
    } finally {
      // Whatever failed above, the node rejoins: the next tests need three Synced nodes.
      if (!healed) await node.heal().catch(() => undefined);
    }
  });

  test("readGaleraState: a Synced node of 3 is healthy; wsrep_sync_wait is reported", async () => {
    const conn = await cluster.nodes[0].adminConnection();
    try {
      const s = await readGaleraState(conn);
      assert.equal(s.galera, true);
      assert.equal(s.healthy, true);
      assert.equal(s.clusterSize, 3);
      assert.equal(s.localState, 4);
      assert.equal(s.localStateComment, "Synced");
      assert.equal(s.syncWait, 0);
      assert.match(s.notes.join("\n"), /wsrep_sync_wait = 1/);
      assert.match(describeGaleraState(s), /Primary component of 3 node\(s\), this node Synced/);
      log(describeGaleraState(s));
    } finally {
      await conn.end();
    }
  });

  test("the doctor reports a node's Galera state and the commit table", async () => {
    const result = await runDoctor({ url: cluster.nodes[0].url });
    assert.match(result.output, /galera\s+Primary component of 3 node\(s\), this node Synced/);
    assert.match(result.output, /commits\s+_resilience_commits present/);
    const json = JSON.parse((await runDoctor({ url: cluster.nodes[0].url, json: true })).output);
    assert.equal(json.server.galera.clusterSize, 3);
    assert.equal(json.server.galera.localState, 4);
  });

  test("certification conflict: the second COMMIT of a hot row written through two nodes gets 1213, and did not apply", async () => {
    await cluster.nodes[0].admin(`INSERT INTO \`${cluster.database}\`.User (email, balance) VALUES ('hot@harness', 0)`);
    const a = await connect(cluster.nodes[0].url);
    const b = await connect(cluster.nodes[1].url);
    try {
      await a.query("BEGIN");
      await b.query("BEGIN");
      await a.query("UPDATE User SET balance = balance + 1 WHERE email = 'hot@harness'");
      await b.query("UPDATE User SET balance = balance + 10 WHERE email = 'hot@harness'");
      await a.query("COMMIT");
      const e = await errorOf(b.query("COMMIT"));
      assert.equal(e.errno, 1213, `1213 on COMMIT, got ${e.errno} ${e.message}`);
      assert.match(e.message, /Deadlock/i);
      const [row] = await a.query("SELECT balance FROM User WHERE email = 'hot@harness'");
      assert.equal(row.balance, 1, "only the first transaction applied");
    } finally {
      await a.end();
      await b.end();
      await cluster.nodes[0].admin(`DELETE FROM \`${cluster.database}\`.User WHERE email = 'hot@harness'`);
    }
  });

  test("a row lock held past innodb_lock_wait_timeout gets 1205, and the statement did not apply", async () => {
    await cluster.nodes[0].admin(`INSERT INTO \`${cluster.database}\`.User (email, balance) VALUES ('locked@harness', 0)`);
    const holder = await cluster.nodes[0].adminConnection();
    const app = await connect(cluster.nodes[0].url);
    try {
      await holder.query("BEGIN");
      await holder.query("SELECT * FROM User WHERE email = 'locked@harness' FOR UPDATE");
      await app.query("SET SESSION innodb_lock_wait_timeout = 1");
      const e = await errorOf(app.query("UPDATE User SET balance = balance + 1 WHERE email = 'locked@harness'"));
      assert.equal(e.errno, 1205, `1205, got ${e.errno} ${e.message}`);
      await holder.query("ROLLBACK");
      const [row] = await app.query("SELECT balance FROM User WHERE email = 'locked@harness'");
      assert.equal(row.balance, 0);
    } finally {
      await holder.end();
      await app.end();
      await cluster.nodes[0].admin(`DELETE FROM \`${cluster.database}\`.User WHERE email = 'locked@harness'`);
    }
  });

  test("a read-only node answers the app user's write with 1290, and it did not apply", async () => {
    const node: GaleraNode = cluster.nodes[2];
    const app = await connect(node.url);
    await node.setGlobal("read_only", 1);
    try {
      const e = await errorOf(app.query("INSERT INTO Ledger (`key`, amount) VALUES ('harness-ro', 1)"));
      assert.equal(e.errno, 1290, `1290, got ${e.errno} ${e.message}`);
      assert.match(e.message, /--read-only/);
    } finally {
      await node.setGlobal("read_only", 0);
      await app.end();
    }
    const [{ n }] = await cluster.nodes[0].admin<any[]>(`SELECT COUNT(*) AS n FROM \`${cluster.database}\`.Ledger WHERE \`key\` = 'harness-ro'`);
    assert.equal(Number(n), 0);
  });
});

describe("teardown", () => {
  test("a guarded child (server, haproxy) is kill -9'd by its watchdog when the test process dies by SIGKILL", async () => {
    const support = new URL("../support/galera.ts", import.meta.url).pathname;
    const code = `import(${JSON.stringify(support)}).then(({ spawnGuarded }) => { const { child } = spawnGuarded("sleep", ["300"]); console.log(child.pid); setInterval(() => {}, 1000); });`;
    const parent = spawn(process.execPath, ["--import", "tsx", "-e", code], { stdio: ["ignore", "pipe", "inherit"] });
    const pid = await new Promise<number>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("child did not report its pid")), 15_000);
      parent.stdout!.once("data", (d) => {
        clearTimeout(t);
        resolve(Number(String(d).trim()));
      });
    });
    // A killed process whose parent is gone may linger as a zombie until init reaps it: dead too.
    const alive = (p: number) => {
      try {
        return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${p}/stat`, "utf8"));
      } catch {
        return false;
      }
    };
    assert.ok(alive(pid), "the guarded child runs");
    parent.kill("SIGKILL");
    const deadline = Date.now() + 5000;
    while (alive(pid) && Date.now() < deadline) await sleep(100);
    assert.equal(alive(pid), false, "the guarded child is gone within 5 s of its parent's SIGKILL");
  });
});
