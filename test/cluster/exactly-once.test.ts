// Exactly-once on a Galera cluster behind HAProxy (docs/clusters-and-proxies.md): a COMMIT whose reply
// is lost together with its node (kill -9, and the node stays down). Through the proxy the verification
// lands on the other nodes; the old session's node refuses connections at its own address and the
// Primary component no longer counts it, so its session is gone by definition and the mark is read
// on a Synced node (wsrep_sync_wait = 1). Within the default verifyTimeout (10 s), without waiting
// for the node to come back. Each test ends with a data check on a surviving node.
//
// The app talks to a fault proxy (ours) in front of HAProxy: it loses the COMMIT's reply or
// swallows the COMMIT, and the node behind the connection is killed right after.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { isOutcomeUnknown, type CommitVerification } from "../../src/index.ts";
import { trackedClients, withParams, type ResilientHandle } from "../support/clients.ts";
import { uniqueKey } from "../support/data.ts";
import { startGaleraCluster, type GaleraCluster, type GaleraNode } from "../support/galera.ts";
import { haproxyForGalera, type GaleraProxy } from "../support/haproxy.ts";
import { startProxy, type FaultProxy } from "../support/proxy.ts";

let cluster: GaleraCluster;
let proxy: GaleraProxy;
let fault: FaultProxy;
const { client, disconnectAll } = trackedClients({ deadline: 20_000 });
const log = (...a: unknown[]) => console.log("   ", ...a);

before(async () => {
  cluster = await startGaleraCluster();
  proxy = await haproxyForGalera(cluster);
  fault = await startProxy("127.0.0.1", proxy.haproxy.port);
});
afterEach(async () => {
  await disconnectAll();
  // The killed node back, Synced and UP in HAProxy, for the next test.
  for (const n of cluster.nodes) if (!n.running) await n.start();
  await cluster.waitForSize(cluster.nodes.length);
  for (const n of cluster.nodes) await proxy.haproxy.waitForServerState(n.name, (s) => s === "UP", "UP", 30_000);
});
after(async () => {
  await fault?.close();
  await proxy?.stop();
  await cluster?.stop();
});

/** A client through the fault proxy with one pooled connection, and the node that connection is on. */
async function clientOnOneNode(
  verdicts: CommitVerification[],
  adapter: { refusedMeansStopped?: boolean; verifyTimeout?: number } = {},
): Promise<{ prisma: any; retries: ResilientHandle["retries"]; node: GaleraNode }> {
  const h = client(withParams(fault.urlFor(proxy.url), { connectionLimit: 1 }), {
    adapter: { ...adapter, onCommitVerified: (e) => verdicts.push(e) },
  });
  const rows: any[] = await h.prisma.$queryRawUnsafe("SELECT @@port AS port");
  const node = cluster.nodes.find((n) => n.port === Number(rows[0].port));
  assert.ok(node, "the pooled connection is on a node of the cluster");
  // The node's own address is checked in the background when the connection opens (one side
  // connection on loopback, a few ms): a moment for it.
  await sleep(1000);
  return { ...h, node };
}

/** Waits for a proxy fault, or fails the test in 5 s (a fault that never came is a failure, not a hang). */
function happened(f: Promise<void>, what: string): Promise<void> {
  return Promise.race([f, sleep(5000).then(() => assert.fail(`${what} never happened`))]);
}

/** Runs the operation; its result or its error, and how long it took. */
async function settle<T>(operation: () => Promise<T>): Promise<{ result?: T; error?: unknown; ms: number }> {
  const t0 = performance.now();
  try {
    return { result: await operation(), ms: Math.round(performance.now() - t0) };
  } catch (error) {
    return { error, ms: Math.round(performance.now() - t0) };
  }
}

async function rowsOn(node: GaleraNode, key: string): Promise<number> {
  const rows = await node.admin<any[]>(`SELECT COUNT(*) AS n FROM \`${cluster.database}\`.Ledger WHERE \`key\` = ?`, [key]);
  return Number(rows[0].n);
}

describe("exactly-once on a Galera cluster, the COMMIT lost with its node", () => {
  test("COMMIT delivered, its reply lost, the node killed and kept down: verified committed on another node within verifyTimeout, one row, nothing re-run", async () => {
    const verdicts: CommitVerification[] = [];
    const { prisma, retries, node } = await clientOnOneNode(verdicts);
    const key = uniqueKey("geo-lost");
    // The COMMIT reaches the node and commits there (replicated to the others first), then the
    // node dies, and only then does the app see its connection reset.
    const lost = fault.loseReplyTo("COMMIT", async () => {
      await sleep(150);
      await node.kill9();
    });
    const { result, error, ms } = await settle<any>(() => prisma.ledger.create({ data: { key, amount: 1 } }));
    await happened(lost, "a COMMIT");
    assert.equal(node.running, false, "the node is still down when the operation returns");
    const survivor = cluster.anyNode([node]);
    const n = await rowsOn(survivor, key);
    log(`resolved in ${ms} ms; verdicts ${JSON.stringify(verdicts)}; retries ${retries.length}; rows ${n}`);
    assert.equal(error, undefined, `no error (got ${isOutcomeUnknown(error) ? "OutcomeUnknownError" : String(error)})`);
    assert.equal(result.key, key);
    assert.equal(verdicts.length, 1, "one lost COMMIT verified");
    assert.ok(verdicts[0].ms < 10_000, `verified within the default verifyTimeout (${verdicts[0].ms} ms)`);
    assert.equal(n, 1, "exactly one row");
    // The COMMIT had 150 ms to apply before the node died: committed, unless that machine was very
    // slow; then "not committed" and one re-run are just as right.
    if (verdicts[0].verdict === "committed") assert.equal(retries.length, 0, "nothing re-run");
    else assert.deepEqual([verdicts[0].verdict, retries.length], ["not-committed", 1]);
  });

  test("COMMIT swallowed, the node killed and kept down: verified not committed on another node, re-run once there, one row", async () => {
    const verdicts: CommitVerification[] = [];
    const { prisma, retries, node } = await clientOnOneNode(verdicts);
    const key = uniqueKey("geo-swallow");
    // The node dies before the app sees its connection reset.
    const swallowed = fault.swallow("COMMIT", () => node.kill9());
    const { result, error, ms } = await settle(() =>
      prisma.$transaction(async (tx: any) => {
        await tx.ledger.create({ data: { key, amount: 1 } });
        return "callback result";
      }),
    );
    await happened(swallowed, "a COMMIT");
    assert.equal(node.running, false, "the node is still down when the operation returns");
    const survivor = cluster.anyNode([node]);
    const n = await rowsOn(survivor, key);
    log(`resolved in ${ms} ms; verdicts ${JSON.stringify(verdicts)}; retries ${retries.length}; rows ${n}`);
    assert.equal(error, undefined, `no error (got ${isOutcomeUnknown(error) ? "OutcomeUnknownError" : String(error)})`);
    assert.equal(result, "callback result");
    assert.deepEqual(
      verdicts.map((v) => v.verdict),
      ["not-committed"],
    );
    assert.ok(verdicts[0].ms < 10_000, `verified within the default verifyTimeout (${verdicts[0].ms} ms)`);
    assert.equal(retries.length, 1, "re-run once");
    assert.equal(n, 1, "exactly one row");
  });

  test("refusedMeansStopped: false: the same swallowed COMMIT stays unknown until the node is back (here: verifyTimeout 3 s first), nothing written", async () => {
    const verdicts: CommitVerification[] = [];
    const { prisma, retries, node } = await clientOnOneNode(verdicts, { refusedMeansStopped: false, verifyTimeout: 3000 });
    const key = uniqueKey("geo-nostop");
    const swallowed = fault.swallow("COMMIT", () => node.kill9());
    const { error } = await settle(() => prisma.ledger.create({ data: { key, amount: 1 } }));
    await happened(swallowed, "a COMMIT");
    assert.equal(node.running, false, "the node is still down when the operation returns");
    const n = await rowsOn(cluster.anyNode([node]), key);
    log(`verdicts ${JSON.stringify(verdicts)}; retries ${retries.length}; rows ${n}`);
    assert.ok(isOutcomeUnknown(error), "OutcomeUnknownError");
    assert.equal((error as any).verificationIncomplete, true);
    assert.deepEqual(
      verdicts.map((v) => v.verdict),
      ["unknown"],
    );
    assert.equal(retries.length, 0, "not re-run");
    assert.equal(n, 0, "the swallowed COMMIT wrote nothing");
  });
});
