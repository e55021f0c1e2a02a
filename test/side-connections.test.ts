// The adapter's side connections (probes, ghost kills, commit verification) behind a proxy that
// spreads connections over two servers. A side connection cut off while its statement runs must
// not make the driver send `KILL <its thread id>` over a new connection: behind a proxy that
// reaches another server and ends whatever session has that number there (a session that is not
// ours), and its failure there (1094) is an unhandled rejection.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { SideConnections } from "../src/adapter/side.ts";
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
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown) => unhandled.push(e);
  process.on("unhandledRejection", onUnhandled);
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
    assert.deepEqual(unhandled, [], "no unhandled rejection");
  } finally {
    process.off("unhandledRejection", onUnhandled);
    side.close();
    proxy.route = undefined;
  }
});
