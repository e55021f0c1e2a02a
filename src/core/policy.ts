// What the retry loop is told: the caller's policy (retries, deadline, backoff, the observer) and
// what it tells the observer before each re-run. resilience()'s options resolve to this (see
// src/extension/options.ts); the loop itself is src/core/retry.ts.
import type { ErrorClass } from "./facts.ts";
import type { DbSystem } from "./telemetry.ts";

export interface RetryContext {
  /** The attempt that just failed (1 for the first). */
  readonly attempt: number;
  /** How many more attempts may still be made after the one about to start. */
  readonly retriesLeft: number;
  readonly error: unknown;
  readonly errorClass: ErrorClass;
  /** `create`, `findMany`, `$queryRaw`, `$transaction` ... */
  readonly operation: string;
  readonly model?: string;
  /** Milliseconds the next attempt waits before it starts (0 after a lost connection). */
  readonly delayMs: number;
  /**
   * false when the re-run does not use up `retries`: nothing of the attempt ran (a dead pooled
   * connection, a connection lost at BEGIN), the server was down or unavailable, or a conflict.
   */
  readonly counted: boolean;
}

export interface BackoffOptions {
  /** First wait before retrying an unavailable server, in ms. Default 100. */
  minTimeout?: number;
  /** Longest single wait, in ms. Default 2000. */
  maxTimeout?: number;
  /** Growth of the wait from one attempt to the next. Default 2. */
  factor?: number;
  /** Multiply each wait by a random factor between 1 and 2 (jitter; conflicts: between 0 and 1). Default true. */
  randomize?: boolean;
}

export interface RetryPolicy {
  retries: number;
  deadline: number;
  backoff: Required<BackoffOptions>;
  onRetry?: (context: RetryContext) => void;
  /** The server's flavour when the app named it: the dialect's classifier may use it. */
  flavor?: DbSystem;
}
