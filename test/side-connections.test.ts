// Connections the package closes while a statement runs, behind a proxy that sends new connections
// to another server. The mariadb driver's destroy() of a busy connection sends `KILL <its thread id>`
// over a new connection to the same address: behind a proxy that reaches another server and ends
// whatever session has that number there (a session that is not ours), and its failure there
// (1094) is an unhandled rejection. Neither a side connection (probes, ghost kills, commit
// verification) nor a pool the adapter ends (an outage, a read-only answer, $disconnect) may do it.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { SideConnections } from "../src/adapter/side.ts";
import { resilientClient } from "./support/clients.ts";
import { startDatabase, type TestDatabase } from "./support/mariadb.ts";
import { startProxy, type FaultProxy } from "./support/proxy.ts";

let a: TestDatabase;
let b: TestDatabase;
let proxy: FaultProxy;

before(async () => {
  [a, b] = await Promise.all([startDatabase(), startDatabase()]);
  // One app user, one password on both servers, as behind a real load balancer.
  await b.admin(`ALTER USER '${b.user}'@'%' IDENTIFIED BY '${a.password}'`);
  proxy = await startProxy(a.host, a.port);
});
after(async () => {
  await proxy?.close();
  await a?.stop?.();
  await b?.stop?.();
});

/** Collects what is thrown or rejected unhandled until stop(). */
function watchUncaught(): { caught: unknown[]; stop(): void } {
  const caught: unknown[] = [];
  const on = (e: unknown) => caught.push(e);
  process.on("uncaughtException", on);
  process.on("unhandledRejection", on);
  return {
    caught,
    stop() {
      process.off("uncaughtException", on);
      process.off("unhandledRejection", on);
    },
  };
}

async function kills(db: TestDatabase): Promise<number> {
  const rows = await db.admin<any[]>("SHOW GLOBAL STATUS LIKE 'Com_kill'");
  return Number(rows[0].Value);
}

test("a side connection destroyed mid-statement sends no KILL anywhere (behind a proxy it would reach another server)", async () => {
  // The first connection goes to server A, every later one to server B.
  proxy.route = (n) => (n === 1 ? { host: a.host, port: a.port } : { host: b.host, port: b.port });
  const u = new URL(proxy.urlFor(a.url));
  const config = { host: u.hostname, port: Number(u.port), user: a.user, password: a.password, database: a.database };
  const side = new SideConnections(
    () => config,
    () => undefined,
  );
  const uncaught = watchUncaught();
  try {
    const [killsA, killsB] = [await kills(a), await kills(b)];
    const { conn } = await side.connect(2000);
    assert.ok(conn, "a side connection to server A");
    const running = conn.query("SELECT SLEEP(3)").catch((e: unknown) => e);
    await a.waitForStatement("SLEEP(3)", 2000);
    await side.release(conn, true);
    const outcome = await Promise.race([running, sleep(5000).then(() => "still running")]);
    assert.notEqual(outcome, "still running", "the statement's promise settled when its connection was destroyed");
    await sleep(500); // a KILL connection the driver might open has time to arrive
    assert.equal(await kills(b), killsB, "no KILL reached server B");
    assert.equal(await kills(a), killsA, "no KILL on server A either (the socket is closed; the server ends the session)");
    assert.deepEqual(uncaught.caught, [], "no unhandled rejection");
  } finally {
    uncaught.stop();
    side.close();
    proxy.route = undefined;
  }
});

test("$disconnect with a statement still running past mariadb's 10 s grace: no KILL reaches another server", async () => {
  proxy.route = () => ({ host: a.host, port: a.port });
  // retries: 0: the statement cut off is not re-run (a read would be, on a fresh connection to server B).
  const { prisma } = resilientClient(proxy.urlFor(a.url), { retries: 0 });
  const uncaught = watchUncaught();
  try {
    await prisma.ledger.count();
    const running = prisma.$queryRawUnsafe("SELECT SLEEP(14)").catch((e: unknown) => e);
    await a.waitForStatement("SLEEP(14)", 3000);
    // From now on the "load balancer" sends every new connection to server B.
    proxy.route = () => ({ host: b.host, port: b.port });
    const killsB = await kills(b);
    const t0 = performance.now();
    await Promise.race([prisma.$disconnect(), sleep(13_000).then(() => assert.fail("$disconnect did not end within 13 s"))]);
    const outcome = await Promise.race([running, sleep(3000).then(() => "still running")]);
    await sleep(500); // a KILL connection the driver might open has time to arrive
    console.log(`    $disconnect took ${Math.round(performance.now() - t0)} ms; the statement ended with ${String((outcome as any)?.code ?? outcome)}`);
    assert.notEqual(outcome, "still running", "the statement's promise settled");
    assert.equal(await kills(b), killsB, "no KILL reached server B");
    assert.deepEqual(uncaught.caught, [], "no unhandled rejection");
  } finally {
    uncaught.stop();
    proxy.route = undefined;
  }
});

test("over TLS: a side connection destroyed mid-statement fails its statement, and nothing is thrown uncaught", async () => {
  const tls = await startDatabase({ tls: true });
  const config = { host: tls.host, port: tls.port, user: tls.user, password: tls.password, database: tls.database, ssl: { ca: readFileSync(tls.tls!.ca, "utf8") } };
  const side = new SideConnections(
    () => config,
    () => undefined,
  );
  const uncaught = watchUncaught();
  try {
    const { conn } = await side.connect(3000);
    assert.ok(conn, "a side connection over TLS");
    const cipher: any[] = await conn.query("SHOW SESSION STATUS LIKE 'Ssl_cipher'");
    assert.ok(cipher[0]?.Value, "the connection is encrypted");
    const running = conn.query("SELECT SLEEP(3)").catch((e: unknown) => e);
    await tls.waitForStatement("SLEEP(3)", 2000);
    await side.release(conn, true);
    const outcome: any = await Promise.race([running, sleep(2000).then(() => "still running")]);
    await sleep(300);
    assert.ok(outcome instanceof Error, `the statement failed (${String(outcome?.code ?? outcome)})`);
    assert.deepEqual(uncaught.caught, [], "nothing thrown uncaught");
  } finally {
    uncaught.stop();
    side.close();
    await tls.stop();
  }
});
