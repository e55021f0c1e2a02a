// Server health for one adapter: notices an outage (a TCP probe is refused or unanswered after a
// lost connection), holds new calls at a gate instead of letting each wait out the pool's
// acquireTimeout, probes until the server listens again, and then hands out a fresh pool: every
// connection from before the outage is retired at once (a generation), and all waiting callers share
// that one reconnect.
import { connect as tcpConnect } from "node:net";
import { log } from "../log.ts";

export type HealthState = "up" | "down";

// Delays of the probes that follow one that found the server up after a lost connection.
const RECHECK_MS = [150, 350];

export interface StateChange {
  state: HealthState;
  /** Why it went down ("connection refused", "no answer") or came back ("server accepts connections"). */
  reason: string;
  /** For `up`: how long the server was down, in ms. */
  downForMs?: number;
  /** Pool generation now in use: it grows by one each time connections from before an outage are retired. */
  generation: number;
}

export interface ProbeTarget {
  host?: string;
  port?: number;
  socketPath?: string;
}

export interface HealthOptions {
  /** ms a call waits at the gate while the server is down before it fails (not sent) and is retried. */
  outageWait: number;
  /** ms between probes while the server is down. */
  probeInterval: number;
  /** ms a probe waits for the TCP connection. */
  probeTimeout: number;
  onStateChange?: (change: StateChange) => void;
}

/** A call held at the gate while the server is down: nothing was sent. */
export class ServerDownError extends Error {
  override readonly name = "ServerDownError";
  readonly code = "ECONNREFUSED";
  readonly fatal = true;
  constructor(readonly reason: string) {
    super(`the database server is down (${reason}); the statement was not sent`);
  }
}

type ProbeResult = { ok: true } | { ok: false; reason: string };

export function probe(target: ProbeTarget, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const socket = target.socketPath
      ? tcpConnect({ path: target.socketPath })
      : tcpConnect({ host: target.host ?? "localhost", port: target.port ?? 3306 });
    const done = (result: ProbeResult) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => done({ ok: false, reason: "no answer" }), timeoutMs);
    socket.once("connect", () => done({ ok: true }));
    socket.once("error", (e: NodeJS.ErrnoException) =>
      done({ ok: false, reason: e.code === "ECONNREFUSED" || e.code === "ENOENT" ? "connection refused" : (e.code ?? e.message) }),
    );
  });
}

export class ServerHealth {
  state: HealthState = "up";
  generation = 0;
  private target?: ProbeTarget;
  private downSince = 0;
  private downReason = "";
  private suspecting?: Promise<void>;
  private back?: Promise<void>;
  private closed = false;

  constructor(
    private readonly options: HealthOptions,
    /** Builds the next generation's pool once the server listens again. */
    private readonly reconnect: () => Promise<void>,
    /** Ends the current pool: its waiting callers are rejected at once instead of timing out. */
    private readonly retire: () => Promise<void>,
  ) {}

  /** Where to probe, learnt from the driver's connections (mariadb: `conn.opts`). */
  learnTarget(target: ProbeTarget | undefined) {
    if (!this.target && target && (target.socketPath || target.host)) this.target = target;
  }

  get canProbe(): boolean {
    return this.target !== undefined;
  }

  /**
   * After a lost connection or an unavailable server: is the server still there? One probe at a
   * time, shared by every caller that failed meanwhile.
   */
  suspect(): Promise<void> {
    if (!this.target || this.state === "down" || this.closed) return Promise.resolve();
    this.suspecting ??= probe(this.target, this.options.probeTimeout)
      .then((result) => {
        if (!result.ok) this.goDown(result.reason);
        // A killed server closes its connections and its listening socket in no set order: a probe
        // made the moment a connection dies can still be accepted. Look once more, a little later.
        else this.recheck();
      })
      .finally(() => {
        this.suspecting = undefined;
      });
    return this.suspecting;
  }

  private rechecking = false;
  private recheck() {
    if (this.rechecking || !this.target) return;
    this.rechecking = true;
    const again = async () => {
      for (const delay of RECHECK_MS) {
        await new Promise((r) => setTimeout(r, delay).unref());
        if (this.state === "down" || this.closed) return;
        const result = await probe(this.target!, this.options.probeTimeout);
        if (!result.ok) return this.goDown(result.reason);
      }
      log("probes after a lost connection: the server is up");
    };
    void again().finally(() => {
      this.rechecking = false;
    });
  }

  /** Resolves when the server is up (at once if it is); rejects with ServerDownError after outageWait. */
  gate(): Promise<void> {
    if (this.state === "up") return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new ServerDownError(this.downReason)), this.options.outageWait);
      this.back!.then(
        () => {
          clearTimeout(timer);
          resolve();
        },
        (e) => {
          clearTimeout(timer);
          reject(e);
        },
      );
    });
  }

  private goDown(reason: string) {
    if (this.state === "down" || this.closed) return;
    this.state = "down";
    this.downSince = performance.now();
    this.downReason = reason;
    log(`server down (${reason}): holding new calls, probing every ${this.options.probeInterval} ms`);
    this.emit({ state: "down", reason, generation: this.generation });
    void this.retire().catch((e) => log(`retiring the old pool failed: ${e?.message ?? e}`));
    this.back = this.probeUntilUp();
    this.back.catch(() => undefined);
  }

  private async probeUntilUp(): Promise<void> {
    for (;;) {
      if (this.closed) throw new ServerDownError("closed");
      const result = await probe(this.target!, this.options.probeTimeout);
      if (result.ok) {
        try {
          await this.reconnect();
          break;
        } catch (e: any) {
          log(`building a fresh pool failed (${e?.code ?? e?.message}); probing again`);
        }
      } else {
        this.downReason = result.reason;
      }
      await new Promise((r) => setTimeout(r, this.options.probeInterval));
    }
    this.generation++;
    this.state = "up";
    const downForMs = Math.round(performance.now() - this.downSince);
    log(`server back after ${downForMs} ms: generation ${this.generation}, fresh pool`);
    this.emit({ state: "up", reason: "server accepts connections", downForMs, generation: this.generation });
  }

  private emit(change: StateChange) {
    try {
      this.options.onStateChange?.(Object.freeze(change));
    } catch {
      // an observer's failure is not the database's
    }
  }

  close() {
    this.closed = true;
  }
}
