// A write outside a transaction of the app's, run inside one so that its COMMIT carries a mark: its
// outcome is known even when the reply is lost. A failure of the statement itself is a statement of
// an open transaction (the server rolls it back); the COMMIT is verified.
import type { FlightPhase } from "../core/flight.ts";
import type { AdapterLike, SqlQueryLike } from "../core/driver-adapter.ts";
import type { ServerHealth } from "../core/health.ts";
import { canGoInOneFlight } from "./one-flight.ts";
import { startPipelined } from "./pipelined-begin.ts";
import { ResilientTransaction, type FailureHandler } from "./transaction.ts";

/** What the write needs of the wrapped adapter (coordinator.ts). */
export interface WriteHost extends FailureHandler {
  readonly current: AdapterLike;
  readonly health: ServerHealth<any>;
  readonly fenceWorks: boolean;
  startTransaction(): Promise<ResilientTransaction>;
  onError(phase: FlightPhase, error: unknown, sql: string): Promise<never>;
}

/**
 * `run` inside a transaction. An executeRaw (`oneFlight`) goes in one flight with BEGIN, its mark
 * and the COMMIT where it can (pipelined-begin.ts), else with its mark and the COMMIT once BEGIN is
 * answered (transaction.ts executeAndCommit), else as `run` and a marked COMMIT.
 */
export async function verifiedWrite<T>(host: WriteHost, run: (tx: ResilientTransaction) => Promise<T>, oneFlight?: SqlQueryLike): Promise<T> {
  let tx: ResilientTransaction;
  // Only where a key is possible: the shim pool is not built for writes that cannot use it.
  if (oneFlight && host.fenceWorks && host.guardedMarks && host.pipelining !== false && host.health.state === "up") {
    const keyFor = (conn: any) => (canGoInOneFlight(conn, oneFlight.sql, true) ? host.markKeyOf?.(conn) : undefined);
    const started = await startPipelined(host.current, keyFor).catch((e) => host.onError("begin", e, "BEGIN"));
    tx = new ResilientTransaction(started.tx, host);
    if (started.opening) return tx.executeAndCommit(oneFlight, started.opening.key, started.opening) as Promise<T>;
  } else tx = await host.startTransaction();
  const key = oneFlight && tx.oneFlightKey(oneFlight.sql);
  if (key) return tx.executeAndCommit(oneFlight, key) as Promise<T>;
  let result: T;
  try {
    result = await run(tx);
  } catch (error) {
    await tx.rollback().catch(() => undefined);
    throw error;
  }
  await tx.commit();
  return result;
}
