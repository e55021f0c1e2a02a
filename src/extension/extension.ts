// resilience(): the Prisma Client extension. A query hook re-runs single operations; a `$transaction`
// override re-runs whole transactions. On the hot path (no failure) the hook does one check and adds
// one `.catch`; everything else happens in retry.ts, after a failure.
import { Prisma } from "@prisma/client/extension";
import { resolveOptions, type ResilienceOptions, type ResolvedOptions } from "./options.ts";
import { retryAfterFailure, type Attempted } from "./retry.ts";
import { isReadOnlySql } from "../adapter/sql.ts";

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

function operationIsReadOnly(operation: string, args: unknown): boolean {
  if (READ_OPERATIONS.has(operation)) return true;
  if (RAW_READS.has(operation)) {
    const sql = rawSqlText(args);
    return sql !== undefined && isReadOnlySql(sql);
  }
  return false;
}

type TransactionFn = (input: unknown, txOptions?: unknown) => Promise<unknown>;

function makeTransaction(base: any, options: ResolvedOptions): TransactionFn {
  return function $transaction(input: unknown, txOptions?: unknown) {
    if (!options.retryTransactions) return base.$transaction(input, txOptions);
    const startedAt = performance.now();
    if (typeof input === "function") {
      let returned = false;
      const once = () => {
        returned = false;
        return base.$transaction(async (tx: unknown) => {
          const result = await input(tx);
          returned = true;
          return result;
        }, txOptions);
      };
      const what: Attempted = {
        operation: "$transaction",
        scope: "transaction",
        readOnly: () => false,
        committing: () => returned,
        startedAt,
      };
      return once().catch((error: unknown) => retryAfterFailure(error, once, what, options));
    }
    // Batch form: Prisma re-runs the same array of PrismaPromises when asked again.
    const once = () => base.$transaction(input, txOptions);
    const what: Attempted = { operation: "$transaction", scope: "transaction", readOnly: () => false, startedAt };
    return once().catch((error: unknown) => retryAfterFailure(error, once, what, options));
  };
}

/**
 * The extended client, with `$transaction` replaced by a Proxy that answers that one property. A
 * `client: { $transaction }` extension component would work too, but it replaces Prisma's typed
 * signature with ours; the override keeps Prisma's own signature, so the client's type is unchanged.
 */
function withTransactionOverride<C extends object>(extended: C, $transaction: TransactionFn): C {
  return new Proxy(extended, {
    get(target, prop, receiver) {
      if (prop === "$transaction") return $transaction;
      return Reflect.get(target, prop, receiver);
    },
  });
}

/**
 * The Prisma Client extension: re-runs an operation or a whole `$transaction` after a lost
 * connection, an unavailable server or a deadlock, when (and only when) nothing of it can have
 * committed. Put it last in your `$extends` chain.
 *
 * ```ts
 * const prisma = new PrismaClient({ adapter: withResilience(new PrismaMariaDb(url)) }).$extends(resilience());
 * ```
 */
export function resilience(options?: ResilienceOptions) {
  const resolved = resolveOptions(options);
  return Prisma.defineExtension((client) => {
    const base = client as any;
    const extended = client.$extends({
      name: "prisma-extension-resilience",
      query: {
        $allOperations({ model, operation, args, query, __internalParams }: any) {
          // Inside a transaction no single statement is retried: the whole transaction is.
          if (__internalParams?.transaction) return query(args);
          const startedAt = performance.now();
          return query(args).catch((error: unknown) =>
            retryAfterFailure(
              error,
              () => query(args),
              { operation, model, scope: "operation", readOnly: () => operationIsReadOnly(operation, args), startedAt },
              resolved,
            ),
          );
        },
      },
    });
    return withTransactionOverride(extended, makeTransaction(base, resolved));
  });
}
