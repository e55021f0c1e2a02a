// A failover without Galera: two plain MariaDB servers behind HAProxy (a primary and a `backup`).
// The primary is demoted (SET GLOBAL read_only = 1: the app user has no SUPER / READ_ONLY ADMIN, so
// its writes get 1290) and traffic is moved to the other server (HAProxy runtime API: maint). The
// app's pooled connections still point at the demoted server (HAProxy is not told to cut them): the
// package must destroy such a connection and re-run the write, which lands on the new primary.
// Also 1792 (a session whose transactions are read-only) and a read-only server with nowhere else to
// go (a clear error within the deadline, never "unknown"). Every test ends with a data check.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import mariadb from "mariadb";
import { isOutcomeUnknown } from "../../src/index.ts";
import { readGaleraState } from "../../src/mysql/galera.ts";
import { errnoOf, trackedClients, withParams } from "../support/clients.ts";
import { uniqueKey } from "../support/data.ts";
import { startHaproxy, type Haproxy } from "../support/haproxy.ts";
import { startDatabase, type TestDatabase } from "../support/mariadb.ts";

let primary: TestDatabase;
let standby: TestDatabase;
let haproxy: Haproxy;
let url: string;
const log = (...a: unknown[]) => console.log("   ", ...a);

// A 5 s deadline unless a test says otherwise: a broken re-run fails a test in seconds, not minutes.
const { client, disconnectAll } = trackedClients({ deadline: 5000 });

async function rowsByKey(db: TestDatabase, prefix: string): Promise<Map<string, number>> {
  const rows = await db.admin<any[]>(`SELECT \`key\`, COUNT(*) AS n FROM \`${db.database}\`.Ledger WHERE \`key\` LIKE ? GROUP BY \`key\``, [
    `${prefix}%`,
  ]);
  return new Map(rows.map((r) => [r.key, Number(r.n)]));
}

before(async () => {
  [primary, standby] = await Promise.all([startDatabase(), startDatabase()]);
  // One app user, one password on both servers (HAProxy passes the handshake through).
  await standby.admin(`ALTER USER '${standby.user}'@'%' IDENTIFIED BY '${primary.password}'`);
  for (const db of [primary, standby]) await db.admin("CREATE USER IF NOT EXISTS 'haproxy_check'@'127.0.0.1'");
  haproxy = await startHaproxy({
    servers: [
      { name: "primary", port: primary.port, check: "mysql" },
      { name: "standby", port: standby.port, check: "mysql", backup: true },
    ],
    shutdownSessionsOnDown: false,
  });
  await haproxy.waitForServerState("primary", (s) => s === "UP", "UP");
  url = haproxy.urlFor(primary.url);
});
afterEach(async () => {
  await disconnectAll();
  await primary.setGlobal("read_only", 0);
  await standby.setGlobal("tx_read_only", 0);
});
after(async () => {
  await haproxy?.stop();
  await primary?.stop();
  await standby?.stop();
});

describe("failover without Galera", () => {
  test("the primary is made read-only and traffic moved to the other server: writes land on the new primary, none fails", async () => {
    // A 5 s deadline: a re-run that cannot reach the new primary fails the test in seconds.
    const { prisma, retries } = client(withParams(url, { connectionLimit: 8 }));
    const prefix = uniqueKey("failover");
    const acked = new Set<string>();
    const failures: Record<string, number> = {};
    const start = performance.now();
    const now = () => performance.now() - start;
    const runMs = 4000;
    let demotedAt = 0;
    let movedAt = 0;
    let newConnectionLands = "";
    const worker = async (w: number) => {
      let seq = 0;
      while (now() < runMs) {
        const key = `${prefix}-${w}-${seq++}`;
        try {
          if (seq % 3 === 0) {
            await prisma.$transaction(async (tx: any) => {
              await tx.ledger.create({ data: { key, amount: 1 } });
              await tx.ledger.create({ data: { key: `${key}-b`, amount: -1 } });
            });
            acked.add(`${key}-b`);
          } else {
            await prisma.ledger.create({ data: { key, amount: 1 } });
          }
          acked.add(key);
        } catch (error) {
          const shape = `${isOutcomeUnknown(error) ? "UNKNOWN " : ""}${(error as any)?.name} ${(error as any)?.code} errno ${errnoOf(error)}`;
          failures[shape] = (failures[shape] ?? 0) + 1;
        }
      }
    };
    const failover = async () => {
      await sleep(1200);
      await primary.setGlobal("read_only", 1); // the demotion: the app user's writes now get 1290
      demotedAt = now();
      await sleep(500);
      await haproxy.setState("primary", "maint"); // the proxy moves new connections to the standby
      movedAt = now();
      // The harness did what it says: a new connection through HAProxy now reaches the standby.
      const probe = await mariadb.createConnection({ host: "127.0.0.1", port: haproxy.port, user: primary.user, password: primary.password, connectTimeout: 2000 });
      try {
        const [row] = await probe.query("SELECT @@port AS port, @@read_only AS ro");
        newConnectionLands = `port ${row.port} read_only ${row.ro}`;
        assert.equal(Number(row.port), standby.port, "after maint, new connections reach the standby");
      } finally {
        await probe.end();
      }
    };
    try {
      await Promise.all([...Array.from({ length: 8 }, (_, w) => worker(w)), failover()]);
    } finally {
      await haproxy.setState("primary", "ready");
    }
    const onPrimary = await rowsByKey(primary, prefix);
    const onStandby = await rowsByKey(standby, prefix);
    const seen1290 = retries.filter((r) => errnoOf(r.error) === 1290).length;
    const both = [...onPrimary.keys()].filter((k) => onStandby.has(k));
    const dup = [...onPrimary.entries(), ...onStandby.entries()].filter(([, n]) => n > 1);
    const missing = [...acked].filter((k) => !onPrimary.has(k) && !onStandby.has(k));
    log(
      `failover: demoted at ${Math.round(demotedAt)} ms, moved at ${Math.round(movedAt)} ms (a new connection then: ${newConnectionLands}); ${acked.size} rows acknowledged, ` +
        `${onPrimary.size} on the old primary, ${onStandby.size} on the new one; ${retries.length} retries (${seen1290} after 1290); failures ${JSON.stringify(failures)}`,
    );
    assert.deepEqual(failures, {}, "no write failed or was reported unknown");
    assert.ok(seen1290 > 0, "the fault reached the client: some attempt got 1290");
    assert.ok(onStandby.size > 0, "writes landed on the new primary");
    assert.deepEqual(both, [], "no key was written on both servers");
    assert.deepEqual(dup, [], "no key has two rows");
    assert.deepEqual(missing, [], "every acknowledged write is there");
  });

  test("1792: pooled connections whose sessions are read-only are destroyed; each write is re-run on a fresh connection and lands once", async () => {
    await standby.setGlobal("tx_read_only", 1); // sessions opened now run read-only transactions
    const standbyUrl = new URL(standby.url);
    standbyUrl.password = primary.password; // the app user's password on both servers
    const { prisma, retries } = client(withParams(standbyUrl.toString(), { connectionLimit: 2 }), { deadline: 3000 });
    await Promise.all([0, 1].map(() => prisma.$queryRawUnsafe("SELECT SLEEP(0.1)")));
    await standby.setGlobal("tx_read_only", 0); // new sessions are writable again; the pooled two are not
    const prefix = uniqueKey("ro1792");
    const keys = [0, 1, 2, 3].map((i) => `${prefix}-${i}`);
    const failures: string[] = [];
    for (const key of keys) {
      try {
        await prisma.ledger.create({ data: { key, amount: 1 } });
      } catch (error) {
        failures.push(`${isOutcomeUnknown(error) ? "UNKNOWN " : ""}${(error as any)?.name} ${(error as any)?.code} errno ${errnoOf(error)}`);
      }
    }
    const rows = await rowsByKey(standby, prefix);
    const seen1792 = retries.filter((r) => errnoOf(r.error) === 1792).length;
    log(`1792: ${retries.length} retries (${seen1792} after 1792), failures ${JSON.stringify(failures)}`);
    assert.deepEqual(failures, [], "no write failed");
    assert.ok(seen1792 > 0, "the fault reached the client: an attempt got 1792");
    assert.deepEqual(keys.map((k) => rows.get(k) ?? 0), [1, 1, 1, 1], "each write applied once");
  });

  test("a read-only server with nowhere else to go: the write fails within its deadline, not as an unknown outcome, and did not apply", async () => {
    await primary.setGlobal("read_only", 1);
    const { prisma } = client(primary.url, { deadline: 1500 });
    const key = uniqueKey("ro-stuck");
    const t0 = performance.now();
    const error = await prisma.ledger.create({ data: { key, amount: 1 } }).then(
      () => undefined,
      (e: unknown) => e,
    );
    const ms = Math.round(performance.now() - t0);
    log(`read-only, nowhere to go: ${(error as any)?.name} ${(error as any)?.code} errno ${errnoOf(error)} after ${ms} ms`);
    assert.ok(error, "the write fails");
    assert.equal(isOutcomeUnknown(error), false, "not an unknown outcome");
    assert.ok(ms < 1500 + 1500, `within the deadline (${ms} ms)`);
    assert.equal((await rowsByKey(primary, key)).size, 0, "nothing applied");
  });

  test("readGaleraState on a server without Galera: not a Galera node, nothing to report", async () => {
    const conn = await primary.adminConnection();
    try {
      assert.deepEqual(await readGaleraState(conn), { galera: false, healthy: true, notes: [] });
    } finally {
      await conn.end();
    }
  });
});
