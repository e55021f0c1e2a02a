// The options of resilience(), validated once when the extension is built: a bad option throws a
// TypeError there, not at the first outage.
import type { BackoffOptions, RetryContext, RetryPolicy } from "../core/policy.ts";

export type { BackoffOptions, RetryContext } from "../core/policy.ts";

export interface ResilienceOptions {
  /** Attempts after the first one. Default 1. */
  retries?: number;
  /**
   * Time budget of one operation or transaction, retries and waits included, in ms: no attempt
   * starts after it has passed. Default 15000.
   */
  deadline?: number;
  /** How long to wait between attempts while the server is unavailable, and after a conflict (this package's own waits: see src/core/retry.ts). */
  backoff?: BackoffOptions;
  /** Re-run `$transaction` (both forms) whole after a lost connection or a conflict. Default true. */
  retryTransactions?: boolean;
  /** Called before each retry. Must not throw; keep it quick (it runs on the retry path only). */
  onRetry?: (context: RetryContext) => void;
  /**
   * The server's flavour, when you know it: error 4031 means "disconnected for inactivity" on
   * MySQL 8.0.24+ only. Default: decided by the error's message.
   */
  flavor?: "mysql" | "mariadb";
}

export interface ResolvedOptions extends RetryPolicy {
  retryTransactions: boolean;
  flavor?: "mysql" | "mariadb";
}

const KNOWN = new Set(["retries", "deadline", "backoff", "retryTransactions", "onRetry", "flavor"]);
const KNOWN_BACKOFF = new Set(["minTimeout", "maxTimeout", "factor", "randomize"]);

function nonNegativeNumber(name: string, value: unknown, fallback: number, integer = false): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || Number.isNaN(value) || value < 0 || (integer && !Number.isInteger(value))) {
    throw new TypeError(`resilience(): \`${name}\` must be a ${integer ? "whole " : ""}number ≥ 0, got ${String(value)}`);
  }
  return value;
}

function boolean(name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== "boolean") throw new TypeError(`resilience(): \`${name}\` must be true or false, got ${String(value)}`);
  return value;
}

function unknownKeys(where: string, value: object, known: Set<string>) {
  for (const key of Object.keys(value)) {
    if (!known.has(key)) throw new TypeError(`resilience(): unknown option \`${where}${key}\``);
  }
}

export function resolveOptions(options: ResilienceOptions | undefined): ResolvedOptions {
  if (options === undefined) options = {};
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw new TypeError("resilience(): options must be an object");
  }
  unknownKeys("", options, KNOWN);
  const backoff = options.backoff ?? {};
  if (typeof backoff !== "object" || backoff === null || Array.isArray(backoff)) {
    throw new TypeError("resilience(): `backoff` must be an object");
  }
  unknownKeys("backoff.", backoff, KNOWN_BACKOFF);
  const retries = nonNegativeNumber("retries", options.retries, 1, true);
  if (retries > 100) throw new TypeError(`resilience(): \`retries\` must be at most 100, got ${retries}`);
  const deadline = nonNegativeNumber("deadline", options.deadline, 15_000);
  if (!Number.isFinite(deadline)) throw new TypeError("resilience(): `deadline` must be finite");
  const minTimeout = nonNegativeNumber("backoff.minTimeout", backoff.minTimeout, 100);
  const maxTimeout = nonNegativeNumber("backoff.maxTimeout", backoff.maxTimeout, 2000);
  if (maxTimeout < minTimeout) {
    throw new TypeError(`resilience(): \`backoff.maxTimeout\` (${maxTimeout}) is below \`backoff.minTimeout\` (${minTimeout})`);
  }
  const factor = nonNegativeNumber("backoff.factor", backoff.factor, 2);
  if (factor < 1) throw new TypeError(`resilience(): \`backoff.factor\` must be ≥ 1, got ${factor}`);
  if (options.onRetry !== undefined && typeof options.onRetry !== "function") {
    throw new TypeError("resilience(): `onRetry` must be a function");
  }
  if (options.flavor !== undefined && options.flavor !== "mysql" && options.flavor !== "mariadb") {
    throw new TypeError(`resilience(): \`flavor\` must be "mysql" or "mariadb", got ${String(options.flavor)}`);
  }
  return Object.freeze({
    retries,
    deadline,
    backoff: Object.freeze({ minTimeout, maxTimeout, factor, randomize: boolean("backoff.randomize", backoff.randomize, true) }),
    retryTransactions: boolean("retryTransactions", options.retryTransactions, true),
    onRetry: options.onRetry,
    flavor: options.flavor,
  });
}
