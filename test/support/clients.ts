// Prisma clients for tests: bare Prisma 7, or with the extension (with or without the adapter
// wrapper), all on the generated client of prisma/schema.prisma.
import { PrismaMariaDb } from "@prisma/adapter-mariadb";
import { PrismaClient } from "../../generated/prisma/client.ts";
import { within } from "./bounded.ts";
import { resilience, withResilience, type ResilienceOptions, type ResilientAdapterOptions, type RetryContext } from "../../src/index.ts";

export type Bare = PrismaClient;

export function bareClient(url: string) {
  return new PrismaClient({ adapter: new PrismaMariaDb(url) });
}

export interface ResilientHandle {
  prisma: ReturnType<typeof build>;
  retries: RetryContext[];
  /** The adapter factory given to Prisma (withResilience's, unless `wrap: false`). */
  adapter: unknown;
}

function build(adapter: PrismaMariaDb, options: ResilienceOptions, retries: RetryContext[]) {
  const onRetry = options.onRetry;
  return new PrismaClient({ adapter }).$extends(
    resilience({
      ...options,
      onRetry: (ctx) => {
        retries.push(ctx);
        onRetry?.(ctx);
      },
    }),
  );
}

/** A client with `resilience()`; every retry's context is collected in `retries`. */
export function resilientClient(
  url: string,
  options: ResilienceOptions & { wrap?: boolean; adapter?: ResilientAdapterOptions } = {},
): ResilientHandle {
  const { wrap = true, adapter: adapterOptions, ...rest } = options;
  const retries: RetryContext[] = [];
  const adapter = wrap ? withResilience(new PrismaMariaDb(url), adapterOptions) : new PrismaMariaDb(url);
  return { prisma: build(adapter, rest, retries), retries, adapter };
}

/** Adds connection-pool options to a URL (mariadb driver query parameters). */
export function withParams(url: string, params: Record<string, string | number | boolean>): string {
  const u = new URL(url);
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, String(v));
  return u.toString();
}

/**
 * The clients one test file makes, each with `defaults` (e.g. a short deadline: a broken re-run
 * fails a test in seconds), all disconnected by `disconnectAll()` (in an afterEach).
 */
export function trackedClients(defaults: Parameters<typeof resilientClient>[1] = {}) {
  const handles: ResilientHandle[] = [];
  return {
    client(url: string, options: Parameters<typeof resilientClient>[1] = {}): ResilientHandle {
      const h = resilientClient(url, { ...defaults, ...options });
      handles.push(h);
      return h;
    },
    /** Every client disconnected, each bounded (15 s): a hung $disconnect fails the hook, never hangs it. */
    async disconnectAll() {
      const all = handles.splice(0).map((h) => within(h.prisma.$disconnect().catch(() => undefined), 15_000, "$disconnect()"));
      const failed = (await Promise.allSettled(all)).find((r) => r.status === "rejected");
      if (failed) throw (failed as PromiseRejectedResult).reason;
    },
  };
}

/** The server's error number behind a Prisma or driver error, at any depth (or in its message). */
export function errnoOf(error: unknown): number | undefined {
  let e: any = error;
  for (let i = 0; i < 6 && e; i++) {
    const d = e.meta?.driverAdapterError?.cause ?? e.meta?.driverAdapterError;
    if (typeof d?.code === "number") return d.code;
    if (typeof d?.originalCode === "string" && /^\d+$/.test(d.originalCode)) return Number(d.originalCode);
    if (typeof e.errno === "number") return e.errno;
    if (typeof e.code === "number") return e.code;
    e = e.cause;
  }
  const m = /\b(1047|1180|1205|1213|1290|1792|1836)\b/.exec(String((error as any)?.message ?? ""));
  return m ? Number(m[1]) : undefined;
}
