// The marks a wrapped adapter factory carries (src/adapter/adapter.ts for MySQL/MariaDB,
// src/pg-adapter/factory.ts for PostgreSQL), read by the extension (src/extension/extension.ts).
// Symbol.for: two copies of this package in one app still read each other's.

/** On a factory or adapter made by withResilience(). */
export const WRAPPED = Symbol.for("prisma-extension-resilience.wrapped");
/** On the wrapped factory: did its adapter meet a fault lately (the extension asks after a P2028)? */
export const RECENT_FAULT = Symbol.for("prisma-extension-resilience.recentFault");
/** The factory's answer to "was the server found down just after a connection lost at time t?" */
export const OUTAGE_AFTER = Symbol.for("prisma-extension-resilience.outageAfter");
/** The factory's answer to "which server is this?" (for telemetry), once a connection told. */
export const DB_SYSTEM = Symbol.for("prisma-extension-resilience.dbSystem");
/** On the wrapped factory: the database's rules (src/core/dialect.ts) the extension judges by. */
export const DIALECT = Symbol.for("prisma-extension-resilience.dialect");
