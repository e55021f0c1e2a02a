// Prisma clients for tests: bare Prisma 7, or with the extension (with or without the adapter
// wrapper), all on the generated client of prisma/schema.prisma.
import { PrismaMariaDb } from "@prisma/adapter-mariadb";
import { PrismaClient } from "../../generated/prisma/client.ts";
import { resilience, withResilience, type ResilienceOptions, type ResilientAdapterOptions, type RetryContext } from "../../src/index.ts";

export type Bare = PrismaClient;

export function bareClient(url: string) {
  return new PrismaClient({ adapter: new PrismaMariaDb(url) });
}

export interface ResilientHandle {
  prisma: ReturnType<typeof build>;
  retries: RetryContext[];
}

function build(url: string, wrap: boolean, options: ResilienceOptions, retries: RetryContext[], adapterOptions?: ResilientAdapterOptions) {
  const adapter = wrap ? withResilience(new PrismaMariaDb(url), adapterOptions) : new PrismaMariaDb(url);
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
  const { wrap = true, adapter, ...rest } = options;
  const retries: RetryContext[] = [];
  return { prisma: build(url, wrap, rest, retries, adapter), retries };
}

/** Adds connection-pool options to a URL (mariadb driver query parameters). */
export function withParams(url: string, params: Record<string, string | number | boolean>): string {
  const u = new URL(url);
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, String(v));
  return u.toString();
}
