// prisma-extension-resilience: survive lost MySQL/MariaDB connections without losing or
// duplicating a write. The public entry: everything a user imports comes from here.
export { resilience } from "./extension/extension.ts";
export { withResilience, isResilientAdapter, type AdapterFactoryLike } from "./adapter/adapter.ts";
export type { ResilientAdapterOptions, CommitVerification } from "./adapter/options.ts";
export type { StateChange, HealthState } from "./core/health.ts";
export { classify, provesNotSent, serverAnswered, unavailableReason, type ErrorClass, type ClassifyOptions } from "./mysql/classify.ts";
export { OutcomeUnknownError, isOutcomeUnknown, DatabaseUnavailableError, type OutcomeUnknownDetails, type UnavailableDetails } from "./core/errors.ts";
export { flightOf, mayHaveCommitted, type FlightRecord, type FlightPhase } from "./core/flight.ts";
export type { ResilienceOptions, RetryContext, BackoffOptions } from "./extension/options.ts";
export { ConnectFailedError, type ConnectFailure } from "./core/errors.ts";
export {
  reviewPool,
  readPoolSettings,
  DRIVER_DEFAULTS,
  type PoolReview,
  type PoolSettings,
  type SettingReview,
  type ServerTimeouts,
  type TuneOptions,
  type Verdict,
  type PoolInput,
} from "./tuning/pool.ts";
export { readServerTimeouts, tunePool, type ReadServerOptions, type PgPoolInput } from "./tuning/server.ts";
export {
  reviewPgPool,
  readPgPoolSettings,
  PG_POOL_DEFAULTS,
  type PgPoolReview,
  type PgPoolSettings,
  type PgSettingReview,
  type PgServerSettings,
  type PgTuneOptions,
} from "./tuning/pg-pool.ts";
export { readPgServerSettings, tunePgPool, type PgReadOptions } from "./tuning/pg-server.ts";
export { runDoctor, type DoctorOptions, type DoctorResult } from "./tuning/doctor.ts";
export { redact } from "./core/redact.ts";
