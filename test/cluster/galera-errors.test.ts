// What the package does with the errors a Galera cluster sends, each on a real fault: 1047 from a
// node that lost quorum, 1213 on COMMIT from a certification conflict, 1205 from a lock wait
// timeout. Each is an answer of the server (the statement or COMMIT did not apply), so the operation
// is re-run (on a fresh connection when the old one points at a node that cannot take it), within
// the deadline, never reported as an unknown outcome. Every test ends with a data check.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { isOutcomeUnknown } from "../../src/index.ts";
import { errnoOf, trackedClients, withParams } from "../support/clients.ts";
import { uniqueKey } from "../support/data.ts";
import { startGaleraCluster, type GaleraCluster, type GaleraNode } from "../support/galera.ts";
import { haproxyForGalera, type GaleraProxy } from "../support/haproxy.ts";

let cluster: GaleraCluster;
let proxy: GaleraProxy;
const log = (...a: unknown[]) => console.log("   ", ...a);

// A 5 s deadline unless a test says otherwise: a broken re-run fails a test in seconds, not minutes.
const { client, disconnectAll } = trackedClients({ deadline: 5000 });

/** Rows per key, read on `node` after every write committed anywhere (wsrep_sync_wait = 1). */
async function rowsByKey(node: GaleraNode, prefix: string): Promise<Map<string, number>> {
  const rows = await node.admin<any[]>(
    `SELECT \`key\`, COUNT(*) AS n FROM \`${cluster.database}\`.Ledger WHERE \`key\` LIKE ? GROUP BY \`key\``,
    [`${prefix}%`],
  );
  return new Map(rows.map((r) => [r.key, Number(r.n)]));
}

/**
 * Runs `work` through an HAProxy that sends every new connection to node1 while it is up
 * (`balance first`), with wsrep_sync_wait = 1 on every node (README: read-your-writes), and a
 * client of `connectionLimit` connections and a 15 s deadline. Never throws `work`'s error: returns it.
 */
async function throughNodeOneFirst(connectionLimit: number, work: (prisma: any, t0: number) => Promise<unknown>) {
  let first: GaleraProxy | undefined;
  let retries: Array<{ error: unknown; counted: boolean }> = [];
  let error: unknown;
  const t0 = performance.now();
  try {
    await cluster.setGlobal("wsrep_sync_wait", 1);
    first = await haproxyForGalera(cluster, { balance: "first", shutdownSessionsOnDown: false });
    const c = client(withParams(first.url, { connectionLimit }), { deadline: 15_000 });
    retries = c.retries;
    await work(c.prisma, t0).catch((e: unknown) => (error = e));
  } finally {
    await first?.stop();
    await cluster.setGlobal("wsrep_sync_wait", 0).catch(() => undefined);
  }
  const shapes = retries.map((r) => `${(r.error as any)?.code ?? errnoOf(r.error)}${r.counted ? "" : " (free)"}`).join(", ");
  return { error, retries, ms: Math.round(performance.now() - t0), shapes };
}

async function restartIfKilled(node: GaleraNode) {
  if (node.running) return;
  await node.start();
  await cluster.waitForSize(3);
}

const nameOf = (error: unknown) => (error ? `${(error as any).name} ${(error as any).code}` : "none");

before(async () => {
  cluster = await startGaleraCluster();
  // Without on-marked-down shutdown-sessions: pooled connections keep pointing at a node that went
  // bad, as they do behind a proxy that is not told to cut them (or none): the package must cope.
  proxy = await haproxyForGalera(cluster, { shutdownSessionsOnDown: false });
});
afterEach(async () => {
  await disconnectAll();
});
after(async () => {
  await proxy?.stop();
  await cluster?.stop();
});

describe("galera errors with the package", () => {
  test("1047: writes on pooled connections to a node that lost quorum are re-run on fresh connections (HAProxy sends them to a Primary node), each lands once", async () => {
    const node = cluster.nodes[1];
    const { prisma, retries } = client(withParams(proxy.url, { connectionLimit: 6 }));
    // Warm the pool: 6 connections, round-robin over the 3 nodes.
    await Promise.all(Array.from({ length: 6 }, () => prisma.$queryRawUnsafe("SELECT SLEEP(0.2)")));
    const onNode = (await node.appConnections()).length;
    assert.ok(onNode >= 1, `the pool holds connections to ${node.name} (${onNode})`);
    await node.isolate();
    await node.waitForState((s) => s.clusterStatus === "non-Primary", "non-Primary", 15_000);
    await proxy.haproxy.waitForServerState(node.name, (s) => s.startsWith("DOWN"), "DOWN");

    const prefix = uniqueKey("g1047");
    const acked: string[] = [];
    const failed: string[] = [];
    const t0 = performance.now();
    for (let round = 0; round < 3; round++) {
      await Promise.all(
        Array.from({ length: 6 }, async (_, i) => {
          const key = `${prefix}-${round}-${i}`;
          try {
            await prisma.ledger.create({ data: { key, amount: 1 } });
            acked.push(key);
          } catch (error) {
            failed.push(`${key}: ${isOutcomeUnknown(error) ? "UNKNOWN " : ""}${(error as any)?.name} ${(error as any)?.code} errno ${errnoOf(error)}`);
          }
        }),
      );
    }
    const elapsed = Math.round(performance.now() - t0);
    const seen1047 = retries.filter((r) => errnoOf(r.error) === 1047).length;
    log(`1047: 18 writes in ${elapsed} ms, ${retries.length} retries (${seen1047} after 1047), failures: ${failed.length}`);

    // Before healing: a client that can only reach the isolated node gets a clear error within its
    // deadline, never "unknown", and nothing applies.
    const direct = client(node.url, { deadline: 2000 });
    const lonely = `${prefix}-direct`;
    const t1 = performance.now();
    const err = await direct.prisma.ledger.create({ data: { key: lonely, amount: 1 } }).then(
      () => undefined,
      (e: unknown) => e,
    );
    const directMs = Math.round(performance.now() - t1);

    await node.heal();
    const rows = await rowsByKey(cluster.nodes[0], prefix);
    const rowsOnHealed = await rowsByKey(node, prefix);

    assert.deepEqual(failed, [], "no write failed");
    assert.ok(seen1047 > 0, "the fault reached the client: some attempt got 1047");
    assert.deepEqual([...rows.values()].filter((n) => n > 1), [], "no key has two rows");
    assert.deepEqual(acked.filter((k) => !rows.has(k)), [], "every acknowledged write is there");
    assert.equal(rowsOnHealed.size, rows.size, "the healed node caught up");
    assert.ok(err, "the write on a node that stays non-Primary fails");
    assert.equal(isOutcomeUnknown(err), false, `not an unknown outcome: ${(err as any)?.name} ${(err as any)?.message?.slice(0, 200)}`);
    assert.ok(directMs < 2000 + 1500, `it fails within its deadline (${directMs} ms)`);
    assert.equal(rows.has(lonely), false, "and it did not apply");
    log(`1047 direct (deadline 2000): ${(err as any)?.name} ${(err as any)?.code ?? ""} after ${directMs} ms`);
  });

  test("1213 on COMMIT: hot-row transactions through two nodes (certification conflicts) all land, counter exact", async () => {
    const user = await cluster.nodes[0].admin<any>(
      `INSERT INTO \`${cluster.database}\`.User (email, balance) VALUES (?, 0)`,
      [`${uniqueKey("cert")}@test`],
    );
    const id = Number(user.insertId);
    const a = client(cluster.nodes[0].url);
    const b = client(cluster.nodes[1].url);
    let acked = 0;
    const ackedKeys: string[] = [];
    const prefix = uniqueKey("cert");
    const failures: string[] = [];
    const stopAt = performance.now() + 4000;
    let seq = 0;
    const worker = async (prisma: any, w: number) => {
      while (performance.now() < stopAt) {
        const key = `${prefix}-${w}-${seq++}`;
        try {
          if (w % 2 === 0) {
            // (increment, not read-then-write: InnoDB does not stop a lost update between two
            // transactions on one node under REPEATABLE READ; certification only between nodes)
            // The Ledger row names the transaction: an acknowledged key without its row is an
            // acknowledged transaction that did not commit.
            await prisma.$transaction(async (tx: any) => {
              await tx.user.findUniqueOrThrow({ where: { id } });
              await tx.user.update({ where: { id }, data: { balance: { increment: 1 } } });
              await tx.ledger.create({ data: { key, amount: 1 } });
            });
            ackedKeys.push(key);
          } else {
            await prisma.user.update({ where: { id }, data: { balance: { increment: 1 } } });
          }
          acked++;
        } catch (error) {
          failures.push(`${isOutcomeUnknown(error) ? "UNKNOWN " : ""}${(error as any)?.name} ${(error as any)?.code} errno ${errnoOf(error)}`);
        }
      }
    };
    await Promise.all([0, 1, 2, 3].flatMap((w) => [worker(a.prisma, w), worker(b.prisma, w)]));
    const [row] = await cluster.nodes[2].admin<any[]>(`SELECT balance FROM \`${cluster.database}\`.User WHERE id = ?`, [id]);
    const conflicts = [...a.retries, ...b.retries].filter((r) => errnoOf(r.error) === 1213).length;
    const byShape: Record<string, number> = {};
    for (const f of failures) byShape[f] = (byShape[f] ?? 0) + 1;
    const rows = await rowsByKey(cluster.nodes[2], prefix);
    const missing = ackedKeys.filter((k) => !rows.has(k));
    log(
      `1213: ${acked} increments acknowledged, balance ${row.balance}, ${conflicts} retries after 1213, failures ${JSON.stringify(byShape)}; ` +
        `${ackedKeys.length} acknowledged transactions, ${missing.length} of them without their row`,
    );
    assert.deepEqual(missing, [], "every acknowledged transaction committed (its Ledger row is there)");
    assert.deepEqual(byShape, {}, "no increment failed or was reported unknown");
    assert.ok(conflicts > 0, "certification conflicts happened (1213 retried)");
    assert.equal(Number(row.balance), acked, "the counter equals the acknowledged increments (lower: a transaction acknowledged but not applied)");
  });

  test("node lost under wsrep_sync_wait = 1: a transaction whose connection died with its node, and whose next start was held by the survivors until the node was evicted (P2028), is re-run within the deadline; one row", async () => {
    // With wsrep_sync_wait = 1 (README: read-your-writes) the survivors hold every read and BEGIN
    // until the dead node is evicted (measured: 4.3 s on this harness, for a new connection's BEGIN
    // too), so Prisma's maxWait runs out: P2028, nothing sent. That wait is the fault being handled
    // (the lost connection already used the one counted retry): it must cost time, not `retries`.
    const victim = cluster.nodes[0];
    const key = uniqueKey("lostnode");
    let onPort: number | undefined;
    let callbacks = 0;
    const at: string[] = [];
    try {
      const { error, retries, ms, shapes } = await throughNodeOneFirst(1, (prisma, t0) =>
        prisma.$transaction(
          async (tx: any) => {
            callbacks++;
            at.push(`callback ${callbacks} at ${Math.round(performance.now() - t0)} ms`);
            await tx.ledger.create({ data: { key, amount: 1 } });
            if (callbacks === 1) {
              const [{ port }] = await tx.$queryRawUnsafe("SELECT @@port AS port");
              onPort = Number(port);
              if (onPort !== victim.port) return; // asserted below
              await victim.kill9();
              await tx.ledger.count({ where: { key } }); // the connection died with its node
            }
          },
          { maxWait: 1000, timeout: 10_000 },
        ),
      );
      const rows = (await rowsByKey(cluster.anyNode(), key)).get(key) ?? 0;
      log(`node lost under wsrep_sync_wait = 1: done in ${ms} ms, ${at.join(", ")}, retries [${shapes}], error: ${nameOf(error)}, rows ${rows}`);
      assert.equal(onPort, victim.port, "balance first: the transaction ran on node1, the node killed");
      assert.equal(error, undefined, "the transaction succeeded within the deadline");
      assert.ok(retries.some((r) => (r.error as any)?.code === "P2028"), "the fault reached the client: an attempt could not start within maxWait");
      assert.ok(retries.filter((r) => (r.error as any)?.code === "P2028").every((r) => !r.counted), "a P2028 during the fault cost time, not `retries`");
      assert.equal(callbacks, 2, "the callback ran twice: on the lost node, then once more");
      assert.equal(rows, 1, "one row: the first attempt died with its node, the re-run committed once");
    } finally {
      await restartIfKilled(victim);
    }
  });

  test("node lost while the app's connections to it were idle: a transaction started just after, held by the survivors past maxWait again and again (P2028), succeeds within the deadline; one row", async () => {
    // Nothing of the app was in flight on the node: only its idle connections close. Those closes
    // are the fault the adapter notes, so each P2028 of the eviction's wait costs time, not `retries`.
    const victim = cluster.nodes[0];
    const key = uniqueKey("idlenode");
    let onVictim = 0;
    try {
      const { error, retries, ms, shapes } = await throughNodeOneFirst(2, async (prisma) => {
        await Promise.all([0, 1].map(() => prisma.$queryRawUnsafe("SELECT SLEEP(0.1)")));
        onVictim = (await victim.appConnections()).length;
        await victim.kill9();
        await prisma.$transaction((tx: any) => tx.ledger.create({ data: { key, amount: 1 } }), { maxWait: 1000, timeout: 10_000 });
      });
      const rows = (await rowsByKey(cluster.anyNode(), key)).get(key) ?? 0;
      const startTimeouts = retries.filter((r) => (r.error as any)?.code === "P2028");
      log(`node lost, connections idle: ${onVictim} idle on it; done in ${ms} ms, retries [${shapes}], error: ${nameOf(error)}, rows ${rows}`);
      assert.equal(onVictim, 2, "balance first: both pooled connections were on node1, the node killed");
      assert.equal(error, undefined, "the transaction succeeded within the deadline");
      assert.ok(startTimeouts.length >= 2, `the start was held past maxWait more than once (${startTimeouts.length}): with one counted retry it would have failed`);
      assert.ok(startTimeouts.every((r) => !r.counted), "every P2028 of the node loss cost time, not `retries`");
      assert.equal(rows, 1, "one row");
    } finally {
      await restartIfKilled(victim);
    }
  });

  test("1205: an update that waits past innodb_lock_wait_timeout is re-run until the lock is released, and applies once", async () => {
    const node = cluster.nodes[0];
    const user = await node.admin<any>(`INSERT INTO \`${cluster.database}\`.User (email, balance) VALUES (?, 0)`, [`${uniqueKey("lock")}@test`]);
    const id = Number(user.insertId);
    await node.setGlobal("innodb_lock_wait_timeout", 1); // new sessions: the app's
    const holder = await node.adminConnection();
    try {
      const { prisma, retries } = client(node.url);
      await prisma.$queryRawUnsafe("SELECT 1");
      await holder.query("BEGIN");
      await holder.query("SELECT * FROM User WHERE id = ? FOR UPDATE", [id]);
      const releaseAt = 2500;
      const release = sleep(releaseAt).then(() => holder.query("COMMIT"));
      const t0 = performance.now();
      let error: unknown;
      await prisma.user.update({ where: { id }, data: { balance: { increment: 1 } } }).catch((e: unknown) => (error = e));
      const ms = Math.round(performance.now() - t0);
      await release;
      const [row] = await node.admin<any[]>(`SELECT balance FROM \`${cluster.database}\`.User WHERE id = ?`, [id]);
      const seen1205 = retries.filter((r) => errnoOf(r.error) === 1205).length;
      log(`1205: update done after ${ms} ms, ${seen1205} retries after 1205, error: ${error ? `${(error as any).name} ${(error as any).code} errno ${errnoOf(error)}` : "none"}`);
      assert.equal(error, undefined, "the update succeeded");
      assert.ok(seen1205 >= 1, "the fault reached the client: an attempt got 1205");
      assert.ok(ms >= releaseAt - 100, "it waited for the lock");
      assert.equal(Number(row.balance), 1, "applied exactly once");
    } finally {
      await holder.end().catch(() => undefined);
      await node.setGlobal("innodb_lock_wait_timeout", 50);
    }
  });
});
