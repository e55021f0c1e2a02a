// Records what bare Prisma 7 + @prisma/adapter-pg throw for each fault of /work/shared/postgres.md
// (the source of test/fixtures/pg-error-shapes.ts): `node --import tsx test/support/record-pg-shapes.ts out.json`.
// Not a test: re-run it when Prisma, adapter-pg, pg or PostgreSQL move, and compare.
import { writeFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { PrismaPg } from "@prisma/adapter-pg";
import { PrismaClient } from "../../generated/postgres/client.ts";
import { startPostgres } from "./postgres.ts";

function snap(e: any, depth = 0): any {
  if (depth > 5 || e === null || typeof e !== "object") return e;
  const out: any = {};
  for (const k of Object.getOwnPropertyNames(e)) {
    if (k === "stack") continue;
    const v = e[k];
    if (typeof v === "function") continue;
    out[k] = typeof v === "object" ? snap(v, depth + 1) : v;
  }
  if (e.name && !("name" in out)) out.name = e.name;
  if (e.constructor?.name && e.constructor.name !== "Object") out.__class = e.constructor.name;
  return out;
}

const server = await startPostgres();
const url = server.url;
const shapes: Record<string, any> = {};
const record = async (name: string, run: () => Promise<unknown>) => {
  try {
    await run();
    shapes[name] = { none: true };
    console.log(name, "-> no error");
  } catch (e: any) {
    shapes[name] = snap(e);
    console.log(name, "->", e?.name, e?.code, String(e?.message).split("\n").slice(-1)[0]);
  }
};
const client = (opts: Record<string, unknown> = {}) => new PrismaClient({ adapter: new PrismaPg({ connectionString: url, ...opts }) });

await server.admin(`CREATE OR REPLACE FUNCTION ledger_sleep() RETURNS trigger AS $$ BEGIN IF NEW.note = 'sleep' THEN PERFORM pg_sleep(5); END IF; RETURN NEW; END $$ LANGUAGE plpgsql`);
await server.admin(`CREATE TRIGGER ledger_sleep BEFORE INSERT ON "Ledger" FOR EACH ROW EXECUTE FUNCTION ledger_sleep()`);

try {
  const p = client();
  await p.user.count();
  // idle terminated, query at once
  const race = async (name: string, run: () => Promise<unknown>) => {
    for (let i = 0; i < 20; i++) {
      await Promise.all([p.user.count(), p.user.count(), p.user.count()]).catch(() => undefined);
      const kill = server.admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'app'");
      await sleep(i % 4);
      await record(name, run);
      await kill;
      if (!shapes[name].none) return;
    }
  };
  await race("idle-terminated-model", () => p.user.findMany());
  await race("idle-terminated-raw", () => p.$queryRawUnsafe("SELECT 1"));
  await sleep(300);
  await Promise.all([p.user.count(), p.user.count()]).catch(() => undefined);
  // terminated during a raw query
  await record("query-terminated-raw", async () => {
    const q = p.$queryRawUnsafe("SELECT pg_sleep(5)::text").then((r) => r);
    q.catch(() => undefined);
    await server.waitForStatement("pg_sleep");
    await server.terminate({ running: "pg_sleep" });
    await q;
  });
  // terminated during a create (trigger sleeps)
  await record("create-terminated-model", async () => {
    const q = p.ledger.create({ data: { key: "k1", note: "sleep" } }).then((r) => r);
    q.catch(() => undefined);
    await server.waitForStatement("INSERT");
    await server.terminate({ running: "INSERT" });
    await q;
  });
  shapes["create-terminated-model-rows"] = await server.admin(`SELECT count(*)::int AS n FROM "Ledger" WHERE key = 'k1'`);
  // interactive transaction terminated between statements
  await record("itx-terminated-between", () =>
    p.$transaction(async (tx) => {
      await tx.ledger.create({ data: { key: "k2" } });
      await server.terminate("idle in transaction");
      await tx.ledger.create({ data: { key: "k2b" } });
    }),
  );
  // batch transaction terminated mid-statement
  await record("batch-terminated", async () => {
    const q = p.$transaction([p.ledger.create({ data: { key: "k3" } }), p.$queryRawUnsafe("SELECT pg_sleep(5)::text")]);
    q.catch(() => undefined);
    await server.waitForStatement("pg_sleep");
    await server.terminate({ running: "pg_sleep" });
    await q;
  });
  // interactive transaction: terminated during its statement
  await record("itx-terminated-during", () =>
    p.$transaction(async (tx) => {
      const q = tx.$queryRawUnsafe("SELECT pg_sleep(5)::text").then((r) => r);
    q.catch(() => undefined);
      await server.waitForStatement("pg_sleep");
      await server.terminate({ running: "pg_sleep" });
      await q;
    }),
  );
  // deadlock
  await p.user.createMany({ data: [{ email: "a@x", balance: 100 }, { email: "b@x", balance: 100 }] });
  await record("deadlock", async () => {
    let release!: () => void;
    const both = new Promise<void>((r) => (release = r));
    let n = 0;
    const arrive = () => (++n === 2 ? release() : undefined);
    const t = (first: string, second: string) =>
      p.$transaction(async (tx) => {
        await tx.user.update({ where: { email: first }, data: { balance: { decrement: 1 } } });
        arrive();
        await both;
        await tx.user.update({ where: { email: second }, data: { balance: { increment: 1 } } });
      });
    const r = await Promise.allSettled([t("a@x", "b@x"), t("b@x", "a@x")]);
    const failed = r.find((x) => x.status === "rejected") as PromiseRejectedResult | undefined;
    if (failed) throw failed.reason;
  });
  // serialization failure at a statement
  await record("serialization-statement", async () => {
    await p.$transaction(async (tx) => {
      await tx.user.findUnique({ where: { email: "a@x" } });
      await server.admin(`UPDATE "User" SET balance = balance + 1 WHERE email = 'a@x'`);
      await tx.user.update({ where: { email: "a@x" }, data: { balance: { increment: 1 } } });
    }, { isolationLevel: "RepeatableRead" });
  });
  // serialization failure at COMMIT: two SERIALIZABLE transactions with write skew; both write, the
  // first commits, the second fails at COMMIT (tried until the failure comes at COMMIT).
  for (let i = 0; i < 20 && !(shapes["serialization-commit"]?.name === "DriverAdapterError"); i++) {
    await record("serialization-commit", async () => {
      let go!: () => void;
      const both = new Promise<void>((r) => (go = r));
      let n = 0;
      let wrote = 0;
      let done!: () => void;
      const writes = new Promise<void>((r) => (done = r));
      const t = (read: string, write: string, delay: number) =>
        p.$transaction(async (tx) => {
          await tx.$queryRawUnsafe(`SELECT sum(balance)::int AS s FROM "User"`);
          if (++n === 2) go();
          await both;
          await tx.$executeRawUnsafe(`UPDATE "User" SET name = 'x' WHERE email = '${write}'`);
          if (++wrote === 2) done();
          await writes;
          await sleep(delay);
        }, { isolationLevel: "Serializable" });
      const r = await Promise.allSettled([t("a@x", "a@x", 0), t("b@x", "b@x", 50)]);
      const failed = r.find((x) => x.status === "rejected") as PromiseRejectedResult | undefined;
      if (failed) throw failed.reason;
    });
  }
  // statement_timeout
  await record("statement-timeout", () =>
    p.$transaction(async (tx) => {
      await tx.$executeRawUnsafe("SET LOCAL statement_timeout = 100");
      await tx.$queryRawUnsafe("SELECT pg_sleep(2)::text");
    }),
  );
  // idle_in_transaction_session_timeout
  await server.setSystem("idle_in_transaction_session_timeout", "300ms");
  const p2 = client();
  await record("idle-in-transaction-timeout", () =>
    p2.$transaction(async (tx) => {
      await tx.ledger.create({ data: { key: "k4" } });
      await sleep(800);
      await tx.ledger.create({ data: { key: "k4b" } });
    }),
  );
  await server.setSystem("idle_in_transaction_session_timeout", "0");
  await p2.$disconnect();
  // idle_session_timeout: query right as it fires
  await server.setSystem("idle_session_timeout", "300ms");
  const p3 = client();
  await p3.user.count();
  await sleep(290);
  await record("idle-session-timeout-race", () => p3.user.count());
  await server.setSystem("idle_session_timeout", "0");
  await p3.$disconnect();
  // pool wait timeout
  const p4 = client({ max: 1, connectionTimeoutMillis: 200 });
  await record("pool-wait-timeout", async () => {
    const hold = p4.$transaction(async (tx) => { await tx.$queryRawUnsafe("SELECT pg_sleep(0.6)::text"); }, { timeout: 5000, maxWait: 5000 });
    await sleep(100);
    try {
      await p4.user.count();
    } finally {
      await hold;
    }
  });
  await p4.$disconnect();
  // too many connections for role
  await server.admin(`ALTER ROLE app CONNECTION LIMIT 1`);
  const p5 = client();
  await record("too-many-connections", async () => {
    await Promise.all([p5.$queryRawUnsafe("SELECT pg_sleep(0.3)::text"), p5.$queryRawUnsafe("SELECT pg_sleep(0.3)::text")]);
  });
  await p5.$disconnect();
  await server.admin(`ALTER ROLE app CONNECTION LIMIT -1`);
  // wrong password, unknown database
  const bad = new URL(url);
  bad.password = "wrong";
  const p6 = new PrismaClient({ adapter: new PrismaPg({ connectionString: bad.toString() }) });
  await record("wrong-password", () => p6.user.count());
  await p6.$disconnect();
  const nodb = new URL(url);
  nodb.pathname = "/nosuchdb";
  const p7 = new PrismaClient({ adapter: new PrismaPg({ connectionString: nodb.toString() }) });
  await record("unknown-database", () => p7.user.count());
  await p7.$disconnect();
  // server stopped (immediate): pooled connection, then refused
  await p.user.count();
  await server.stopImmediate();
  await record("stopped-pooled", () => p.user.count());
  await record("stopped-refused-model", () => p.user.count());
  await record("stopped-refused-raw", () => p.$queryRawUnsafe("SELECT 1"));
  await record("stopped-refused-itx", () => p.$transaction(async (tx) => tx.user.count()));
  // starting up: query in a loop while the server starts
  let starting: any;
  let stop = false;
  const hammer = (async () => {
    while (!stop) {
      try {
        await p.user.count();
      } catch (e: any) {
        const c = e?.meta?.driverAdapterError?.cause?.originalCode;
        if (c === "57P03" && !starting) starting = snap(e);
      }
      await sleep(1);
    }
  })();
  await server.start();
  await sleep(200);
  stop = true;
  await hammer;
  shapes["starting-up"] = starting ?? { none: true };
  console.log("starting-up", starting ? "captured" : "not hit");
  await p.$disconnect();
} finally {
  writeFileSync(process.argv[2] ?? "pg-shapes.json", JSON.stringify(shapes, null, 2));
  await server.stop();
}
