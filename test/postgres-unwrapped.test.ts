// `$extends(resilience)` on bare @prisma/adapter-pg (no withResilience wrapper) against a real
// PostgreSQL with real faults: what the error alone proves decides (src/postgres/classify.ts), and
// every test checks the data. Each fault is first shown to fail bare Prisma, so no test here passes
// without the extension doing its work.
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { PrismaPg } from "@prisma/adapter-pg";
import pg from "pg";
import { PrismaClient } from "../generated/postgres/client.ts";
import { isOutcomeUnknown, resilience, type RetryContext } from "../src/index.ts";
import { startPostgres, type PostgresServer } from "./support/postgres.ts";

let server: PostgresServer;
let url: string;
const open: { $disconnect(): Promise<void> }[] = [];

function bare(connectionString = url) {
  const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString }) });
  open.push(prisma);
  return prisma;
}
function extended(connectionString = url) {
  const retries: RetryContext[] = [];
  const base = bare(connectionString);
  const prisma = base.$extends(resilience({ onRetry: (c) => retries.push(c) }));
  return { prisma, retries };
}
const rows = async (key: string) => (await server.admin<{ n: number }[]>(`SELECT count(*)::int AS n FROM "Ledger" WHERE key = $1`, [key]))[0].n;
const balances = async () => Object.fromEntries((await server.admin<{ email: string; balance: number }[]>(`SELECT email, balance FROM "User"`)).map((r) => [r.email, r.balance]));
/** Starts a lazy PrismaPromise now; its rejection is read later by outcome(). */
function start<T>(promise: PromiseLike<T>): Promise<T> {
  const started = Promise.resolve(promise);
  started.catch(() => undefined);
  return started;
}
/** Runs `promise` (a lazy PrismaPromise started here), bounded, and returns its error or undefined. */
async function outcome<T>(promise: PromiseLike<T>, ms = 15_000): Promise<{ value?: T; error?: any }> {
  const bound = sleep(ms).then(() => ({ error: new Error(`no outcome within ${ms} ms`) }));
  return Promise.race([Promise.resolve(promise).then((value) => ({ value }), (error) => ({ error })), bound]);
}

before(async () => {
  server = await startPostgres();
  url = server.url;
  // A create with note 'sleep' stays in flight 2 s inside its trigger: time to terminate it.
  await server.admin(`CREATE FUNCTION ledger_sleep() RETURNS trigger AS $$ BEGIN IF NEW.note = 'sleep' THEN PERFORM pg_sleep(2); END IF; RETURN NEW; END $$ LANGUAGE plpgsql`);
  await server.admin(`CREATE TRIGGER ledger_sleep BEFORE INSERT ON "Ledger" FOR EACH ROW EXECUTE FUNCTION ledger_sleep()`);
});
after(async () => {
  for (const p of open) await p.$disconnect().catch(() => undefined);
  await server?.stop();
});
beforeEach(async () => {
  await server.reset();
  await server.admin(`INSERT INTO "User" (email, balance) VALUES ('a@x', 100), ('b@x', 100)`);
});

describe("postgres without the adapter wrapper", { timeout: 30_000 }, () => {
  test("the dialect comes from the adapter factory's provider", async () => {
    const { prisma } = extended();
    // A plain pg error (no code) is "fatal" to MySQL's rules: it is retried only with pgDialect.
    const query = start(prisma.$queryRawUnsafe<{ v: string }[]>("SELECT pg_sleep(0.4)::text AS v"));
    await server.waitForStatement("pg_sleep");
    await server.terminate({ running: "pg_sleep" });
    const { value, error } = await outcome(query);
    assert.equal(error, undefined);
    assert.equal(value?.length, 1);
  });

  test("a read whose backend is terminated mid-query re-runs and succeeds (bare Prisma fails with 57P01)", async () => {
    const sql = "SELECT pg_sleep(0.5)::text AS slept, 42 AS answer";
    const plain = start(bare().$queryRawUnsafe(sql));
    await server.waitForStatement("pg_sleep");
    await server.terminate({ running: "pg_sleep" });
    const failed = await outcome(plain);
    assert.equal(failed.error?.meta?.driverAdapterError?.cause?.code, "57P01", "bare Prisma gets the 57P01");

    const { prisma, retries } = extended();
    const query = start(prisma.$queryRawUnsafe<{ answer: number }[]>(sql));
    const victim = await server.waitForStatement("pg_sleep");
    await server.terminate({ running: "pg_sleep" });
    const { value, error } = await outcome(query);
    assert.equal(error, undefined, String(error));
    assert.equal(value?.[0].answer, 42);
    assert.equal(retries.length, 1);
    assert.equal(retries[0].errorClass, "connection-lost");
    assert.ok(!(await server.appConnections()).some((c) => c.pid === victim.pid), "the first backend is gone");
  });

  test("a model read terminated mid-query (57P01) re-runs", async () => {
    const { prisma, retries } = extended();
    // The lock makes findMany wait in flight.
    const lock = new pg.Client({ connectionString: url });
    await lock.connect();
    try {
      await lock.query(`BEGIN; LOCK TABLE "User" IN ACCESS EXCLUSIVE MODE`);
      const query = start(prisma.user.findMany({ orderBy: { email: "asc" } }));
      await server.waitForStatement(`FROM "public"."User"`);
      await server.terminate({ running: `FROM "public"."User"` });
      await lock.query("COMMIT");
      const { value, error } = await outcome(query);
      assert.equal(error, undefined, String(error));
      assert.deepEqual(value?.map((u) => u.email), ["a@x", "b@x"]);
      assert.equal(retries.length, 1);
    } finally {
      await lock.end();
    }
  });

  test("an interactive transaction terminated between statements re-runs whole: exactly one row", async () => {
    const { prisma, retries } = extended();
    const key = "itx-between";
    let runs = 0;
    const { value, error } = await outcome(
      prisma.$transaction(async (tx) => {
        runs++;
        await tx.ledger.create({ data: { key } });
        if (runs === 1) await server.terminate("idle in transaction");
        await tx.user.count();
        return runs;
      }),
    );
    assert.equal(error, undefined, String(error));
    assert.equal(value, 2, "the second run's result came back");
    assert.equal(retries.length, 1);
    assert.equal(retries[0].operation, "$transaction");
    assert.equal(await rows(key), 1, "the first attempt's row was rolled back by the server, the second committed");
  });

  test("a deadlock: the loser re-runs, balances exact", async () => {
    const { prisma, retries } = extended();
    let arrived = 0;
    let release!: () => void;
    const both = new Promise<void>((r) => (release = r));
    let runs = 0;
    const transfer = (from: string, to: string, amount: number) =>
      prisma.$transaction(async (tx) => {
        const first = runs++ < 2;
        await tx.user.update({ where: { email: from }, data: { balance: { decrement: amount } } });
        if (first) {
          if (++arrived === 2) release();
          await Promise.race([both, sleep(5000)]);
        }
        await tx.user.update({ where: { email: to }, data: { balance: { increment: amount } } });
      });
    const results = await Promise.all([outcome(transfer("a@x", "b@x", 10)), outcome(transfer("b@x", "a@x", 5))]);
    assert.deepEqual(results.map((r) => r.error), [undefined, undefined]);
    assert.equal(runs, 3, "two first runs and one re-run of the loser");
    assert.equal(retries.length, 1);
    assert.equal(retries[0].errorClass, "conflict");
    assert.deepEqual(await balances(), { "a@x": 95, "b@x": 105 });
  });

  test("a serialization failure at a statement (REPEATABLE READ, 40001) re-runs", async () => {
    const { prisma, retries } = extended();
    let runs = 0;
    const { error } = await outcome(
      prisma.$transaction(
        async (tx) => {
          runs++;
          await tx.user.findUnique({ where: { email: "a@x" } });
          if (runs === 1) await server.admin(`UPDATE "User" SET balance = balance + 1 WHERE email = 'a@x'`);
          await tx.user.update({ where: { email: "a@x" }, data: { balance: { increment: 10 } } });
        },
        { isolationLevel: "RepeatableRead" },
      ),
    );
    assert.equal(error, undefined, String(error));
    assert.equal(runs, 2);
    assert.equal(retries[0]?.errorClass, "conflict");
    assert.equal((await balances())["a@x"], 111, "the other session's +1 and one +10");
  });

  test("a serialization failure at COMMIT (SERIALIZABLE write skew, a bare DriverAdapterError 40001) re-runs", async () => {
    const { prisma, retries } = extended();
    let runs = 0;
    let arrived = 0;
    let release!: () => void;
    const both = new Promise<void>((r) => (release = r));
    let wrote = 0;
    let wroteBoth!: () => void;
    const writes = new Promise<void>((r) => (wroteBoth = r));
    const skew = (email: string, delay: number) =>
      prisma.$transaction(
        async (tx) => {
          const first = runs++ < 2;
          await tx.$queryRawUnsafe(`SELECT sum(balance)::int AS s FROM "User"`);
          if (first && ++arrived === 2) release();
          if (first) await Promise.race([both, sleep(5000)]);
          await tx.$executeRawUnsafe(`UPDATE "User" SET balance = balance + 1 WHERE email = $1`, email);
          if (first && ++wrote === 2) wroteBoth();
          if (first) await Promise.race([writes, sleep(5000)]);
          await sleep(delay);
        },
        { isolationLevel: "Serializable" },
      );
    const results = await Promise.all([outcome(skew("a@x", 0)), outcome(skew("b@x", 100))]);
    assert.deepEqual(results.map((r) => r.error), [undefined, undefined]);
    assert.equal(runs, 3);
    assert.equal(retries.length, 1);
    assert.equal(retries[0].errorClass, "conflict");
    assert.equal((retries[0].error as any)?.name, "DriverAdapterError", "the failure came at COMMIT, outside Prisma's mapping");
    assert.deepEqual(await balances(), { "a@x": 101, "b@x": 101 });
  });

  test("a wrong password fails at once, not retried, no password in the message", async () => {
    const wrong = new URL(url);
    wrong.password = "not-the-password-42";
    const wrongUrl = wrong.toString();
    const pool = new pg.Pool({ connectionString: wrongUrl });
    let connects = 0;
    const connect = pool.connect.bind(pool);
    (pool as any).connect = (...args: any[]) => {
      connects++;
      return (connect as any)(...args);
    };
    const retries: RetryContext[] = [];
    const prisma = new PrismaClient({ adapter: new PrismaPg(pool) }).$extends(resilience({ onRetry: (c) => retries.push(c) }));
    open.push(prisma);
    const started = performance.now();
    const { error } = await outcome(prisma.user.count());
    const elapsed = performance.now() - started;
    await pool.end().catch(() => undefined);
    assert.equal(error?.code, "P1000");
    assert.equal(connects, 1, "one connection attempt");
    assert.equal(retries.length, 0);
    assert.ok(elapsed < 2000, `failed in ${elapsed.toFixed(0)} ms`);
    const text = `${error?.message}\n${JSON.stringify(error?.meta ?? {})}`;
    assert.ok(!text.includes("not-the-password-42") && !text.includes(server.password), "no password in the error");
  });

  test("an autocommit create terminated mid-statement is not re-run: OutcomeUnknownError, and the data shows it ran once", async () => {
    // Bare Prisma first: the server answers 57P01 and the row is not stored.
    const plainKey = "create-bare";
    const plain = start(bare().ledger.create({ data: { key: plainKey, note: "sleep" } }));
    await server.waitForStatement(`INSERT INTO "public"."Ledger"`);
    await server.terminate({ running: `INSERT INTO "public"."Ledger"` });
    const failed = await outcome(plain);
    assert.equal(failed.error?.meta?.driverAdapterError?.cause?.code, "57P01");
    assert.equal(await rows(plainKey), 0);

    // The extension: 57P01 may follow a COMMIT (src/postgres/classify.ts serverAnswered), and a
    // create outside a transaction commits by itself: outcome unknown, never a second INSERT.
    const { prisma, retries } = extended();
    const key = "create-ext";
    const create = start(prisma.ledger.create({ data: { key, note: "sleep" } }));
    await server.waitForStatement(`INSERT INTO "public"."Ledger"`);
    await server.terminate({ running: `INSERT INTO "public"."Ledger"` });
    const { error } = await outcome(create);
    assert.ok(isOutcomeUnknown(error), `typed OutcomeUnknownError, got ${error}`);
    assert.equal(error.inFlight, "unknown");
    assert.equal((error.cause as any)?.meta?.driverAdapterError?.cause?.code, "57P01", "the server's 57P01 is the cause");
    assert.equal(retries.length, 0, "not re-run");
    // No second INSERT is in flight or stored (a re-run would sleep 2 s in the trigger, then commit).
    await sleep(300);
    assert.ok(!(await server.appConnections()).some((c) => c.query.includes(`INSERT INTO "public"."Ledger"`) && c.state === "active"));
    assert.equal(await rows(key), 0, "the server rolled the terminated statement back; nothing re-ran");
  });
});
