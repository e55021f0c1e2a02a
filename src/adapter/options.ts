// The options of withResilience(), validated once when the adapter is wrapped.
import type { StateChange } from "./health.ts";

export interface ResilientAdapterOptions {
  /**
   * Called when the server is found down (a probe after a lost connection is refused or
   * unanswered) and when it is back (a fresh pool is in use). Default none.
   */
  onStateChange?: (change: StateChange) => void;
  /**
   * ms a call waits for the server while it is down, before it fails unsent and the retry loop
   * decides again (it bounds how far past its deadline an operation can end). Default 200.
   */
  outageWait?: number;
  /** ms between probes while the server is down. Default 50. */
  probeInterval?: number;
  /** ms a probe waits for a TCP connection. Default 1000. */
  probeTimeout?: number;
  /** End the server-side session of a silently dropped transaction (KILL <thread id>). Default true. */
  killGhostSessions?: boolean;
}

export interface ResolvedAdapterOptions extends Required<Omit<ResilientAdapterOptions, "onStateChange">> {
  onStateChange?: (change: StateChange) => void;
}

export function resolveAdapterOptions(options: ResilientAdapterOptions | undefined): ResolvedAdapterOptions {
  if (options === undefined) options = {};
  if (typeof options !== "object" || options === null) throw new TypeError("withResilience(): options must be an object");
  const known = new Set(["onStateChange", "outageWait", "probeInterval", "probeTimeout", "killGhostSessions"]);
  for (const key of Object.keys(options)) if (!known.has(key)) throw new TypeError(`withResilience(): unknown option \`${key}\``);
  const ms = (name: keyof ResilientAdapterOptions, fallback: number, min: number) => {
    const v = options![name];
    if (v === undefined) return fallback;
    if (typeof v !== "number" || !Number.isFinite(v) || v < min) {
      throw new TypeError(`withResilience(): \`${name}\` must be a number of ms ≥ ${min}, got ${String(v)}`);
    }
    return v;
  };
  if (options.onStateChange !== undefined && typeof options.onStateChange !== "function") {
    throw new TypeError("withResilience(): `onStateChange` must be a function");
  }
  if (options.killGhostSessions !== undefined && typeof options.killGhostSessions !== "boolean") {
    throw new TypeError("withResilience(): `killGhostSessions` must be true or false");
  }
  return {
    onStateChange: options.onStateChange,
    outageWait: ms("outageWait", 200, 0),
    probeInterval: ms("probeInterval", 50, 1),
    probeTimeout: ms("probeTimeout", 1000, 1),
    killGhostSessions: options.killGhostSessions ?? true,
  };
}
