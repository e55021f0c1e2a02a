// A listener on every client of the adapter's pool, for the moment pg-pool hands it over.
// pg-pool takes its own 'error' listener off a client as it hands it out; adapter-pg's
// startTransaction adds its own only after `await pool.connect()`. An 'error' between the two (a
// crash's FATAL in the same read as the new connection's ReadyForQuery) found no listener, and Node
// threw it uncaught (test/postgres-startup-crash.test.ts; also when a read's reply hands its client to
// a waiting transaction within the same read). pg has marked the client not queryable before it
// emits: this listener only keeps the error from being thrown. The client's next query fails
// unsent ("not queryable", a connection-lost error), and pg-pool drops the client when it comes back.
import { describeError, log } from "../core/log.ts";

interface PoolLike {
  on(event: "acquire", listener: (client: ClientLike) => void): unknown;
}
interface ClientLike {
  on(event: "error", listener: (error: unknown) => void): unknown;
  listenerCount(event: "error"): number;
}

const guardedPools = new WeakSet<object>();
const guardedClients = new WeakSet<object>();

function guard(client: ClientLike) {
  if (guardedClients.has(client)) return;
  guardedClients.add(client);
  client.on("error", function onClientError(error: unknown) {
    // Alone: no one else listened (pg-pool's or adapter-pg's listener sees the others).
    if (client.listenerCount("error") === 1) log(`a pooled connection failed while no one listened (${describeError(error)}); its next query fails unsent`);
  });
}

/**
 * Guards every client `pool` hands out from now on, each once. The pool keeps the listener for good:
 * a pool being ended still hands out a connection that was opening. An app-made pool keeps it too
 * after the adapter is gone (one per pool however often it is wrapped, one per client): it only logs.
 */
export function guardHandOver(pool: unknown): void {
  const p = pool as PoolLike | undefined;
  if (typeof p?.on !== "function" || guardedPools.has(p)) return;
  guardedPools.add(p);
  p.on("acquire", guard);
}
