// Side connections: a fresh pg.Client beside the pool, for the health probe (connect + SELECT 1
// within probeTimeout) and for verifying a lost COMMIT. Never pooled, always ended, each bounded:
// a connection that does not answer in time is destroyed.
import type pg from "pg";
import { pgDriver } from "./driver.ts";
import type { ProbeResult, Prober } from "../core/health.ts";
import { sideSettings } from "./config.ts";
import { connectRefusal } from "./refusal.ts";

export type SideClient = pg.Client;

export class PgSide implements Prober {
  private closed = false;
  private readonly open = new Set<pg.Client>();

  constructor(private readonly config: () => Record<string, unknown> | undefined) {}

  get canConnect(): boolean {
    return !this.closed && this.config() !== undefined;
  }
  get isClosed(): boolean {
    return this.closed;
  }

  /** A connected side client, or why not. */
  async connect(timeoutMs: number): Promise<{ client?: pg.Client; result: ProbeResult }> {
    const config = this.config();
    if (this.closed || !config) return { result: { ok: false, reason: "closed" } };
    const client = new (pgDriver().Client)(sideSettings(config, timeoutMs) as pg.ClientConfig);
    client.on("error", () => undefined);
    this.open.add(client);
    // Raced, not only cut: a client ended while it connects never settles its connect() (pg's
    // Client ignores the close once end() was called), so the timer rejects on its own.
    let timer: NodeJS.Timeout | undefined;
    const connecting = client.connect();
    connecting.catch(() => undefined);
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(Object.assign(new Error(`no answer within ${timeoutMs} ms (timeout)`), { code: "ETIMEDOUT" }));
        destroy(client);
      }, timeoutMs);
    });
    try {
      await Promise.race([connecting, late]);
      return { client, result: { ok: true } };
    } catch (error) {
      this.release(client);
      const refusal = connectRefusal(error);
      if (refusal) return { result: { ok: false, reason: refusal.reason, refusal: refusal.reason, error } };
      return { result: { ok: false, reason: reasonOf(error), error } };
    } finally {
      clearTimeout(timer);
    }
  }

  /** Ends a side client (destroyed at once: nothing of it is worth waiting for). */
  release(client: pg.Client) {
    this.open.delete(client);
    destroy(client);
  }

  /** Runs `use` on a fresh side client, all of it within `timeoutMs`. */
  async with<T>(timeoutMs: number, use: (client: pg.Client) => Promise<T>): Promise<{ value?: T; result: ProbeResult }> {
    const { client, result } = await this.connect(timeoutMs);
    if (!client) return { result };
    const timer = setTimeout(() => this.release(client), timeoutMs);
    try {
      return { value: await use(client), result };
    } catch (error) {
      return { result: { ok: false, reason: reasonOf(error), error } };
    } finally {
      clearTimeout(timer);
      this.release(client);
    }
  }

  async probe(timeoutMs: number): Promise<ProbeResult> {
    const started = performance.now();
    const { value, result } = await this.with(timeoutMs, (c) => c.query("SELECT 1"));
    if (value !== undefined) return { ok: true };
    if (!result.ok && result.reason === "lost" && performance.now() - started >= timeoutMs - 5) return { ok: false, reason: "no answer", error: result.error };
    return result;
  }

  close() {
    this.closed = true;
    for (const c of this.open) destroy(c);
    this.open.clear();
  }
}

function destroy(client: pg.Client) {
  const stream = (client as any).connection?.stream;
  try {
    stream?.destroy();
  } catch {}
  client.end().catch(() => undefined);
}

/** Sorts a side connection's failure: "connection refused" and "no answer" are an outage (health.ts). */
function reasonOf(error: unknown): string {
  const e = error as any;
  const code = e?.code;
  if (code === "ECONNREFUSED" || code === "ENOENT") return "connection refused";
  if (code === "57P03") return "the database system is starting up";
  if (code === "53300") return "too many connections";
  if (code === "ETIMEDOUT" || /timeout/i.test(String(e?.message))) return "no answer";
  if (code === "ENOTFOUND" || code === "EHOSTUNREACH") return "connection refused";
  return "lost";
}
