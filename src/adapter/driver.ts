// The mariadb driver's internals this package touches (mariadb 3.4's Connection and Pool), typed once
// here: the rest of the adapter reads them only through these names. Every field is optional where
// another driver (or another version) may lack it: the code checks before it relies on one.
import type { Socket } from "node:net";

/** The driver's connection options (mariadb `ConnOptions`): host, port, socketPath, stream, user, password … */
export type ConnOptions = Record<string, any>;

/** A pooled connection of the mariadb driver (its callback-API Connection). */
export interface DriverConnection {
  readonly opts?: ConnOptions;
  /** Shared with the promise API's connection: the key of what is known about its session. */
  readonly info?: { serverVersion?: unknown; threadId?: number } & object;
  readonly threadId?: number;
  readonly socket?: Socket & { _handle?: { writeQueueSize?: number } };
  /** Commands waiting for their reply, the head first. */
  readonly receiveQueue?: { length: number; peekFront?(): unknown };
  on(event: string, listener: (...args: any[]) => void): unknown;
  once(event: string, listener: (...args: any[]) => void): unknown;
  query(options: { sql: string }, onRows: (rows: any) => void, onError: (error: unknown) => void): unknown;
  destroy(...args: unknown[]): unknown;
  /** mariadb 3.4: fails the socket as if it had closed (every waiting call fails with 45009). */
  socketErrorHandler?(...args: unknown[]): unknown;
}

/** The mariadb Pool a driver adapter factory builds (or the app's own). */
export interface DriverPool {
  readonly opts?: { connOptions?: ConnOptions };
  on(event: string, listener: (...args: any[]) => void): unknown;
  end(): Promise<void>;
  taskQueueSize?(): number;
  getConnection?(): Promise<unknown>;
  _createPoolConnection?(...args: unknown[]): unknown;
  _prepareNewConnection?(...args: unknown[]): unknown;
  _handleConnectionCreationError?(...args: unknown[]): unknown;
}

/** A driver adapter that exposes its pool (mariadb's `underlyingDriver()`). */
export interface WithDriver {
  underlyingDriver?(): unknown;
}

/** A connection waiting for at least one reply. */
export function busy(conn: DriverConnection): boolean {
  return (conn.receiveQueue?.length ?? 0) > 0;
}

/**
 * Ends a driver connection as if its socket had closed: every call waiting on it fails with the
 * driver's "socket has unexpectedly been closed" (45009, a lost connection), which the safety rule
 * handles, and the pool drops it.
 */
export function destroyConnection(conn: DriverConnection) {
  try {
    if (typeof conn.socketErrorHandler === "function") conn.socketErrorHandler();
    else conn.destroy?.();
  } catch {
    conn.destroy?.();
  }
}

const creating = new WeakMap<object, { pending: number; settled: Array<() => void> }>();

/**
 * mariadb's pool.end() does not wait for a connection it is still making: that one is closed only
 * once it is made (up to connectTimeout later). Counts the connects in flight (each call of
 * _createPoolConnection makes one, settled in _prepareNewConnection or
 * _handleConnectionCreationError; a retry the ended pool no longer runs is none), so that ending a
 * pool can wait for them (see creationsSettled).
 */
export function trackCreations(pool: DriverPool) {
  try {
    countCreations(pool);
  } catch {
    // not mariadb 3.4's Pool as expected: ending it does not wait for connects in flight
  }
}

function countCreations(pool: DriverPool) {
  const create = pool?._createPoolConnection;
  const made = pool?._prepareNewConnection;
  const failed = pool?._handleConnectionCreationError;
  if (typeof create !== "function" || typeof made !== "function" || typeof failed !== "function" || creating.has(pool)) return;
  const state = { pending: 0, settled: [] as Array<() => void> };
  creating.set(pool, state);
  const settle = () => {
    if (state.pending > 0 && --state.pending === 0) for (const wake of state.settled.splice(0)) wake();
  };
  pool._createPoolConnection = function (this: unknown, ...args: unknown[]) {
    state.pending++;
    try {
      return create.apply(this, args);
    } catch (e) {
      settle();
      throw e;
    }
  };
  for (const [name, original] of [["_prepareNewConnection", made], ["_handleConnectionCreationError", failed]] as const) {
    pool[name] = function (this: unknown, ...args: unknown[]) {
      try {
        return original.apply(this, args);
      } finally {
        settle();
      }
    };
  }
}

/** Resolves once the pool is making no connection any more (bounded by the driver's connectTimeout). */
export function creationsSettled(pool: DriverPool): Promise<void> | undefined {
  const state = creating.get(pool);
  if (!state || state.pending === 0) return;
  return new Promise((resolve) => state.settled.push(resolve));
}
