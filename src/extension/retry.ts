// The retry path: entered only after an attempt has failed, so a healthy app never runs it.
// It judges each failure (safe to re-run? committed maybe?), waits when the server is unavailable,
// and re-runs through p-retry within the retry count and the deadline.
import pRetry, { AbortError } from "p-retry";
import { classify, provesNotSent, unavailableReason, type ErrorClass } from "../errors/classify.ts";
import { DatabaseUnavailableError, OutcomeUnknownError } from "../errors/errors.ts";
import { flightOf, mayHaveCommitted } from "../adapter/flight.ts";
import { describeError, log } from "../log.ts";
import type { ResolvedOptions, RetryContext } from "./options.ts";

export interface Attempted {
  /** `create`, `$queryRaw`, `$transaction` ... */
  operation: string;
  model?: string;
  /** An operation outside transactions, or a whole `$transaction`. */
  scope: "operation" | "transaction";
  /** The work cannot change data (decided lazily: only failures ask). */
  readOnly: () => boolean;
  /** For an interactive transaction: the callback had returned, so the failure came at COMMIT. */
  committing?: () => boolean;
  /** `performance.now()` when the first attempt started. */
  startedAt: number;
}

type Verdict = { retry: true; errorClass: ErrorClass } | { retry: false; error: unknown };

/**
 * Decides whether a failed attempt may run again. The rule: only when the failure proves that no
 * write of it can have committed (DESIGN contract 2). A COMMIT, or a write outside a transaction,
 * that may have reached the server is reported as OutcomeUnknownError, never re-run.
 */
export function judge(error: unknown, what: Attempted, options: ResolvedOptions, attempts: number): Verdict {
  const errorClass = classify(error, { flavor: options.flavor });
  if (errorClass === "fatal") return { retry: false, error };
  const unknown = (inFlight: "commit" | "autocommit" | "unknown", statement?: string, threadId?: number) => ({
    retry: false as const,
    error: new OutcomeUnknownError(
      { inFlight, statement, operation: what.operation, model: what.model, attempts, threadId },
      { cause: error },
    ),
  });

  const record = flightOf(error);
  if (record) {
    if (mayHaveCommitted(record)) {
      return unknown(record.phase === "commit" ? "commit" : "autocommit", record.statement, record.threadId);
    }
    return { retry: true, errorClass };
  }

  // No record: the adapter is not wrapped with withResilience(), or the error did not come from it.
  // Re-run only what the error itself proves safe.
  if (provesNotSent(error)) return { retry: true, errorClass };
  if (what.committing) {
    // Interactive transaction: a failure inside the callback left nothing committed.
    return what.committing() ? unknown("commit", "COMMIT") : { retry: true, errorClass };
  }
  if (errorClass === "conflict") return { retry: true, errorClass }; // the server rolled it back
  if (what.readOnly()) return { retry: true, errorClass };
  return unknown("unknown");
}

/** Carries a retryable failure through p-retry, which only handles Error instances. */
class RetryableFailure extends Error {
  constructor(
    readonly original: unknown,
    readonly errorClass: ErrorClass,
    /** The pool handed out a connection that was already dead: nothing was sent on it. */
    readonly staleConnection: boolean,
    /** The server was unavailable and nothing was sent: waiting for it costs no retry, only time. */
    readonly outage: boolean,
    /** Already waited for the server (held back by withResilience while it was down): no backoff. */
    readonly heldBack: boolean,
  ) {
    super("retryable failure");
  }
}

// A connection that proves dead before anything was sent on it (EPIPE, "connection closed") is what
// a pre-ping would have caught: replacing it does not count as a retry. After a server restart the
// pool may hold several such connections; this bounds how many are replaced for one operation.
const MAX_STALE_REPLACEMENTS = 64;
// Attempts that failed because the server was unavailable and sent nothing are bounded by the
// deadline (and backoff), not by `retries`; this is only a backstop.
const MAX_OUTAGE_ATTEMPTS = 1000;

function backoffDelay(options: ResolvedOptions, waitsSoFar: number): number {
  const { minTimeout, maxTimeout, factor, randomize } = options.backoff;
  const base = Math.min(maxTimeout, minTimeout * factor ** waitsSoFar);
  return Math.round(randomize ? base * (1 + Math.random()) : base);
}

/**
 * Called with the first attempt's error; re-runs `attempt` while each failure is safe to re-run,
 * at most `options.retries` times (not counting dead pooled connections replaced before anything
 * was sent) and never past the deadline. Rejects with the last error, or an OutcomeUnknownError,
 * when it gives up.
 */
export async function retryAfterFailure<T>(
  firstError: unknown,
  attempt: () => Promise<T>,
  what: Attempted,
  options: ResolvedOptions,
): Promise<T> {
  let attempts = 0;
  let retriesUsed = 0;
  let staleReplaced = 0;
  let outageAttempts = 0;
  let waits = 0;
  let abortWith: { error: unknown } | undefined;
  const deadlineAt = what.startedAt + options.deadline;

  const run = async (): Promise<T> => {
    attempts++;
    let error: unknown;
    if (attempts === 1) {
      error = firstError;
    } else {
      try {
        return await attempt();
      } catch (e) {
        error = e;
      }
    }
    const verdict = judge(error, what, options, attempts);
    if (!verdict.retry) {
      abortWith = { error: verdict.error };
      throw new AbortError("not retryable");
    }
    const notSent = provesNotSent(error);
    throw new RetryableFailure(
      error,
      verdict.errorClass,
      verdict.errorClass === "connection-lost" && notSent,
      verdict.errorClass === "unavailable" && notSent,
      flightOf(error)?.heldBack === true,
    );
  };

  try {
    return await pRetry(run, {
      // p-retry runs the loop; the accounting below decides each retry.
      retries: options.retries + MAX_STALE_REPLACEMENTS + MAX_OUTAGE_ATTEMPTS,
      minTimeout: 0,
      factor: 1,
      randomize: false,
      maxRetryTime: Math.max(0, deadlineAt - performance.now()),
      shouldRetry: async ({ error }) => {
        const failure = error as RetryableFailure;
        const stale = failure.staleConnection && staleReplaced < MAX_STALE_REPLACEMENTS;
        const outage = failure.outage && outageAttempts < MAX_OUTAGE_ATTEMPTS;
        const free = options.retries > 0 && (stale || outage);
        if (!free && retriesUsed >= options.retries) return false;
        // A lost connection is retried at once (the pool hands out another); an unavailable server,
        // or a second failure in a row, is given time with backoff and jitter.
        const immediate = failure.heldBack || (free && stale) || (retriesUsed === 0 && failure.errorClass !== "unavailable");
        let delayMs = immediate ? 0 : backoffDelay(options, waits++);
        // Never wait past the deadline: a shortened wait still leaves one last attempt before it.
        const remaining = deadlineAt - performance.now();
        if (remaining < 20) return false;
        if (delayMs > remaining - 10) delayMs = Math.max(0, Math.floor(remaining - 10));
        if (free && stale) staleReplaced++;
        else if (free) outageAttempts++;
        else retriesUsed++;
        log(`retry ${what.model ? `${what.model}.` : ""}${what.operation} after ${failure.errorClass} (${describeError(failure.original)}), attempt ${attempts + 1}, wait ${delayMs} ms`);
        const context: RetryContext = Object.freeze({
          attempt: attempts,
          retriesLeft: options.retries - retriesUsed,
          error: failure.original,
          errorClass: failure.errorClass,
          operation: what.operation,
          model: what.model,
          delayMs,
          counted: !free,
        });
        try {
          options.onRetry?.(context);
        } catch {
          // a failing observer must not turn a recoverable fault into a failure
        }
        if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
        return true;
      },
    });
  } catch (error) {
    if (abortWith) throw abortWith.error;
    if (error instanceof RetryableFailure) {
      if (error.errorClass !== "unavailable") throw error.original;
      const waitedMs = Math.round(performance.now() - what.startedAt);
      log(`giving up on ${what.operation}: unavailable (${unavailableReason(error.original)}) after ${attempts} attempts, ${waitedMs} ms`);
      throw new DatabaseUnavailableError(
        { reason: unavailableReason(error.original), operation: what.operation, model: what.model, attempts, waitedMs },
        { cause: error.original },
      );
    }
    throw error;
  }
}
