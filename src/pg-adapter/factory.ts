// withResilience(new PrismaPg(…)): the wrapped factory for PostgreSQL. It carries what the
// extension reads (src/core/wrapped.ts: its dialect, recent faults, outages, the server's name)
// and builds one PgResilientAdapter per connect() (coordinator.ts). A factory built from a URL or a
// config gets bounded pool defaults (config.ts); an app-made pg.Pool keeps its settings (it only gets
// an 'acquire' listener that puts an 'error' listener on each client it hands out: pool-guard.ts).
import type { Dialect } from "../core/dialect.ts";
import { DB_SYSTEM, DIALECT, OUTAGE_AFTER, RECENT_FAULT, WRAPPED } from "../core/wrapped.ts";
import { pgDialect } from "../postgres/dialect.ts";
import { boundFactoryConfig } from "./config.ts";
import { PgResilientAdapter } from "./coordinator.ts";
import type { PgFactoryLike, PgResolvedOptions } from "./types.ts";

export class PgResilientFactory {
  readonly [WRAPPED] = true;
  readonly [DIALECT]: Dialect = pgDialect;
  private readonly live = new Set<PgResilientAdapter>();
  private readonly config?: Record<string, unknown>;

  constructor(
    private readonly inner: PgFactoryLike,
    private readonly options: PgResolvedOptions,
  ) {
    this.config = boundFactoryConfig(inner);
  }

  get provider() {
    return this.inner.provider;
  }
  get adapterName() {
    return this.inner.adapterName;
  }
  async connect() {
    const adapter = new PgResilientAdapter(this.inner, this.options, this.config, () => this.live.delete(adapter));
    this.live.add(adapter);
    try {
      return await adapter.start();
    } catch (error) {
      this.live.delete(adapter);
      await adapter.dispose().catch(() => undefined);
      throw error;
    }
  }
  /** adapter-pg's shadow database for `prisma migrate dev`: not wrapped. */
  connectToShadowDb() {
    return (this.inner as any).connectToShadowDb?.();
  }
  [RECENT_FAULT](): boolean {
    for (const adapter of this.live) if (adapter.recentFault()) return true;
    return false;
  }
  [OUTAGE_AFTER](lostAt: number): boolean {
    for (const adapter of this.live) if (adapter.outageAfter(lostAt)) return true;
    return false;
  }
  [DB_SYSTEM](): "postgresql" | undefined {
    return this.live.size > 0 ? "postgresql" : undefined;
  }
}

/** The wrapped factory for a PostgreSQL adapter factory (`factory.provider === "postgres"`). */
export function withPgResilience<F>(factory: F, options: PgResolvedOptions): F {
  return new PgResilientFactory(factory as unknown as PgFactoryLike, options) as unknown as F;
}
