// Exactly-once on PostgreSQL without a mark table (src/pg-adapter/): a writing transaction's id is
// read in the flight of its statements; after a lost COMMIT reply pg_xact_status() decides.
// COMMIT delivered, reply lost -> the result, one row, nothing re-run. COMMIT swallowed -> re-run
// once, one row. A silent drop at COMMIT (the backend still holds the transaction) -> its backend
// is ended (pid and transaction id checked) -> re-run, one row. A foreign session is never ended.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import pg from "pg";
import { startPostgres, type PostgresServer } from "./support/postgres.ts";
import { startProxy } from "./support/proxy.ts";
import { ledgerRows, pgClient, uniqueKey, within } from "./support/pg-clients.ts";
import { PgSide } from "../src/pg-adapter/side.ts";
import { terminateIfOurs, verifyXact } from "../src/pg-adapter/verify.ts";
import { queryWithId } from "../src/pg-adapter/wire.ts";

let server: PostgresServer;
before(async () => {
  server = await startPostgres();
});
after(async () => {
  await server?.stop();
});

const operations: Record<string, (prisma: any, key: string) => Promise<unknown>> = {
  create: (prisma, key) => prisma.ledger.create({ data: { key, amount: 1 } }),
  "interactive $transaction": (prisma, key) =>
    prisma.$transaction(async (tx: any) => {
      await tx.ledger.create({ data: { key, amount: 1 } });
      return "callback result";
    }),
  "batch $transaction": (prisma, key) => prisma.$transaction([prisma.ledger.create({ data: { key, amount: 1 } }), prisma.ledger.count({ where: { key } })]),
  $executeRaw: (prisma, key) => prisma.$executeRaw`INSERT INTO "Ledger" (key, amount) VALUES (${key}, 1)`,
};

function checkResult(name: string, result: any, key: string) {
  if (name === "create") assert.equal(result.key, key);
  if (name === "interactive $transaction") assert.equal(result, "callback result");
  if (name === "batch $transaction") assert.equal(result[1], 1);
  if (name === "$executeRaw") assert.equal(result, 1);
}

async function throughProxy(run: (proxy: Awaited<ReturnType<typeof startProxy>>, url: string) => Promise<void>) {
  const proxy = await startProxy(server.host, server.port);
  try {
    await run(proxy, proxy.urlFor(server.url));
  } finally {
    await proxy.close();
  }
}

for (const [name, operation] of Object.entries(operations)) {
  describe(`postgres exactly-once: ${name}`, () => {
    test("COMMIT delivered, its reply lost: the result, one row, nothing re-run", async () => {
      await throughProxy(async (proxy, url) => {
        const { prisma, retries } = pgClient(url);
        try {
          const key = uniqueKey("pg-lost");
          await prisma.ledger.count();
          const lost = proxy.loseReplyTo("COMMIT");
          const result = await within(operation(prisma, key), 15_000, name);
          await within(lost, 1000, "the COMMIT reached the proxy");
          checkResult(name, result, key);
          assert.equal(retries.length, 0, "nothing was re-run");
          assert.equal(await ledgerRows(server, key), 1);
        } finally {
          await prisma.$disconnect();
        }
      });
    });

    test("COMMIT swallowed before the server: re-run once, one row", async () => {
      await throughProxy(async (proxy, url) => {
        const { prisma, retries } = pgClient(url);
        try {
          const key = uniqueKey("pg-swallow");
          await prisma.ledger.count();
          const swallowed = proxy.swallow("COMMIT");
          const result = await within(operation(prisma, key), 15_000, name);
          await within(swallowed, 1000, "the COMMIT reached the proxy");
          checkResult(name, result, key);
          assert.equal(retries.length, 1, "re-run once");
          assert.equal(await ledgerRows(server, key), 1);
        } finally {
          await prisma.$disconnect();
        }
      });
    });
  });
}

describe("postgres exactly-once: the backend still holds the transaction", () => {
  test("silent drop at COMMIT: its backend is ended (pid and transaction id checked), re-run once, one row", async () => {
    await throughProxy(async (proxy, url) => {
      const { prisma, retries } = pgClient(url, { adapter: { silentAfter: 300 } });
      try {
        const key = uniqueKey("pg-silent");
        await prisma.ledger.count();
        // The COMMIT never reaches the server, no FIN, no RST: the server keeps the transaction open.
        const held = proxy.holdFrom("COMMIT");
        void held.seen.then(() => proxy.dropAll());
        // (A PrismaPromise runs only once awaited: within() starts it now.)
        const done = within(prisma.ledger.create({ data: { key, amount: 1 } }), 15_000, "the create");
        await within(held.seen, 5000, "the COMMIT reached the proxy");
        const ghost = (await server.appConnections()).find((c) => c.state === "idle in transaction");
        assert.ok(ghost, "the server still holds the transaction");
        const result: any = await done;
        assert.equal(result.key, key);
        assert.equal(retries.length, 1, "re-run once");
        assert.equal(await ledgerRows(server, key), 1);
        assert.ok(!(await server.appConnections()).some((c) => c.pid === ghost.pid), "the ghost backend was ended");
      } finally {
        await prisma.$disconnect();
      }
    });
  });

  test("a transaction that only read: a lost COMMIT reply is re-run like a lost read", async () => {
    await throughProxy(async (proxy, url) => {
      const { prisma, retries } = pgClient(url);
      try {
        await prisma.ledger.count();
        const lost = proxy.loseReplyTo("COMMIT");
        const result = await within(prisma.$transaction(async (tx: any) => tx.ledger.count({ where: { key: "none" } })), 15_000, "the read-only transaction");
        await within(lost, 1000, "the COMMIT reached the proxy");
        assert.equal(result, 0);
        assert.equal(retries.length, 1, "re-run once");
      } finally {
        await prisma.$disconnect();
      }
    });
  });
});

describe("postgres exactly-once: identity of the backend to end", () => {
  test("a foreign session holding a transaction is never ended: neither by its pid nor by its transaction id", async () => {
    const foreign = new pg.Client({ connectionString: server.url });
    await foreign.connect();
    const side = new PgSide(() => ({ connectionString: server.url }));
    try {
      await foreign.query("BEGIN");
      await foreign.query('INSERT INTO "Ledger" (key, amount) VALUES ($1, 1)', [uniqueKey("pg-foreign")]);
      const xid: string = (await foreign.query("SELECT pg_current_xact_id()::text AS x")).rows[0].x;
      const pid: number = (foreign as any).processID;
      const { client } = await side.connect(2000);
      assert.ok(client);
      try {
        // Its pid with another transaction's id, and its transaction id with another pid: not ours.
        assert.equal(await terminateIfOurs(client, { pid, xactId: String(BigInt(xid) + 1n) }), false);
        assert.equal(await terminateIfOurs(client, { pid: pid + 100000, xactId: xid }), false);
      } finally {
        side.release(client);
      }
      // Verification of a transaction whose backend is not provably ours (behind a pooler the pid
      // never matches): it waits, ends nothing, and says "unknown" by its deadline.
      const started = performance.now();
      assert.equal(await verifyXact(side, { pid: undefined, xactId: xid }, performance.now() + 600, true), "unknown");
      assert.ok(performance.now() - started < 2000);
      assert.equal((await foreign.query("SELECT 1 AS one")).rows[0].one, 1, "the foreign session is alive");
      await foreign.query("COMMIT");
    } finally {
      side.close();
      await foreign.end().catch(() => undefined);
    }
  });
});

describe("postgres exactly-once: BEGIN in the statement's flight", () => {
  // What the server does with a failing first command, pipelined before an INSERT. A stand-in for a
  // BEGIN that fails: a BEGIN with a bad option (an error, as any failing BEGIN is).
  const BAD_BEGIN = "BEGIN ISOLATION LEVEL NONSENSE";
  test("unsafe variant: BEGIN as a separate simple Query pipelined: when it fails, the INSERT runs on its own and commits", async () => {
    const c = new pg.Client({ connectionString: server.url });
    await c.connect();
    try {
      const key = uniqueKey("pg-unsafe-begin");
      const results = await Promise.allSettled([c.query(BAD_BEGIN), c.query('INSERT INTO "Ledger" (key, amount) VALUES ($1, 1)', [key])]);
      assert.equal(results[0].status, "rejected");
      assert.equal(results[1].status, "fulfilled", "the INSERT ran although its BEGIN failed");
      assert.equal(await ledgerRows(server, key), 1, "outside any transaction: committed on its own");
    } finally {
      await c.end();
    }
  });
  test("the wrapper's variant: BEGIN, the statement and the id read in one Sync group: a failing BEGIN skips the INSERT", async () => {
    const c = new pg.Client({ connectionString: server.url });
    await c.connect();
    try {
      const key = uniqueKey("pg-safe-begin");
      await assert.rejects(queryWithId(c as any, { text: 'INSERT INTO "Ledger" (key, amount) VALUES ($1, 1)', values: [key], rowMode: "array" }, BAD_BEGIN));
      assert.equal(await ledgerRows(server, key), 0, "nothing ran");
      const ok = await queryWithId(c as any, { text: 'INSERT INTO "Ledger" (key, amount) VALUES ($1, 1)', values: [key], rowMode: "array" }, true);
      assert.match(String(ok.xactId), /^\d+$/, "the transaction's id came back in the same flight");
      await c.query("ROLLBACK");
      assert.equal(await ledgerRows(server, key), 0);
    } finally {
      await c.end();
    }
  });
});
