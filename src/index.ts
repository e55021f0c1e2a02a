// prisma-extension-resilience: survive lost MySQL/MariaDB connections without losing or
// duplicating a write. The public entry: everything a user imports comes from here.
export { resilience } from "./extension.ts";
export { withResilience, isResilientAdapter, type AdapterFactoryLike, type ResilientAdapterOptions } from "./adapter.ts";
export type { StateChange, HealthState } from "./health.ts";
export { classify, provesNotSent, unavailableReason, type ErrorClass, type ClassifyOptions } from "./classify.ts";
export { OutcomeUnknownError, isOutcomeUnknown, DatabaseUnavailableError, type OutcomeUnknownDetails, type UnavailableDetails } from "./errors.ts";
export { flightOf, mayHaveCommitted, type FlightRecord, type FlightPhase } from "./flight.ts";
export type { ResilienceOptions, RetryContext, BackoffOptions } from "./options.ts";
export { ConnectFailedError, type ConnectFailure } from "./errors.ts";
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
} from "./pool.ts";
export { readServerTimeouts, tunePool, type ReadServerOptions } from "./server.ts";
export { runDoctor, type DoctorOptions, type DoctorResult } from "./doctor.ts";
export { redact } from "./url.ts";
