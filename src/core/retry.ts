// The retry path: entered only after an attempt has failed, so a healthy app never runs it.
// It asks the safety rule about each failure (safety.ts: safe to re-run? committed maybe?), pays
// for each re-run from a budget, waits, and re-runs through p-retry within the deadline.
import pRetry, { AbortError } from "p-retry";
import type { Dialect } from "./dialect.ts";
import { DatabaseUnavailableError } from "./errors.ts";
import type { ErrorClass } from "./facts.ts";
import { flightOf } from "./flight.ts";
import { describeError, log } from "./log.ts";
import type { RetryContext, RetryPolicy } from "./policy.ts";
import { judge, type Attempted } from "./safety.ts";
import { recordGiveUp, recordRetry } from "./telemetry.ts";

export { judge, type Attempted } from "./safety.ts";

/**
 * How a retryable failure is paid for: `stale` (a pooled connection that was already dead, nothing
 * sent: what a pre-ping would have caught), `outage` (the server unavailable, nothing sent) and
 * `conflict` (the server rolled it back) cost time, not `retries`; `counted` uses up one of them.
 */
type Budget = "stale" | "outage" | "conflict" | "counted";

/** Carries a retryable failure through p-retry, which only handles Error instances. */
class RetryableFailure extends Error {
  constructor(
    readonly original: unknown,
    readonly errorClass: ErrorClass,
    readonly budget: Budget,
    /** Already waited for the server (held back by withResilience while it was down): no backoff. */
    readonly heldBack: boolean,
  ) {
    super("retryable failure");
  }
}

function budgetOf(dialect: Dialect, error: unknown, errorClass: ErrorClass, scope: Attempted["scope"], duringFault: () => boolean, entered?: () => boolean): Budget {
  if (errorClass === "conflict") return "conflict";
  const notSent = dialect.provesNotSent(error);
  if (errorClass === "connection-lost") {
    // Nothing of the operation ran: a dead pooled connection found before anything was sent (the
    // pre-ping case: a BEGIN, or a statement outside a transaction), or a connection lost while the
    // transaction was being opened (BEGIN sent or not, no statement of it has run). A transaction
    // with statements behind it counts.
    const phase = flightOf(error)?.phase;
    // (A "begin" record from inside an entered callback is another transaction's: the outer client.)
    if ((phase === "begin" && entered?.() !== true) || (phase === undefined && entered?.() === false)) return "stale";
    if (notSent && (phase === "autocommit" || (phase === undefined && scope === "operation"))) return "stale";
    // Lost because the server went down (a restart): the outage's time, not a retry of one's own.
    return flightOf(error)?.duringOutage ? "outage" : "counted";
  }
  // Prisma's maxWait ran out (P2028), nothing sent. Without a fault around it the app's own pool is
  // saturated: a free retry would only add load, so it uses up `retries`. During a fault (this call
  // lost its connection, or the adapter met one lately) it is that fault's wait: a Galera cluster
  // holds every BEGIN until it has evicted a dead node, a pool refills after an outage.
  if (dialect.isTransactionStartTimeout(error) && flightOf(error)?.heldBack !== true) return duringFault() ? "outage" : "counted";
  return notSent || dialect.serverAnswered(error) ? "outage" : "counted";
}

// Backstops of the free budgets: the deadline is what bounds them.
const MAX_FREE: Record<Exclude<Budget, "counted">, number> = { stale: 64, outage: 1000, conflict: 1000 };

function backoffDelay(options: RetryPolicy, waitsSoFar: number): number {
  const { minTimeout, maxTimeout, factor, randomize } = options.backoff;
  const base = Math.min(maxTimeout, minTimeout * factor ** waitsSoFar);
  return Math.round(randomize ? base * (1 + Math.random()) : base);
}

/** Conflicts: "full jitter" (a random wait up to the backoff), so that contenders spread out. */
function conflictDelay(options: RetryPolicy, conflictsSoFar: number): number {
  const { minTimeout, maxTimeout, factor, randomize } = options.backoff;
  const base = Math.min(maxTimeout, minTimeout * factor ** conflictsSoFar);
  return Math.round(randomize ? base * Math.random() : base);
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
  options: RetryPolicy,
): Promise<T> {
  const { dialect } = what;
  let attempts = 0;
  let retriesUsed = 0;
  const freeUsed: Record<Exclude<Budget, "counted">, number> = { stale: 0, outage: 0, conflict: 0 };
  let waits = 0;
  let abortWith: { error: unknown } | undefined;
  const deadlineAt = what.startedAt + options.deadline;
  // An earlier attempt of this call lost its connection or found the server unavailable.
  let faultSeen = false;
  // When each counted lost connection happened: one found afterwards to be the server's outage is
  // given back (the probe at the moment of the loss can beat a dying server's port closing).
  const countedLosses: number[] = [];
  const duringFault = () => faultSeen || what.recentFault?.() === true;

  // Out of retries: a counted loss that the server's outage explains now costs time, not a retry.
  const refundOutageLoss = (): boolean => {
    if (options.retries === 0 || freeUsed.outage >= MAX_FREE.outage) return false;
    const i = countedLosses.findIndex((lostAt) => what.outageAfter?.(lostAt) === true);
    if (i < 0) return false;
    countedLosses.splice(i, 1);
    retriesUsed--;
    freeUsed.outage++;
    return true;
  };

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
    let verdict = judge(error, what, options, attempts);
    // A re-run after $disconnect() would open a fresh pool the app has let go of.
    if (verdict.retry && what.stopped?.()) verdict = { retry: false, error };
    if (!verdict.retry) {
      abortWith = { error: verdict.error };
      throw new AbortError("not retryable");
    }
    const budget = budgetOf(dialect, error, verdict.errorClass, what.scope, duringFault, what.entered);
    if (budget === "counted" && verdict.errorClass === "connection-lost") countedLosses.push(performance.now());
    // A fault of this call's own for the P2028 rule: a connection lost with something on it, or the
    // server unavailable (a dead pooled connection replaced before anything was sent is not counted
    // here, nor is a P2028; the adapter judges the pool's closes on its own: recentFault).
    if ((verdict.errorClass === "connection-lost" && (budget !== "stale" || !dialect.provesNotSent(error))) || (verdict.errorClass === "unavailable" && !dialect.isTransactionStartTimeout(error))) faultSeen = true;
    throw new RetryableFailure(error, verdict.errorClass, budget, flightOf(error)?.heldBack === true);
  };

  try {
    // p-retry runs the loop and bounds it by time (maxRetryTime); this package's own accounting
    // decides each retry, because p-retry 7's options cannot say it (its index.js, 7.1.1):
    // - its retry count (`retries`, `shouldConsumeRetry`) is checked before `shouldRetry` is asked
    //   and never goes down, while a counted loss that an outage explains later is given back here
    //   (refundOutageLoss): `retries` is only the backstop of all the budgets together;
    // - its delay grows with the retries it counted, and a retry it does not count runs at once;
    //   the waits here depend on the budget and the failure (none after a lost connection or a
    //   held-back call, full jitter for a conflict, backoff by the waits made: backoffDelay,
    //   conflictDelay), so its backoff is off (`minTimeout: 0`, `factor: 1`) and shouldRetry waits;
    // - `signal` would end the loop with the signal's reason, and AbortError turns a non-Error into
    //   a new Error: the caller gets the failure itself and the give-up is recorded (`abortWith`),
    //   and $disconnect() is read from `what.stopped` after each wait.
    return await pRetry(run, {
      retries: options.retries + MAX_FREE.stale + MAX_FREE.outage + MAX_FREE.conflict,
      minTimeout: 0,
      factor: 1,
      randomize: false,
      maxRetryTime: Math.max(0, deadlineAt - performance.now()),
      shouldRetry: async ({ error }) => {
        const failure = error as RetryableFailure;
        const budget = failure.budget;
        const free = options.retries > 0 && budget !== "counted" && freeUsed[budget] < MAX_FREE[budget];
        if (!free && retriesUsed >= options.retries && !refundOutageLoss()) return false;
        // A lost connection is retried at once (the pool hands out another); a conflict after a
        // random wait; an unavailable server, or a second failure in a row, with backoff and jitter.
        let delayMs: number;
        if (budget === "conflict") delayMs = conflictDelay(options, freeUsed.conflict);
        // (A connection lost to an outage waits at the adapter's gate, not here.)
        // A connection lost while opening a transaction (BEGIN may have been sent) waits from the
        // second one on: a proxy that drops every new session is not hammered.
        else if (failure.heldBack || (budget === "stale" && (dialect.provesNotSent(failure.original) || freeUsed.stale === 0))) delayMs = 0;
        else if (budget !== "stale" && failure.errorClass === "connection-lost" && (budget === "outage" || retriesUsed === 0)) delayMs = 0;
        else delayMs = backoffDelay(options, waits++);
        // Never wait past the deadline: a shortened wait still leaves one last attempt before it.
        const remaining = deadlineAt - performance.now();
        if (remaining < 20) return false;
        if (delayMs > remaining - 10) delayMs = Math.max(0, Math.floor(remaining - 10));
        if (free) freeUsed[budget as Exclude<Budget, "counted">]++;
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
        recordRetry(context, options.flavor ?? what.system?.());
        if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
        // $disconnect() during the wait: the app has let go, no re-run.
        return !what.stopped?.();
      },
    });
  } catch (error) {
    if (abortWith) {
      recordGiveUp(abortWith.error, options.flavor ?? what.system?.());
      throw abortWith.error;
    }
    if (error instanceof RetryableFailure) {
      if (error.errorClass !== "unavailable") throw error.original;
      const waitedMs = Math.round(performance.now() - what.startedAt);
      log(`giving up on ${what.operation}: unavailable (${dialect.unavailableReason(error.original)}) after ${attempts} attempts, ${waitedMs} ms`);
      const unavailable = new DatabaseUnavailableError(
        { reason: dialect.unavailableReason(error.original), operation: what.operation, model: what.model, attempts, waitedMs },
        { cause: error.original },
      );
      recordGiveUp(unavailable, options.flavor ?? what.system?.());
      throw unavailable;
    }
    throw error;
  }
}
