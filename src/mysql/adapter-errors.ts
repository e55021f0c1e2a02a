// Errors the MariaDB wrapper raises or re-shapes as @prisma/adapter-mariadb would have: what Prisma
// and the classifier (classify.ts) expect to see.

/**
 * The driver's error as the driver adapter would have mapped it (a DriverAdapterError), so that
 * Prisma and the classifier see the usual shape. Only the codes and the server's message are kept.
 */
export function asAdapterError(error: any): unknown {
  if (typeof error?.errno !== "number" || error?.name === "DriverAdapterError") return error;
  const cause =
    error.errno === 1213
      ? { kind: "TransactionWriteConflict", originalCode: "1213", originalMessage: error.sqlMessage ?? "N/A" }
      : { kind: "mysql", code: error.errno, message: error.sqlMessage ?? "N/A", state: error.sqlState ?? "N/A", originalCode: String(error.errno), originalMessage: error.sqlMessage ?? "N/A" };
  if (typeof error.sqlMessage !== "string") return error; // a socket error: Prisma takes it raw
  return Object.assign(new Error(String(error.sqlMessage)), { name: "DriverAdapterError", cause });
}

/** The server ended the transaction without an error (a Galera brute-force abort seen late): a conflict. */
export function transactionEnded(): Error {
  const message = "the server ended the transaction without an error (a Galera brute-force abort): it was rolled back";
  return Object.assign(new Error(message), {
    name: "DriverAdapterError",
    cause: { kind: "TransactionWriteConflict", originalCode: "1213", originalMessage: message },
  });
}
