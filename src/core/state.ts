// The server's health as the app hears of it: `onStateChange` and telemetry (src/core/health.ts decides it).
export type HealthState = "up" | "down";

export interface StateChange {
  state: HealthState;
  /** Why it went down ("connection refused", "no answer", "authentication failed") or came back ("server accepts connections"). */
  reason: string;
  /** For `up`: how long the server was down, in ms. */
  downForMs?: number;
  /** Pool generation now in use: it grows by one each time connections from before an outage are retired. */
  generation: number;
}
