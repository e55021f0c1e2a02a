// When the status byte of the last ReadyForQuery ("E": the transaction has failed) is trusted at
// COMMIT (src/pg-adapter/transaction.ts commitStatement): only when nothing was in flight on the
// client. A driver-level test on a hand-built client (pg 8's fields: readyForQuery, _queryQueue,
// pipeline); the real-server cases are in test/postgres-transaction-edges.test.ts.
import assert from "node:assert/strict";
import { test } from "node:test";
import { PgResilientTransaction } from "../src/pg-adapter/transaction.ts";

const lost = () => Object.assign(new Error("Connection terminated unexpectedly"), {});

function commitWith(client: Record<string, unknown>) {
  const inner = { provider: "postgres", adapterName: "@prisma/adapter-pg", options: {}, client, executeRaw: () => Promise.reject(lost()), queryRaw: () => Promise.reject(lost()), commit: () => Promise.resolve(), rollback: () => Promise.resolve() };
  const handler = { suspect: async () => undefined, serverDown: false, verifying: false, silentAfter: 0, verifyCommit: async () => "unknown" as const, backendState: async () => undefined };
  const tx = new PgResilientTransaction(inner as any, handler as any);
  return tx.executeRaw({ sql: "COMMIT", args: [], argTypes: [] } as any).then(
    () => undefined,
    (e: unknown) => e as Error,
  );
}

const base = { query: () => Promise.resolve({}), getTransactionStatus: () => "E", pipeline: false };

test("status E with nothing in flight, the COMMIT's reply lost: rolled back (it cannot have committed)", async () => {
  const error = await commitWith({ ...base, readyForQuery: true, _queryQueue: [] });
  assert.match(String(error?.message), /COMMIT rolled the transaction back/);
});

for (const [what, fields] of [
  ["a query still unanswered (a ROLLBACK TO SAVEPOINT not awaited)", { readyForQuery: false, _queryQueue: [] }],
  ["a query queued", { readyForQuery: true, _queryQueue: [{}] }],
  ["pipeline mode", { readyForQuery: true, _queryQueue: [], pipeline: true }],
  ["a client that does not say", {}],
] as const) {
  test(`status E with ${what}, the COMMIT's reply lost: not claimed rolled back (it may have committed)`, async () => {
    const error = await commitWith({ ...base, ...fields });
    assert.ok(error, "an error");
    assert.doesNotMatch(String(error?.message), /COMMIT rolled the transaction back/);
  });
}
