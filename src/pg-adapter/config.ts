// The pool settings the wrapper bounds by default, on a PrismaPg factory built from a URL or a
// config (an app-made pg.Pool keeps its settings): pg-pool waits for a free client forever by default
// (connectionTimeoutMillis 0), and a TCP connection that died silently is never noticed without
// keepAlive. Also the connection settings for side connections and the URL shown in errors.
import { redact } from "../core/redact.ts";
import type { PgFactoryLike } from "./types.ts";

/** ms a caller waits for a pooled client (or a new connection) when the app did not say. */
export const DEFAULT_CONNECTION_TIMEOUT_MS = 5000;
/** ms of idle before TCP keepalive probes start when the app did not say. */
export const DEFAULT_KEEPALIVE_DELAY_MS = 10_000;

/** Sets the bounded defaults on the factory's own copy of its settings. Returns them (undefined: an app pool). */
export function boundFactoryConfig(factory: PgFactoryLike): Record<string, unknown> | undefined {
  if (factory.externalPool || typeof factory.config !== "object" || factory.config === null) return undefined;
  const given = factory.config;
  const bounded: Record<string, unknown> = { ...given };
  if (given.connectionTimeoutMillis === undefined || given.connectionTimeoutMillis === 0) bounded.connectionTimeoutMillis = DEFAULT_CONNECTION_TIMEOUT_MS;
  if (given.keepAlive === undefined) {
    bounded.keepAlive = true;
    if (given.keepAliveInitialDelayMillis === undefined) bounded.keepAliveInitialDelayMillis = DEFAULT_KEEPALIVE_DELAY_MS;
  }
  // A copy: the app's own object is not changed under it.
  factory.config = bounded;
  return bounded;
}

/** Settings for a side connection (probe, verification): the pool's, bounded by `timeoutMs`. */
export function sideSettings(config: Record<string, unknown>, timeoutMs: number): Record<string, unknown> {
  const { max, min, idleTimeoutMillis, maxUses, allowExitOnIdle, log, Client, ...rest } = config as Record<string, any>;
  return { ...rest, connectionTimeoutMillis: Math.max(1, Math.round(timeoutMs)), keepAlive: true, application_name: "prisma-extension-resilience" };
}

/** The connection string (or host/port/database) with any password as ****. */
export function redactedPgUrl(config: Record<string, unknown> | undefined): string {
  if (!config) return "postgresql://(app pool)";
  if (typeof config.connectionString === "string") return redact(config.connectionString);
  const user = typeof config.user === "string" ? `${encodeURIComponent(config.user)}${config.password !== undefined ? ":****" : ""}@` : "";
  return `postgresql://${user}${String(config.host ?? "localhost")}:${String(config.port ?? 5432)}/${String(config.database ?? "")}`;
}
