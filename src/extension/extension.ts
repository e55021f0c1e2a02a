// resilience(): the Prisma Client extension. A query hook re-runs single operations; a `$transaction`
// override re-runs whole transactions. On the hot path (no failure) the hook does one check and adds
// one `.catch`; everything else happens in retry.ts, after a failure.
import { AsyncLocalStorage } from "node:async_hooks";
import { Prisma } from "@prisma/client/extension";
import { resolveOptions, type ResilienceOptions, type ResolvedOptions } from "./options.ts";
import type { Dialect } from "../core/dialect.ts";
import { retryAfterFailure, type Attempted } from "../core/retry.ts";
import { DB_SYSTEM, DIALECT, isResilientAdapter, OUTAGE_AFTER, RECENT_FAULT } from "../adapter/adapter.ts";
import { flightOf } from "../core/flight.ts";
import { mysqlDialect } from "../mysql/dialect.ts";
import { pgDialect } from "../postgres/dialect.ts";

const READ_OPERATIONS = new Set([
  "findUnique",
  "findUniqueOrThrow",
  "findFirst",
  "findFirstOrThrow",
  "findMany",
  "count",
  "aggregate",
  "groupBy",
]);
const RAW_READS = new Set(["$queryRaw", "$queryRawUnsafe", "$queryRawTyped"]);

/** The SQL text of a raw query's arguments, in the shapes Prisma hands to query extensions. */
function rawSqlText(args: unknown): string | undefined {
  if (typeof args === "string") return args;
  if (Array.isArray(args)) {
    if (typeof args[0] === "string") return args[0];
    if (Array.isArray(args[0])) return args[0].join("?"); // TemplateStringsArray
    return undefined;
  }
  if (typeof args === "object" && args !== null) {
    const a = args as Record<string, unknown>;
    for (const key of ["sql", "text"] as const) if (typeof a[key] === "string") return a[key] as string;
    if (Array.isArray(a.strings)) return a.strings.join("?");
  }
  return undefined;
}

function operationIsReadOnly(dialect: Dialect, operation: string, args: unknown): boolean {
  if (READ_OPERATIONS.has(operation)) return true;
  if (RAW_READS.has(operation)) {
    const sql = rawSqlText(args);
    return sql !== undefined && dialect.isReadOnlySql(sql);
  }
  return false;
}

function rawIsMultiStatement(dialect: Dialect, operation: string, args: unknown): boolean {
  if (!operation.startsWith("$")) return false;
  const sql = rawSqlText(args);
  return sql !== undefined && dialect.isMultiStatement(sql);
}

const PRISMA_DATABASE_ERRORS = new Set(["PrismaClientKnownRequestError", "PrismaClientUnknownRequestError", "DriverAdapterError"]);

/**
 * Did an error thrown inside a transaction callback come from the database? With withResilience()
 * only errors that carry its flight record do; without it, Prisma's database error shapes. Anything
 * else (an ECONNRESET from fetch, a Redis client, the app's own code) is the app's, and never makes
 * the transaction run again.
 */
function fromDatabase(error: unknown, wrapped: boolean): boolean {
  if (flightOf(error)) return true;
  if (wrapped) return false;
  let e: any = error;
  for (let depth = 0; depth < 6 && typeof e === "object" && e !== null; depth++) {
    if (PRISMA_DATABASE_ERRORS.has(e.name)) return true;
    e = e.cause;
  }
  return false;
}

type TransactionFn = (input: unknown, txOptions?: unknown) => Promise<unknown>;

/**
 * Without withResilience() nothing sees the statements of a transaction but the query hook: it
 * marks the running attempt when a raw statement may commit implicitly (TRUNCATE, DDL, a raw
 * COMMIT …), so that attempt is never re-run. With the wrapper, the adapter tracks it instead.
 */
interface AttemptState {
  committedEarlier: boolean;
}
const attemptState = new AsyncLocalStorage<AttemptState>();

function noteImplicitCommit(dialect: Dialect, operation: string, args: unknown) {
  if (!operation.startsWith("$")) return;
  const sql = rawSqlText(args);
  if (sql !== undefined && dialect.mayCommitImplicitly(sql)) {
    const state = attemptState.getStore();
    if (state) state.committedEarlier = true;
  }
}

type FaultProbes = Pick<Attempted, "dialect" | "recentFault" | "outageAfter" | "system">;

/** Counts the extended client's `$disconnect()` calls: a call started before one is not re-run. */
class Disconnects {
  count = 0;
  /** For a call that started at `count` = `at`: has `$disconnect()` been called since? */
  since(at: number): () => boolean {
    return () => this.count !== at;
  }
}

/**
 * Interactive transaction options whose maxWait ends by `deadlineAt` (never below 1 ms). Without
 * one of its own, the transaction waits the client's (`new PrismaClient({ transactionOptions })`,
 * Prisma's default 2 s).
 */
function withinDeadline(txOptions: unknown, deadlineAt: number, client: any): unknown {
  if (txOptions !== undefined && (typeof txOptions !== "object" || txOptions === null)) return txOptions;
  const given = (txOptions as { maxWait?: unknown } | undefined)?.maxWait ?? client?._engineConfig?.transactionOptions?.maxWait;
  const maxWait = typeof given === "number" ? given : 2000;
  return { ...(txOptions as object | undefined), maxWait: Math.max(1, Math.min(maxWait, Math.floor(deadlineAt - performance.now()))) };
}

function makeTransaction(base: any, options: ResolvedOptions, wrapped: boolean, faults: FaultProbes, disconnects: Disconnects): TransactionFn {
  return function $transaction(input: unknown, txOptions?: unknown) {
    if (!options.retryTransactions) return base.$transaction(input, txOptions);
    const startedAt = performance.now();
    const stopped = disconnects.since(disconnects.count);
    if (typeof input === "function") {
      let entered = false;
      let returned = false;
      let foreign = false;
      const state: AttemptState = { committedEarlier: false };
      const start = (run: () => Promise<unknown>) => (wrapped ? run() : attemptState.run(state, run));
      let attempt = 0;
      const once = () => {
        // A re-run waits for its connection no longer than the deadline leaves (Prisma's maxWait,
        // 2 s by default): a P2028 then ends the call by its deadline, not maxWait after it.
        const attemptOptions = attempt++ === 0 ? txOptions : withinDeadline(txOptions, startedAt + options.deadline, base);
        entered = false;
        returned = false;
        foreign = false;
        state.committedEarlier = false;
        return start(() => base.$transaction(async (tx: unknown) => {
          entered = true;
          let result: unknown;
          try {
            result = await input(tx);
          } catch (error) {
            foreign = !fromDatabase(error, wrapped);
            throw error;
          }
          returned = true;
          return result;
        }, attemptOptions));
      };
      const what: Attempted = {
        operation: "$transaction",
        scope: "transaction",
        readOnly: () => false,
        committing: () => returned,
        entered: () => entered,
        foreign: () => foreign,
        committedEarlier: () => state.committedEarlier,
        ...faults,
        stopped,
        startedAt,
      };
      return once().catch((error: unknown) => retryAfterFailure(error, once, what, options));
    }
    // Batch form: Prisma re-runs the same array of PrismaPromises when asked again.
    const state: AttemptState = { committedEarlier: false };
    const once = () => {
      state.committedEarlier = false;
      return wrapped ? base.$transaction(input, txOptions) : attemptState.run(state, () => base.$transaction(input, txOptions));
    };
    const what: Attempted = {
      operation: "$transaction",
      scope: "transaction",
      readOnly: () => false,
      committedEarlier: () => state.committedEarlier,
      ...faults,
      stopped,
      startedAt,
    };
    return once().catch((error: unknown) => retryAfterFailure(error, once, what, options));
  };
}

/**
 * The extended client, with `$transaction` replaced by a Proxy that answers that one property (and
 * `$disconnect`, counted). A `client: { $transaction }` extension component would work too, but it
 * replaces Prisma's typed signature with ours; the override keeps Prisma's own signature, so the
 * client's type is unchanged.
 */
function withTransactionOverride<C extends object>(extended: C, $transaction: TransactionFn, disconnects: Disconnects): C {
  const $disconnect = () => {
    disconnects.count++;
    return (extended as any).$disconnect();
  };
  return new Proxy(extended, {
    get(target, prop, receiver) {
      if (prop === "$transaction") return $transaction;
      if (prop === "$disconnect") return $disconnect;
      return Reflect.get(target, prop, receiver);
    },
  });
}

/** What `prisma.$extends(resilience)` hands the extension: a Prisma Client. */
type ExtendableClient = { $extends: (...args: any[]) => unknown };
type ResilienceExtension = ReturnType<typeof defineResilience>;

function isClient(value: unknown): value is ExtendableClient {
  return typeof value === "object" && value !== null && typeof (value as any).$extends === "function";
}

/** `prisma.$extends(resilience)`: Prisma calls an extension function with the client; defaults apply. */
export function resilience(client: ExtendableClient): ReturnType<ResilienceExtension>;
/**
 * The Prisma Client extension: re-runs an operation or a whole `$transaction` after a lost
 * connection, an unavailable server or a deadlock, when (and only when) nothing of it can have
 * committed. Put it last in your `$extends` chain. Both forms work: `$extends(resilience({ … }))`,
 * and `$extends(resilience)` for the defaults.
 *
 * ```ts
 * const prisma = new PrismaClient({ adapter: withResilience(new PrismaMariaDb(url)) }).$extends(resilience());
 * ```
 */
// This overload comes last so that `Parameters<typeof resilience>` is the options form.
export function resilience(options?: ResilienceOptions): ResilienceExtension;
export function resilience(arg?: ResilienceOptions | ExtendableClient) {
  if (isClient(arg)) return defineResilience(resolveOptions(undefined))(arg);
  return defineResilience(resolveOptions(arg));
}

function defineResilience(resolved: ResolvedOptions) {
  return Prisma.defineExtension((client) => {
    const base = client as any;
    const factory = base._engineConfig?.adapter;
    const wrapped = isResilientAdapter(factory);
    // The database's rules: the wrapped adapter names its dialect; without the wrapper, the adapter
    // factory's `provider` ("postgres" for @prisma/adapter-pg, "mysql" for adapter-mariadb).
    const faults: FaultProbes = wrapped
      ? { dialect: factory[DIALECT] ?? mysqlDialect, recentFault: () => factory[RECENT_FAULT]?.() === true, outageAfter: (lostAt) => factory[OUTAGE_AFTER]?.(lostAt) === true, system: () => factory[DB_SYSTEM]?.() }
      : { dialect: factory?.provider === "postgres" ? pgDialect : mysqlDialect };
    const disconnects = new Disconnects();
    const extended = client.$extends({
      name: "prisma-extension-resilience",
      query: {
        $allOperations({ model, operation, args, query, __internalParams }: any) {
          // Inside a transaction no single statement is retried: the whole transaction is.
          if (__internalParams?.transaction) {
            if (!wrapped) noteImplicitCommit(faults.dialect, operation, args);
            return query(args);
          }
          const startedAt = performance.now();
          const disconnectsAtStart = disconnects.count;
          return query(args).catch((error: unknown) =>
            retryAfterFailure(
              error,
              () => query(args),
              {
                operation,
                model,
                scope: "operation",
                readOnly: () => operationIsReadOnly(faults.dialect, operation, args),
                multiStatement: () => rawIsMultiStatement(faults.dialect, operation, args),
                ...faults,
                stopped: disconnects.since(disconnectsAtStart),
                startedAt,
              },
              resolved,
            ),
          );
        },
      },
    });
    // With the wrapper, transactions run on the client below this extension: no hook per statement
    // inside them (the adapter sees those statements). Without it, on the extended client, so the
    // hook sees each raw statement of the transaction (implicit commits, above).
    const host = wrapped ? base : extended;
    return withTransactionOverride(extended, makeTransaction(host, resolved, wrapped, faults, disconnects), disconnects);
  });
}
