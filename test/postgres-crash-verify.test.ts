// A lost COMMIT reply verified across a server crash. A transaction id that never reached the disk
// before a crash is handed out again after it (crash recovery restarts the counter from what the WAL
// holds): pg_xact_status() then answers for ANOTHER transaction. Here the COMMIT never reaches the
// server, the server crashes (kill -9) before its WAL writer has flushed the INSERT, comes back, and
// other transactions take the same ids and commit: the write did not commit and must be re-run
// once (one row), not acknowledged on the strength of somebody else's commit (no row).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import pg from "pg";
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
  const client = new pg.Client({ connectionString: server.url });
  await client.connect();
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

for (const [name, operation] of [
  ["create", (prisma: any, key: string) => prisma.ledger.create({ data: { key, amount: 1 } })],
  ["interactive $transaction", (prisma: any, key: string) => prisma.$transaction(async (tx: any) => tx.ledger.create({ data: { key, amount: 1 } }))],
] as const) {
  test(`${name}: COMMIT swallowed, the server crashes, its transaction id is handed out again and committed by others: re-run once, one row`, { timeout: 60_000 }, async () => {
    const proxy = await startProxy(server.host, server.port);
    const { prisma, retries } = pgClient(proxy.urlFor(server.url), { deadline: 20_000, adapter: { verifyTimeout: 5000 } });
    const reused: string[] = [];
    try {
      const key = uniqueKey("pg-crash");
      await prisma.ledger.count();
      const swallowed = proxy.swallow("COMMIT", async () => {
        await server.kill9();
        await server.start();
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
