// The chaos workload's PostgreSQL (chaos-db.ts): Prisma on @prisma/adapter-pg, backends ended with
// pg_terminate_backend (57P01, as a DBA, a pooler or a serverless provider ends them),
// idle_session_timeout as the idle limit, and a crash of the whole server (kill -9 of every process).
import { PrismaPg } from "@prisma/adapter-pg";
import pg from "pg";
import { PrismaClient } from "../../generated/postgres/client.ts";
import { resilience, withResilience } from "../../src/index.ts";
import { pgDialect } from "../../src/postgres/dialect.ts";
import type { ChaosDb } from "./chaos-db.ts";
import type { PostgresServer } from "./postgres.ts";

export function postgresChaosDb(db: PostgresServer): ChaosDb {
  const adapterOf = () => new PrismaPg({ connectionString: db.url });
  // Without the wrapper, a pool whose clients always have an 'error' listener (docs/postgres.md,
  // caveats): adapter-pg alone lets a crash's FATAL at a hand-over be thrown uncaught. The soak
  // disconnects once, at its end, so adapter-pg may end the pool then (disposeExternalPool).
  const listeningAdapter = () => {
    const pool = new pg.Pool({ connectionString: db.url });
    pool.on("connect", (client) => client.on("error", () => undefined));
    return new PrismaPg(pool, { disposeExternalPool: true });
  };
  return {
    kind: "postgres",
    embedded: true,
    client(mode, { wrap, adapter, urlParams: _ignored, ...options }) {
      if (mode === "bare") return new PrismaClient({ adapter: adapterOf() });
      const factory = wrap ? withResilience(adapterOf(), adapter) : listeningAdapter();
      return new PrismaClient({ adapter: factory }).$extends(resilience(options));
    },
    classify: (error) => pgDialect.classify(error),
    async setIdleTimeout(seconds) {
      const rows = await db.admin<any[]>("SELECT setting FROM pg_settings WHERE name = 'idle_session_timeout'");
      await db.setSystem("idle_session_timeout", `${Math.round(seconds * 1000)}`);
      return Number(rows[0]?.setting ?? 0) / 1000;
    },
    async victims() {
      return (await db.appConnections()).map((c) => c.pid);
    },
    async kill(pid) {
      await db.admin("SELECT pg_terminate_backend($1)", [pid]);
    },
    kill9: () => db.kill9(),
    start: () => db.start(),
    rawRead: (prisma, pattern) => prisma.$queryRaw`SELECT COUNT(*) AS n FROM "Ledger" WHERE "key" LIKE ${pattern}`,
    rawInsert: (prisma, key) => prisma.$executeRaw`INSERT INTO "Ledger" ("key", amount) VALUES (${key}, 1)`,
    async insertHot(emails) {
      for (const email of emails) await db.admin(`INSERT INTO "User" (email, balance) VALUES ($1, 0)`, [email]);
    },
    async ledgerCounts(prefix) {
      const rows = await db.admin<any[]>(`SELECT "key", COUNT(*) AS n FROM "Ledger" WHERE "key" LIKE $1 GROUP BY "key"`, [`${prefix}-%`]);
      return new Map(rows.map((r) => [r.key as string, Number(r.n)]));
    },
    async hotBalances(emails) {
      const rows = await db.admin<any[]>(`SELECT email, balance FROM "User" WHERE email = ANY($1)`, [emails]);
      return new Map(rows.map((r) => [r.email as string, Number(r.balance)]));
    },
  };
}
