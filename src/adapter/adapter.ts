// withResilience(): wraps a Prisma driver adapter factory (e.g. `new PrismaMariaDb(url)`) so that
// every failed call says what had reached the server (see src/core/flight.ts). It delegates everything and
// adds no work to a call that succeeds: one state check and one `.catch` per call. What watches the
// connections (the silent-drop watchdog) is one interval per adapter that scans the pool's
// connections, never a timer per call.
import type { Dialect } from "../core/dialect.ts";
import { mysqlDialect } from "../mysql/dialect.ts";
import { withPgResilience } from "../pg-adapter/factory.ts";
import { resolveAdapterOptions, type ResilientAdapterOptions, type ResolvedAdapterOptions } from "./options.ts";
import { ResilientAdapter } from "./coordinator.ts";
import { DB_SYSTEM, DIALECT, OUTAGE_AFTER, RECENT_FAULT, WRAPPED } from "../core/wrapped.ts";
import type { Flavor } from "./side.ts";
import type { AdapterFactoryLike } from "../core/driver-adapter.ts";

export type { AdapterFactoryLike } from "../core/driver-adapter.ts";

export { RECENT_FAULT, OUTAGE_AFTER, DB_SYSTEM, DIALECT } from "../core/wrapped.ts";

/** True when the factory (or adapter) was made by withResilience(). */
export function isResilientAdapter(value: unknown): boolean {
  return typeof value === "object" && value !== null && (value as any)[WRAPPED] === true;
}
class ResilientAdapterFactory implements AdapterFactoryLike {
  readonly [WRAPPED] = true;
  readonly [DIALECT]: Dialect = mysqlDialect;
  /** Adapters connected and not yet disposed (Prisma makes a new one after $disconnect(); clients may share a factory). */
  private readonly live = new Set<ResilientAdapter>();

  constructor(
    private readonly inner: AdapterFactoryLike,
    private readonly options: ResolvedAdapterOptions,
  ) {}

  get provider() {
    return this.inner.provider;
  }
  get adapterName() {
    return this.inner.adapterName;
  }
  async connect() {
    const adapter = new ResilientAdapter(this.inner, this.options, () => this.live.delete(adapter));
    this.live.add(adapter);
    try {
      return await adapter.start();
    } catch (error) {
      this.live.delete(adapter);
      await adapter.dispose().catch(() => undefined);
      throw error;
    }
  }
  [RECENT_FAULT](): boolean {
    for (const adapter of this.live) if (adapter.recentFault()) return true;
    return false;
  }
  [OUTAGE_AFTER](lostAt: number): boolean {
    for (const adapter of this.live) if (adapter.outageAfter(lostAt)) return true;
    return false;
  }
  [DB_SYSTEM](): Flavor | undefined {
    for (const adapter of this.live) if (adapter.flavor) return adapter.flavor;
    return undefined;
  }
}

/**
 * Wraps a driver adapter factory so that each failure records what had reached the server:
 * nothing, a statement of an open transaction, the COMMIT, or an autocommit statement. The
 * `resilience()` extension reads that record to re-run only what cannot have committed. It also
 * makes a rollback on a connection that is already dead resolve instead of throwing.
 *
 * ```ts
 * const adapter = withResilience(new PrismaMariaDb(process.env.DATABASE_URL!));
 * const prisma = new PrismaClient({ adapter }).$extends(resilience());
 * ```
 */
export function withResilience<F extends AdapterFactoryLike>(factory: F, options?: ResilientAdapterOptions): F {
  if (typeof factory !== "object" || factory === null || typeof (factory as any).connect !== "function") {
    throw new TypeError(
      "withResilience() expects a Prisma driver adapter factory, e.g. withResilience(new PrismaMariaDb(url))",
    );
  }
  const resolved = resolveAdapterOptions(options);
  if (isResilientAdapter(factory)) return factory;
  // PostgreSQL (@prisma/adapter-pg): its own wrapper, same contract (src/pg-adapter/).
  if (factory.provider === "postgres") return withPgResilience(factory, resolved);
  return new ResilientAdapterFactory(factory, resolved) as unknown as F;
}
