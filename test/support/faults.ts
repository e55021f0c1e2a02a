// Fault steps several test files take: a read KILLed mid-statement, a proxy in front of the server,
// and a bounded wait for a proxy fault to happen.
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { withParams } from "./clients.ts";
import type { TestDatabase } from "./mariadb.ts";
import { startProxy, type FaultProxy } from "./proxy.ts";

/** Kills the connection while `SELECT SLEEP(0.5)` runs on it; resolves with the query's result. */
export async function killedRead<T>(db: TestDatabase, query: () => Promise<T>): Promise<T> {
  const running = query();
  running.catch(() => undefined); // observed below; not unhandled while the kill is under way
  await db.waitForStatement("SLEEP(0.5)", 5000);
  const killed = await db.killConnections({ running: "SLEEP(0.5)" });
  assert.equal(killed.length, 1);
  return await running;
}

/** Waits for a proxy fault to happen, or fails the test in 5 s (a fault that never came is a failure, not a hang). */
export function happened(fault: Promise<void>, what: string): Promise<void> {
  return Promise.race([fault, sleep(5000).then(() => assert.fail(`${what} never happened`))]);
}

/** Runs `run` with a fault proxy in front of the server and a two-connection pool's URL through it. */
export async function withProxy<T>(db: TestDatabase, run: (proxy: FaultProxy, url: string) => Promise<T>): Promise<T> {
  const proxy = await startProxy(db.host, db.port);
  try {
    return await run(proxy, withParams(proxy.urlFor(db.url), { connectionLimit: 2 }));
  } finally {
    await proxy.close();
  }
}
