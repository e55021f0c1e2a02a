// OpenTelemetry, for apps that already run it: each re-run, commit verification, unknown outcome,
// give-up and outage becomes an event on the app's active span and a metric. @opentelemetry/api is
// an optional peer: without it, or without a registered provider, every call here does nothing.
// Only the failure paths call in (a retry, the verification of a lost COMMIT, a change of the
// server's state), never a query that succeeds. Attributes hold names, codes, counts and times:
// never a URL, SQL text or a value.
import { createRequire } from "node:module";
import { errorFacts, type ErrorClass } from "./facts.ts";
import type { StateChange } from "./state.ts";

/** `db.system.name`: the server's flavour, when something told it. */
export type DbSystem = "mariadb" | "mysql" | "postgresql";
type Attributes = Record<string, string | number | boolean | undefined>;

// The few parts of @opentelemetry/api used here, typed structurally: the package's own types are
// not needed to build or use this one.
interface Span {
  isRecording(): boolean;
  addEvent(name: string, attributes?: Attributes): unknown;
}
interface Counter {
  add(value: number, attributes?: Attributes): void;
}
interface Histogram {
  record(value: number, attributes?: Attributes): void;
}
interface Meter {
  createCounter(name: string, options?: object): Counter;
  createHistogram(name: string, options?: object): Histogram;
}
interface MeterProvider {
  getMeter(name: string): Meter;
}
export interface OtelApi {
  trace: { getActiveSpan(): Span | undefined };
  metrics: { getMeterProvider(): MeterProvider };
}

const SCOPE = "prisma-extension-resilience";

/** Loads @opentelemetry/api with `load`; undefined when it is not installed (or not usable). */
export function apiFrom(load: () => unknown): OtelApi | undefined {
  try {
    const api = load() as OtelApi | undefined;
    return typeof api?.trace?.getActiveSpan === "function" && typeof api?.metrics?.getMeterProvider === "function" ? api : undefined;
  } catch {
    return undefined;
  }
}

// Looked for once, at the first failure: undefined until then, null when absent.
let api: OtelApi | null | undefined;
function otel(): OtelApi | undefined {
  // (require, not import: the first event is recorded at once; both share the api's global registry.)
  if (api === undefined) api = apiFrom(() => createRequire(import.meta.url)("@opentelemetry/api")) ?? null;
  return api ?? undefined;
}

interface Instruments {
  provider: MeterProvider;
  retries: Counter;
  verifications: Counter;
  unknown: Counter;
  outage: Histogram;
}
// Made once per meter provider: the metrics API has no proxy, so a meter taken before the app
// registered its provider would stay a no-op.
let instruments: Instruments | undefined;
function meters(o: OtelApi): Instruments {
  const provider = o.metrics.getMeterProvider();
  if (instruments?.provider === provider) return instruments;
  const meter = provider.getMeter(SCOPE);
  instruments = {
    provider,
    retries: meter.createCounter("resilience.retries", { unit: "{retry}", description: "Operations and transactions re-run after a failure" }),
    verifications: meter.createCounter("resilience.commit.verifications", { unit: "{verification}", description: "Lost COMMIT replies looked up, by verdict" }),
    unknown: meter.createCounter("resilience.outcomes.unknown", { unit: "{outcome}", description: "Writes reported as OutcomeUnknownError" }),
    outage: meter.createHistogram("resilience.outage.duration", {
      unit: "s",
      description: "How long the database server was down (or refused this app), measured when it answers again",
      advice: { explicitBucketBoundaries: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600] },
    }),
  };
  return instruments;
}

/** Runs `record` with the api when it is there; an observer's failure is never the database's. */
function observe(record: (o: OtelApi, span: Span | undefined) => void) {
  try {
    const o = otel();
    if (!o) return;
    const span = o.trace.getActiveSpan();
    record(o, span?.isRecording() ? span : undefined);
  } catch {
    // telemetry must not turn a recovered fault into a failure
  }
}

/** `error.type`: the lowest-level code the error carries (ECONNRESET, 1213, 45009, P2028 …), else its class. */
function errorType(error: unknown, fallback: string): string {
  const f = errorFacts(error);
  return f.socketCode ?? (f.errno !== undefined ? String(f.errno) : undefined) ?? f.prismaCode ?? fallback;
}

function clean(attributes: Attributes): Attributes {
  for (const key of Object.keys(attributes)) if (attributes[key] === undefined) delete attributes[key];
  return attributes;
}

export interface RetryEvent {
  attempt: number;
  retriesLeft: number;
  error: unknown;
  errorClass: ErrorClass;
  operation: string;
  model?: string;
  delayMs: number;
  counted: boolean;
}

/** A failed attempt is about to be re-run. */
export function recordRetry(retry: RetryEvent, system: DbSystem | undefined) {
  observe((o, span) => {
    const type = errorType(retry.error, retry.errorClass);
    span?.addEvent(
      "resilience.retry",
      clean({
        "db.system.name": system,
        "db.operation.name": retry.operation,
        "db.collection.name": retry.model,
        "error.type": type,
        "resilience.error_class": retry.errorClass,
        "resilience.attempt": retry.attempt,
        "resilience.retries_left": retry.retriesLeft,
        "resilience.delay_ms": retry.delayMs,
        "resilience.counted": retry.counted,
      }),
    );
    meters(o).retries.add(1, clean({ "db.system.name": system, "error.type": type, "resilience.error_class": retry.errorClass, "resilience.counted": retry.counted }));
  });
}

// A final error passes through the retry path again when it comes out of a nested call: once each.
const recorded = new WeakSet<object>();

/** The retry path gives up: an OutcomeUnknownError or a DatabaseUnavailableError is recorded (once); other errors are not. */
export function recordGiveUp(error: unknown, system: DbSystem | undefined) {
  const e = error as any;
  if (typeof e !== "object" || e === null || recorded.has(e)) return;
  if (e.name !== "OutcomeUnknownError" && e.name !== "DatabaseUnavailableError") return;
  recorded.add(e);
  observe((o, span) => {
    const common = { "db.system.name": system, "db.operation.name": e.operation, "db.collection.name": e.model, "resilience.attempts": e.attempts };
    if (e.name === "DatabaseUnavailableError") {
      span?.addEvent("resilience.unavailable", clean({ ...common, "error.type": errorType(e.cause, e.name), "resilience.reason": e.reason, "resilience.waited_ms": e.waitedMs }));
      return;
    }
    span?.addEvent(
      "resilience.outcome_unknown",
      clean({
        ...common,
        "error.type": errorType(e.cause, e.name),
        "resilience.in_flight": e.inFlight,
        "resilience.statement": e.statement,
        "resilience.verification_incomplete": e.verificationIncomplete,
      }),
    );
    meters(o).unknown.add(1, clean({ "db.system.name": system, "resilience.in_flight": e.inFlight }));
  });
}

/** Commit verification of a lost COMMIT reply ended with `verdict` after `ms`. */
export function recordVerification(verdict: string, ms: number, system: DbSystem | undefined) {
  observe((o, span) => {
    span?.addEvent("resilience.commit_verified", clean({ "db.system.name": system, "resilience.verdict": verdict, "resilience.verify_ms": ms }));
    meters(o).verifications.add(1, clean({ "db.system.name": system, "resilience.verdict": verdict }));
  });
}

/**
 * A call held at the gate while the server is down: when `held` settles, the wait is an event on the
 * span that was active when the call arrived (`up`: the server answered, the call goes on; otherwise
 * the error's name: the call failed unsent and the retry path decides).
 */
export function recordOutageWait<T>(held: Promise<T>, system: DbSystem | undefined): Promise<T> {
  let span: Span | undefined;
  observe((_, active) => (span = active));
  if (!span) return held;
  const since = performance.now();
  const done = (outcome: string) =>
    observe(() => span!.addEvent("resilience.outage_wait", clean({ "db.system.name": system, "resilience.outcome": outcome, "resilience.waited_ms": Math.round(performance.now() - since) })));
  return held.then(
    (value) => {
      done("up");
      return value;
    },
    (error) => {
      done(String((error as any)?.name ?? "error"));
      throw error;
    },
  );
}

/** The server was found down (or refusing this app), or answers again. */
export function recordStateChange(change: StateChange, system: DbSystem | undefined) {
  observe((o, span) => {
    span?.addEvent(
      "resilience.outage",
      clean({
        "db.system.name": system,
        "resilience.state": change.state,
        "resilience.reason": change.reason,
        "resilience.down_ms": change.downForMs,
        "resilience.generation": change.generation,
      }),
    );
    if (change.state === "up" && change.downForMs !== undefined) meters(o).outage.record(change.downForMs / 1000, clean({ "db.system.name": system }));
  });
}
