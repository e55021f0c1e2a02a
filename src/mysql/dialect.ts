// MySQL's and MariaDB's rules, as the core asks for them (src/core/dialect.ts).
import type { Dialect } from "../core/dialect.ts";
import { classify, isTransactionStartTimeout, provesNotSent, serverAnswered, unavailableReason } from "./classify.ts";
import { isMultiStatement, isReadOnlySql, mayCommitImplicitly } from "./sql.ts";

export const mysqlDialect: Dialect = Object.freeze({
  name: "mysql",
  classify: (error: unknown, options?: { flavor?: string }) =>
    classify(error, { flavor: options?.flavor === "mysql" || options?.flavor === "mariadb" ? options.flavor : undefined }),
  provesNotSent,
  serverAnswered,
  isTransactionStartTimeout,
  unavailableReason,
  isReadOnlySql,
  isMultiStatement,
  mayCommitImplicitly,
});
