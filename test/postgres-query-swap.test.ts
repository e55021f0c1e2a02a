// The PostgreSQL transaction changes the pg client's `query` only synchronously around the one
// statement that needs it (src/pg-adapter/transaction.ts sendChanged): the COMMIT whose command tag
// is read, a statement that reads the transaction id. A hand-built client (pg 8's shape: `query` on
// the prototype) and adapter; what a real server answers is in test/postgres-transaction-edges.test.ts.
import assert from "node:assert/strict";
import { test } from "node:test";
import { PgResilientTransaction } from "../src/pg-adapter/transaction.ts";
import { flightOf, mayHaveCommitted } from "../src/core/flight.ts";

class FakeClient {
  readyForQuery = true;
  _queryQueue: unknown[] = [];
  pipeline = false;
  sent: string[] = [];
  getTransactionStatus() {
    return "T";
  }
  /** The server's tag: a COMMIT of a failed transaction answers ROLLBACK. */
  query(config: { text: string }) {
    this.sent.push(config.text);
    return Promise.resolve({ command: config.text === "COMMIT" ? "ROLLBACK" : "SELECT", rowCount: 0 });
  }
}

const handler = { suspect: async () => undefined, serverDown: false, verifying: false, silentAfter: 0, verifyCommit: async () => "unknown" as const, backendState: async () => undefined };

function transactionOn(client: FakeClient, executeRaw: (params: { sql: string }) => Promise<number>) {
  const inner = { provider: "postgres", adapterName: "@prisma/adapter-pg", options: {}, client, executeRaw, queryRaw: () => Promise.resolve({}), commit: () => Promise.resolve(), rollback: () => Promise.resolve() };
  return new PgResilientTransaction(inner as any, handler as any);
}

const commit = (tx: PgResilientTransaction) =>
  tx.executeRaw({ sql: "COMMIT", args: [], argTypes: [] } as any).then(
    () => undefined,
    (e: unknown) => e as Error,
  );

test("the tag is read from the COMMIT's own query, not from one the adapter sends before it", async () => {
  const client = new FakeClient();
  const tx = transactionOn(client, (params) => {
    void client.query({ text: "SELECT 'prelude'" });
    return client.query({ text: params.sql }).then((r) => r.rowCount);
  });
  const error = await commit(tx);
  assert.deepEqual(client.sent, ["SELECT 'prelude'", "COMMIT"]);
  assert.match(String(error?.message), /COMMIT rolled the transaction back/, "the COMMIT's tag ROLLBACK was read");
});

test("afterwards the client's query is the prototype's again: no own property left", async () => {
  const client = new FakeClient();
  const tx = transactionOn(client, (params) => client.query({ text: params.sql }).then((r) => r.rowCount));
  await commit(tx);
  assert.equal(Object.prototype.hasOwnProperty.call(client, "query"), false);
  assert.equal(client.query, FakeClient.prototype.query);
});

test("an own query property (another wrapper's) is put back as it was", async () => {
  const client = new FakeClient();
  const theirs = FakeClient.prototype.query;
  const own = function (this: FakeClient, config: { text: string }) {
    return theirs.call(this, config);
  };
  client.query = own;
  const tx = transactionOn(client, (params) => client.query({ text: params.sql }).then((r) => r.rowCount));
  await commit(tx);
  assert.equal(client.query, own);
});

test("an adapter that throws synchronously: the COMMIT fails, the client's query is put back", async () => {
  const client = new FakeClient();
  const boom = new Error("thrown before any query");
  const tx = transactionOn(client, () => {
    throw boom;
  });
  const error = await commit(tx);
  assert.ok(error, "the COMMIT failed");
  assert.equal(Object.prototype.hasOwnProperty.call(client, "query"), false);
  assert.deepEqual(client.sent, []);
});

test("the wrapper's own transaction, its first statement sent by the adapter in another text: it ran without BEGIN, so its lost reply may have committed (never 'rolled back')", async () => {
  const client = new FakeClient();
  const lostReply = () => Object.assign(new Error("Connection terminated unexpectedly"), {});
  const inner = {
    provider: "postgres",
    adapterName: "@prisma/adapter-pg",
    options: {},
    client,
    // An adapter that rewrites the text (here: a trailing space): the changed query lets it pass unchanged.
    executeRaw: (params: { sql: string }) => client.query({ text: `${params.sql} ` }).then(() => Promise.reject(lostReply())),
    queryRaw: () => Promise.resolve({}),
    commit: () => Promise.resolve(),
    rollback: () => Promise.resolve(),
  };
  const tx = new PgResilientTransaction(inner as any, { ...handler, verifying: true } as any, { beginPending: true });
  const error = await tx.executeRaw({ sql: 'INSERT INTO "Ledger" (key, amount) VALUES ($1, 1)', args: ["k"], argTypes: [] } as any).then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.deepEqual(client.sent, ['INSERT INTO "Ledger" (key, amount) VALUES ($1, 1) '], "sent as the adapter made it: no BEGIN with it");
  assert.equal(flightOf(error)?.committedEarlier, true, "it may have committed on its own");
  assert.equal(mayHaveCommitted(flightOf(error)!), true);
});
