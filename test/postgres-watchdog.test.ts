// Silent drops on PostgreSQL, bounded with the defaults (src/pg-adapter/watchdog.ts, silence.ts):
// a connection black-holed by the fault proxy (no FIN, no RST) is noticed after silentAfter, its
// backend looked up from a side connection, and only a backend provably waiting for us (idle) or
// gone gets its connection cut; a running statement (pg_sleep, a lock wait) never does, and a
// foreign backend is never touched. Data checked in every test.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import pg from "pg";
import { startPostgres, type PostgresServer } from "./support/postgres.ts";
import { startProxy, type FaultProxy } from "./support/proxy.ts";
import { ledgerRows, pgClient, uniqueKey, within } from "./support/pg-clients.ts";
import { judge, LARGE_QUERY_BYTES, type BackendRow } from "../src/pg-adapter/silence.ts";

let server: PostgresServer;
before(async () => {
  server = await startPostgres();
});
after(async () => {
  await server?.stop();
});

async function throughProxy(run: (proxy: FaultProxy, url: string) => Promise<void>) {
  const proxy = await startProxy(server.host, server.port);
  try {
    await run(proxy, proxy.urlFor(server.url));
  } finally {
    await proxy.close();
  }
}

/** Ends a test bounded even when a call still hangs on a black hole: the proxy's links go first. */
async function settle(prisma: { $disconnect(): Promise<void> }, proxy: FaultProxy) {
  await proxy.close();
  await within(prisma.$disconnect(), 5000, "$disconnect").catch((e) => console.error(String(e)));
}

async function foreignSession(): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: server.url, application_name: "foreign" });
  c.on("error", () => undefined);
  await c.connect();
  return c;
}

async function alive(pid: number): Promise<boolean> {
  return (await server.admin<any[]>("SELECT 1 FROM pg_stat_activity WHERE pid = $1", [pid])).length === 1;
}

describe("postgres watchdog: silent connections are cut, within about silentAfter", () => {
  test("a read whose connection went silent is re-run on a fresh one (defaults), data right", async () => {
    await throughProxy(async (proxy, url) => {
      const { prisma, retries } = pgClient(url);
      try {
        const key = uniqueKey("pg-wd-read");
        await prisma.ledger.create({ data: { key, amount: 7 } });
        const before = proxy.accepted;
        assert.equal(proxy.dropAll(), 1, "the one pooled connection is black-holed");
        const started = performance.now();
        const rows: any[] = await within(prisma.ledger.findMany({ where: { key } }), 8000, "the read");
        const ms = performance.now() - started;
        assert.deepEqual(
          rows.map((r) => r.amount),
          [7],
        );
        assert.equal(retries.length, 1, "re-run once");
        assert.ok(ms < 5000, `re-run within silentAfter (1000) and a few scans, took ${Math.round(ms)} ms`);
        assert.ok(proxy.accepted >= before + 2, "a side connection looked, and a fresh connection ran the read");
      } finally {
        await settle(prisma, proxy);
      }
    });
  });

  test("an interactive transaction silent between statements is re-run whole: its ghost (holding a row lock) ended, one row, the counter exact; a foreign session untouched", async () => {
    await throughProxy(async (proxy, url) => {
      const { prisma, retries } = pgClient(url, { adapter: { silentAfter: 500 } });
      const foreign = await foreignSession();
      try {
        const key = uniqueKey("pg-wd-tx");
        const counter = await prisma.ledger.create({ data: { key: `${key}-c`, amount: 0 } });
        // A foreign session idle in its own transaction all along (a row of its own locked).
        const other = await prisma.ledger.create({ data: { key: `${key}-f`, amount: 0 } });
        await foreign.query("BEGIN");
        await foreign.query('UPDATE "Ledger" SET amount = 5 WHERE id = $1', [other.id]);
        const foreignPid = (foreign as any).processID as number;
        let attempts = 0;
        let ghostPid: number | undefined;
        const result = await within(
          prisma.$transaction(async (tx: any) => {
            attempts++;
            await tx.ledger.update({ where: { id: counter.id }, data: { amount: { increment: 1 } } });
            await tx.ledger.create({ data: { key, amount: 1 } });
            if (attempts === 1) {
              ghostPid = (await server.appConnections()).find((c) => c.state === "idle in transaction" && c.pid !== foreignPid)?.pid;
              proxy.dropAll();
            }
            return tx.ledger.count({ where: { key } });
          }),
          10_000,
          "the transaction",
        );
        assert.equal(result, 1);
        assert.equal(attempts, 2, "re-run whole, once");
        assert.equal(retries.length, 1);
        assert.equal(await ledgerRows(server, key), 1, "one row");
        const [c] = await server.admin<any[]>('SELECT amount FROM "Ledger" WHERE id = $1', [counter.id]);
        assert.equal(c.amount, 1, "the counter is exact");
        assert.ok(ghostPid !== undefined, "the first attempt's backend was seen idle in its transaction");
        assert.equal(await alive(ghostPid!), false, "the ghost was ended (else the re-run would wait on its row lock)");
        assert.equal(await alive(foreignPid), true, "the foreign backend is untouched");
        await foreign.query("COMMIT");
        const [f] = await server.admin<any[]>('SELECT amount FROM "Ledger" WHERE id = $1', [other.id]);
        assert.equal(f.amount, 5, "the foreign transaction committed its own write");
      } finally {
        await foreign.end().catch(() => undefined);
        await settle(prisma, proxy);
      }
    });
  });
});

describe("postgres watchdog: running statements are never cut", () => {
  test("a long statement (pg_sleep(3)) is asked about and left alone", async () => {
    await throughProxy(async (proxy, url) => {
      const { prisma, retries } = pgClient(url, { adapter: { silentAfter: 300 } });
      try {
        await prisma.ledger.count();
        const before = proxy.accepted;
        const started = performance.now();
        const rows: any[] = await within(prisma.$queryRawUnsafe("SELECT 42 AS answer FROM pg_sleep(3)"), 10_000, "the sleep");
        assert.equal(rows[0].answer, 42);
        assert.ok(performance.now() - started >= 2900, "it ran to its end");
        assert.equal(retries.length, 0, "never cut, never re-run");
        assert.ok(proxy.accepted > before, "its backend was looked at from a side connection");
      } finally {
        await settle(prisma, proxy);
      }
    });
  });

  test("a statement waiting on a lock another session holds is never cut; the other session is untouched", async () => {
    await throughProxy(async (proxy, url) => {
      const { prisma, retries } = pgClient(url, { adapter: { silentAfter: 300 } });
      const foreign = await foreignSession();
      try {
        const key = uniqueKey("pg-wd-lock");
        const row = await prisma.ledger.create({ data: { key, amount: 0 } });
        await foreign.query("BEGIN");
        await foreign.query('UPDATE "Ledger" SET amount = amount + 2 WHERE id = $1', [row.id]);
        const before = proxy.accepted;
        const waiting = within(prisma.$executeRaw`UPDATE "Ledger" SET amount = amount + 10 WHERE id = ${row.id}`, 10_000, "the update");
        await new Promise((r) => setTimeout(r, 2500));
        assert.ok(proxy.accepted > before, "its backend was looked at from a side connection");
        assert.equal(await alive((foreign as any).processID), true, "the lock holder is untouched");
        await foreign.query("COMMIT");
        assert.equal(await waiting, 1);
        assert.equal(retries.length, 0, "never cut, never re-run");
        const [r] = await server.admin<any[]>('SELECT amount FROM "Ledger" WHERE id = $1', [row.id]);
        assert.equal(r.amount, 12, "both updates, once each");
      } finally {
        await foreign.end().catch(() => undefined);
        await settle(prisma, proxy);
      }
    });
  });
});

describe("postgres watchdog: off, and nothing left behind", () => {
  test("silentAfter: 0 turns it off: a read held on its way for 3 s is not cut (nor asked about)", async () => {
    await throughProxy(async (proxy, url) => {
      const { prisma, retries } = pgClient(url, { adapter: { silentAfter: 0 } });
      try {
        const key = uniqueKey("pg-wd-off");
        await prisma.ledger.create({ data: { key, amount: 1 } });
        const before = proxy.accepted;
        // The read's bytes (its key) and all after wait at the proxy: the connection is silent.
        const held = proxy.holdFrom(key);
        let settled = false;
        const read = within(prisma.ledger.findMany({ where: { key } }), 10_000, "the read").finally(() => (settled = true));
        await within(held.seen, 3000, "the read reached the proxy");
        await new Promise((r) => setTimeout(r, 3000));
        assert.equal(settled, false, "nothing cut the silent connection");
        assert.equal(proxy.accepted, before, "no side connection looked");
        held.release();
        const rows: any[] = await read;
        assert.deepEqual(
          rows.map((r) => r.amount),
          [1],
        );
        assert.equal(retries.length, 0);
      } finally {
        await settle(prisma, proxy);
      }
    });
  });

  test("after $disconnect() no timer and no socket of the wrapper is left", async () => {
    await server.admin("SELECT 1");
    const sockets = () => process.getActiveResourcesInfo().filter((r) => r === "TCPSocketWrap").length;
    const before = sockets();
    const { prisma, adapter } = pgClient(server.url, { adapter: { silentAfter: 300 } });
    await prisma.ledger.count();
    // The wrapped adapters this factory made (factory.ts); the interval is unref'd, so
    // getActiveResourcesInfo() does not list it: its own flag is read.
    const live = [...((adapter as any).live as Set<any>)];
    assert.equal(live.length, 1);
    assert.equal(live[0].watchdog.running, true, "the watchdog runs while connected");
    // A statement across a few scans, so that the watchdog has looked at it (a side connection).
    await prisma.$queryRawUnsafe("SELECT 1 AS one FROM pg_sleep(1)");
    await prisma.$disconnect();
    assert.equal(live[0].watchdog.running, false, "its interval is cleared");
    const deadline = performance.now() + 3000;
    while (sockets() > before && performance.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.ok(sockets() <= before, `sockets: ${sockets()} now, ${before} before`);
  });
});

describe("postgres watchdog: what a backend row means (silence.ts)", () => {
  const born = 0;
  const seen = 1000;
  const asked = 3000;
  const row = (over: Partial<BackendRow>): BackendRow => ({
    pid: 10,
    state: "idle",
    started: "t0",
    changed: "t1",
    idle_ms: 5000,
    age_ms: 60_000,
    uptime_ms: 600_000,
    me: 77,
    ...over,
  });
  const w = { seen, born, sent: 100 };
  test("idle since before the query: the link is dead; running or waiting: never cut", () => {
    assert.equal(judge(row({}), w, asked, 77), "idle");
    assert.equal(judge(row({ state: "idle in transaction" }), w, asked, 77), "idle");
    assert.equal(judge(row({ state: "active" }), w, asked, 77), "running");
    assert.equal(judge(row({ state: "fastpath function call" }), w, asked, 77), "running");
    assert.equal(judge(row({ state: null }), w, asked, 77), "running");
  });
  test("idle only a moment: asked again; a large query may still be arriving: never cut", () => {
    assert.equal(judge(row({ idle_ms: 100 }), w, asked, 77), "recheck");
    assert.equal(judge(row({}), { ...w, sent: LARGE_QUERY_BYTES + 1 }, asked, 77), "running");
    // Finished during the watch (idle for less than since the query was seen): its reply was lost.
    assert.equal(judge(row({ idle_ms: 1500 }), { ...w, sent: LARGE_QUERY_BYTES + 1 }, asked, 77), "idle");
  });
  test("no backend of ours, a pid reused by a younger backend, or a restarted server: gone", () => {
    assert.equal(judge(row({ state: null, started: null, age_ms: null, idle_ms: null }), w, asked, 77), "gone");
    assert.equal(judge(row({ age_ms: 1000, state: "active" }), w, asked, 77), "gone");
    assert.equal(judge(row({ uptime_ms: 1000, state: "active" }), w, asked, 77), "gone");
  });
  test("behind a pooler (BackendKeyData is not the backend's pid): never cut", () => {
    assert.equal(judge(row({ me: 78 }), w, asked, 77), "running");
    assert.equal(judge(row({ state: null, started: null, age_ms: null, idle_ms: null }), w, asked, undefined), "running");
  });
});
