// A lost COMMIT reply verified across a crash. A transaction id that never reached the disk before a
// crash is handed out again after it (crash recovery restarts the counter from what the WAL holds):
// pg_xact_status() then answers for ANOTHER transaction. Here the COMMIT never reaches the server, the
// server crashes before its WAL writer has flushed the INSERT — kill -9 of the whole server, or of one
// backend (the postmaster then reinitialises without restarting: its start time stays) — comes back,
// and other transactions take the same ids and commit: the write did not commit and must be re-run
// once (one row), not acknowledged on the strength of somebody else's commit (no row).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import pg from "pg";
import { setTimeout as sleep } from "node:timers/promises";
import { startPostgres, type PostgresServer } from "./support/postgres.ts";
import { startProxy } from "./support/proxy.ts";
import { ledgerRows, pgClient, uniqueKey, within } from "./support/pg-clients.ts";

let server: PostgresServer;
before(async () => {
  server = await startPostgres();
  // The WAL writer would otherwise write the INSERT's WAL out within 200 ms: the crash must come first.
  await server.setSystem("wal_writer_delay", "10000");
});
after(async () => {
  await server?.stop();
});

/** Commits `n` transactions that each take a new transaction id (the ids the crash gave back). */
async function takeIds(n: number): Promise<string[]> {
  let client: pg.Client;
  // After a backend's crash the server takes a moment to recover: connect until it lets us in (bounded).
  for (let tries = 0; ; tries++) {
    client = new pg.Client({ connectionString: server.url });
    client.on("error", () => undefined);
    try {
      await client.connect();
      break;
    } catch (e) {
      await client.end().catch(() => undefined);
      if (tries > 100) throw e;
      await sleep(50);
    }
  }
  const ids: string[] = [];
  try {
    for (let i = 0; i < n; i++) {
      await client.query("BEGIN");
      ids.push((await client.query("SELECT pg_current_xact_id()::text AS x")).rows[0].x);
      await client.query("COMMIT");
    }
  } finally {
    await client.end();
  }
  return ids;
}

const crashes = {
  "the server crashes (kill -9)": async () => {
    await server.kill9();
    await server.start();
  },
  "one backend crashes (the postmaster reinitialises)": async () => {
    const bystander = new pg.Client({ connectionString: server.url });
    bystander.on("error", () => undefined);
    await bystander.connect();
    process.kill((bystander as any).processID, "SIGKILL");
  },
};

for (const [how, crash] of Object.entries(crashes))
for (const [name, operation] of [
  ["create", (prisma: any, key: string) => prisma.ledger.create({ data: { key, amount: 1 } })],
  ["interactive $transaction", (prisma: any, key: string) => prisma.$transaction(async (tx: any) => tx.ledger.create({ data: { key, amount: 1 } }))],
] as const) {
  test(`${name}: COMMIT swallowed, ${how}, its transaction id is handed out again and committed by others: re-run once, one row`, { timeout: 60_000 }, async () => {
    const proxy = await startProxy(server.host, server.port);
    const { prisma, retries } = pgClient(proxy.urlFor(server.url), { deadline: 20_000, adapter: { verifyTimeout: 5000 } });
    const reused: string[] = [];
    try {
      const key = uniqueKey("pg-crash");
      await prisma.ledger.count();
      const swallowed = proxy.swallow("COMMIT", async () => {
        await crash();
        reused.push(...(await takeIds(20)));
      });
      const result: any = await within(operation(prisma, key), 30_000, name);
      await within(swallowed, 1000, "the COMMIT reached the proxy");
      assert.equal(result.key, key);
      assert.equal(await ledgerRows(server, key), 1, "the write is there exactly once (0: acknowledged on another transaction's commit)");
      assert.ok(retries.length >= 1, "it was re-run");
      assert.ok(reused.length === 20, "other transactions took ids after the crash");
    } finally {
      await prisma.$disconnect();
      await proxy.close();
    }
  });
}
