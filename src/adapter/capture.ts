// Learns the mariadb pool a driver adapter factory builds, while it builds it (see src/adapter/pool.ts).
import { EventEmitter } from "node:events";
import type { DriverPool } from "./driver.ts";

/**
 * Runs `connect` (a driver adapter factory's connect()) and returns the mariadb pool it creates, if
 * it creates one. mariadb's Pool registers its own listeners in its constructor, synchronously
 * inside connect() (before connect's first await), so `EventEmitter.prototype.on` is observed for
 * exactly that synchronous stretch and restored before anything else can run. The adapter keeps its
 * settings in a private field; this is how the probe learns them before any connection succeeds.
 * `onPool` runs the moment the pool is recognised: still inside its constructor, before it starts
 * its first connection.
 */
export function capturePool<T>(connect: () => T, onPool?: (pool: DriverPool) => void): { result: T; pool?: DriverPool } {
  const original = EventEmitter.prototype.on;
  let pool: DriverPool | undefined;
  EventEmitter.prototype.on = function (this: any, name: string | symbol, listener: (...args: any[]) => void) {
    if (pool === undefined && this?.opts?.connOptions && typeof this.getConnection === "function") {
      pool = this;
      onPool?.(this);
    }
    return original.call(this, name, listener);
  } as typeof original;
  try {
    const result = connect();
    return { result, pool };
  } finally {
    EventEmitter.prototype.on = original;
  }
}
