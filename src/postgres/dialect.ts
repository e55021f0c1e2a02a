// PostgreSQL's rules, as the core asks for them (src/core/dialect.ts).
import type { Dialect } from "../core/dialect.ts";
import { classify, isTransactionStartTimeout, provesNotSent, serverAnswered, unavailableReason } from "./classify.ts";
import { isMultiStatement, isReadOnlySql, mayCommitImplicitly } from "./sql.ts";

export const pgDialect: Dialect = Object.freeze({
  name: "postgres",
  classify: (error: unknown) => classify(error),
  provesNotSent,
  serverAnswered,
  isTransactionStartTimeout,
  unavailableReason,
  isReadOnlySql,
  isMultiStatement,
  mayCommitImplicitly,
});
