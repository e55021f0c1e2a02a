// withResilience(new PrismaPg(…)) on a real PostgreSQL with real faults (src/pg-adapter/): a read
// terminated mid-query, a transaction terminated between statements, a batch terminated, a crash and
// restart under load, a wrong password, and the bounded pool wait. Data checked after each.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { PrismaPg } from "@prisma/adapter-pg";
import { PrismaClient } from "../generated/postgres/client.ts";
import { resilience, withResilience } from "../src/index.ts";
import { startPostgres, type PostgresServer } from "./support/postgres.ts";
import { ledgerRows, pgClient, uniqueKey, within } from "./support/pg-clients.ts";

let server: PostgresServer;
before(async () => {
  server = await startPostgres();
});
after(async () => {
  await server?.stop();
});

describe("postgres wrapped: terminated backends", () => {
  test("a read terminated mid-query is re-run, its result right", async () => {
    const { prisma, retries } = pgClient(server.url);
    try {
      await prisma.ledger.count();
      const read = within(prisma.$queryRaw<Array<{ v: number }>>`SELECT pg_sleep(0.4)::text, 42 AS v`, 10_000, "the read");
      await server.waitForStatement("pg_sleep");
      await server.terminate({ running: "pg_sleep" });
      const rows = await read;
      assert.equal(rows[0]!.v, 42);
      assert.equal(retries.length, 1);
    } finally {
      await prisma.$disconnect();
    }
  });

  test("an interactive transaction terminated between statements is re-run whole: exactly one row", async () => {
    const { prisma, retries } = pgClient(server.url);
    try {
      const key = uniqueKey("pg-itx");
      let attempts = 0;
      let firstDone!: () => void;
      const firstStatement = new Promise<void>((r) => (firstDone = r));
      let goOn!: () => void;
      const terminated = new Promise<void>((r) => (goOn = r));
      const run = within(
        prisma.$transaction(async (tx: any) => {
          attempts++;
          await tx.ledger.create({ data: { key, amount: 1 } });
          if (attempts === 1) {
            firstDone();
            await terminated;
          }
          await tx.ledger.create({ data: { key: `${key}-b`, amount: 1 } });
          return "done";
        }),
        15_000,
        "the transaction",
      );
      await within(firstStatement, 5000, "the first statement");
      await server.terminate("idle in transaction");
      goOn();
      assert.equal(await run, "done");
      assert.equal(attempts, 2);
      assert.equal(retries.length, 1);
      assert.equal(await ledgerRows(server, key), 1);
      assert.equal(await ledgerRows(server, `${key}-b`), 1);
    } finally {
      await prisma.$disconnect();
    }
  });

  test("a batch $transaction terminated mid-way is re-run: each write once", async () => {
    const { prisma, retries } = pgClient(server.url);
    try {
      const key = uniqueKey("pg-batch");
      await prisma.ledger.count();
      const batch = within(
        prisma.$transaction([prisma.ledger.create({ data: { key, amount: 1 } }), prisma.$queryRaw`SELECT pg_sleep(0.4)::text`, prisma.ledger.create({ data: { key: `${key}-b`, amount: 1 } })]),
        15_000,
        "the batch",
      );
      await server.waitForStatement("pg_sleep");
      await server.terminate({ running: "pg_sleep" });
      await batch;
      assert.equal(retries.length, 1);
      assert.equal(await ledgerRows(server, key), 1);
      assert.equal(await ledgerRows(server, `${key}-b`), 1);
    } finally {
      await prisma.$disconnect();
    }
  });
});

describe("postgres wrapped: outages and refusals", () => {
  test("kill -9 and restart under load: callers held within the deadline, no failure, every acknowledged write there once", async () => {
    const { prisma } = pgClient(server.url, { deadline: 12_000 });
    const prefix = uniqueKey("pg-crash");
    const acknowledged: string[] = [];
    const failures: unknown[] = [];
    let stop = false;
    let n = 0;
    try {
      await prisma.ledger.count();
      const worker = async () => {
        while (!stop) {
          const key = `${prefix}-${n++}`;
          try {
            if (n % 3 === 0) await prisma.ledger.findMany({ where: { key: { startsWith: prefix } }, take: 1 });
            else {
              await prisma.ledger.create({ data: { key, amount: 1 } });
              acknowledged.push(key);
            }
          } catch (e) {
            failures.push(e);
          }
        }
      };
      const workers = Array.from({ length: 4 }, worker);
      await sleep(400);
      await server.restart({ downMs: 700 });
      await sleep(800);
      stop = true;
      await within(Promise.all(workers), 15_000, "the workers");
      assert.deepEqual(failures.map((e: any) => `${e?.name} ${e?.code ?? ""} ${String(e?.message).slice(0, 120)}`), [], "no operation failed");
      assert.ok(acknowledged.length > 10, `writes were acknowledged (${acknowledged.length})`);
      const rows = await server.admin<Array<{ key: string; n: number }>>('SELECT key, count(*)::int AS n FROM "Ledger" WHERE key LIKE $1 GROUP BY key', [`${prefix}-%`]);
      const counts = new Map(rows.map((r) => [r.key, r.n]));
      for (const key of acknowledged) assert.equal(counts.get(key), 1, `acknowledged ${key} is there once`);
      assert.ok(rows.every((r) => r.n === 1), "no duplicate");
    } finally {
      stop = true;
      await prisma.$disconnect();
    }
  });

  test("wrong password: ConnectFailedError at once (< 2 s), no secret in the message", async () => {
    const bad = new URL(server.url);
    const secret = "wrong-secret-x9";
    bad.password = secret;
    const badUrl = bad.toString();
    const { prisma } = pgClient(badUrl);
    try {
      const started = performance.now();
      const error: any = await within(prisma.ledger.count().then(() => undefined, (e: unknown) => e), 5000, "the call");
      const ms = performance.now() - started;
      assert.ok(error, "the call failed");
      assert.equal(error.name, "ConnectFailedError", String(error?.message));
      assert.equal(error.reason, "auth");
      assert.ok(ms < 2000, `failed in ${Math.round(ms)} ms`);
      assert.ok(!String(error.message).includes(secret), "no password in the message");
      assert.ok(!String(error.message).includes(server.password), "no password in the message");
    } finally {
      await prisma.$disconnect();
    }
  });

  test("unknown database: ConnectFailedError (unknown-database) at once (< 2 s), never retried, no secret in the message", async () => {
    const bad = new URL(server.url);
    bad.pathname = "/no_such_database";
    const { prisma, retries } = pgClient(bad.toString());
    try {
      const started = performance.now();
      const error: any = await within(prisma.ledger.count().then(() => undefined, (e: unknown) => e), 5000, "the call");
      const ms = performance.now() - started;
      assert.equal(error?.name, "ConnectFailedError", String(error?.message));
      assert.equal(error.reason, "unknown-database");
      assert.equal(retries.length, 0);
      assert.ok(ms < 2000, `failed in ${Math.round(ms)} ms`);
      assert.ok(!String(error.message).includes(server.password), "no password in the message");
    } finally {
      await prisma.$disconnect();
    }
  });
});

describe("postgres wrapped: the pool's wait is bounded", () => {
  test("the default pool has a bounded connectionTimeoutMillis and keepAlive; an app pool is left as it is", async () => {
    const { prisma, adapter } = pgClient(server.url);
    try {
      await prisma.ledger.count();
      const options = (adapter as any).inner.config;
      assert.equal(options.connectionTimeoutMillis, 5000);
      assert.equal(options.keepAlive, true);
    } finally {
      await prisma.$disconnect();
    }
    const pool = new pg.Pool({ connectionString: server.url });
    const appClient = new PrismaClient({ adapter: withResilience(new PrismaPg(pool)) }).$extends(resilience());
    try {
      await appClient.ledger.count();
      assert.equal((pool as any).options.connectionTimeoutMillis, undefined);
    } finally {
      await appClient.$disconnect();
      await pool.end();
    }
  });

  test("a pool exhausted by a lock wait: a call ends (unsent, typed) within the bounded wait, never hangs", async () => {
    const { prisma } = pgClient({ connectionString: server.url, max: 1 }, { deadline: 1000 });
    const foreign = new pg.Client({ connectionString: server.url });
    await foreign.connect();
    const key = uniqueKey("pg-lock");
    try {
      await prisma.ledger.create({ data: { key, amount: 1 } });
      await foreign.query("BEGIN");
      await foreign.query('UPDATE "Ledger" SET amount = 2 WHERE key = $1', [key]);
      // The pool's only connection waits on the foreign lock.
      const blocked = prisma.$executeRaw`UPDATE "Ledger" SET amount = 3 WHERE key = ${key}`.then(() => "done", (e: unknown) => e);
      await server.waitForStatement("UPDATE");
      const started = performance.now();
      const error: any = await within(prisma.ledger.count().then(() => undefined, (e: unknown) => e), 9000, "the call waiting for a pool client");
      const ms = performance.now() - started;
      assert.ok(error, "the call failed");
      assert.ok(ms < 7000, `ended in ${Math.round(ms)} ms`);
      await foreign.query("ROLLBACK");
      assert.equal(await within(blocked, 5000, "the blocked update"), "done");
    } finally {
      await foreign.end().catch(() => undefined);
      await prisma.$disconnect();
    }
  });
});
