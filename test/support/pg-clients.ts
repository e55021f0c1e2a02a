// Prisma clients on PostgreSQL for tests (generated/postgres), wrapped with withResilience() and
// extended with resilience(); every retry's context is collected. Data checks on the Ledger table.
import { PrismaPg } from "@prisma/adapter-pg";
import { PrismaClient } from "../../generated/postgres/client.ts";
import { resilience, withResilience, type ResilienceOptions, type ResilientAdapterOptions, type RetryContext } from "../../src/index.ts";
import type { PostgresServer } from "./postgres.ts";

/** `url`: a connection string, or a PrismaPg config (pg.PoolConfig). */
export function pgClient(url: string | Record<string, unknown>, options: ResilienceOptions & { adapter?: ResilientAdapterOptions; bare?: boolean } = {}) {
  const { adapter: adapterOptions, bare, ...rest } = options;
  const retries: RetryContext[] = [];
  const adapter = bare ? new PrismaPg(url as any) : withResilience(new PrismaPg(url as any), adapterOptions);
  const prisma = new PrismaClient({ adapter }).$extends(resilience({ ...rest, onRetry: (ctx) => void retries.push(ctx) }));
  return { prisma, retries, adapter };
}

export async function ledgerRows(server: PostgresServer, key: string): Promise<number> {
  const rows = await server.admin<Array<{ n: number }>>('SELECT count(*)::int AS n FROM "Ledger" WHERE key = $1', [key]);
  return rows[0]!.n;
}

let seq = 0;
export function uniqueKey(prefix: string): string {
  return `${prefix}-${process.pid}-${++seq}-${Date.now() % 100000}`;
}

export { within } from "./bounded.ts";
