// prisma-extension-resilience: survive lost MySQL/MariaDB connections without losing or
// duplicating a write. The public entry: everything a user imports comes from here.
export { resilience, type ResilientTransaction } from "./extension.ts";
export { withResilience, isResilientAdapter, type AdapterFactoryLike } from "./adapter.ts";
export { classify, provesNotSent, type ErrorClass, type ClassifyOptions } from "./classify.ts";
export { OutcomeUnknownError, isOutcomeUnknown, type OutcomeUnknownDetails } from "./errors.ts";
export { flightOf, mayHaveCommitted, type FlightRecord, type FlightPhase } from "./flight.ts";
export type { ResilienceOptions, RetryContext, BackoffOptions } from "./options.ts";
