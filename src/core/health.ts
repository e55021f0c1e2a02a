// Server health for one adapter: notices an outage (a probe after a lost connection, or the
// watchdog's side connection, is refused or unanswered), holds new calls at a gate instead of letting
// each wait out the pool's acquireTimeout, probes until the server answers again, and then hands out
// a fresh pool: every connection from before the outage is retired at once (a generation), and all
// waiting callers share that one reconnect. A server that answers but refuses us (wrong password, no
// access, unknown database) is a refusal: calls fail at once with ConnectFailedError, never retried.
import { ConnectFailedError, type ConnectFailure } from "./errors.ts";
import { describeError, log } from "./log.ts";
import type { HealthState, StateChange } from "./state.ts";
import { recordOutageWait, recordStateChange, type DbSystem } from "./telemetry.ts";

export type { HealthState, StateChange } from "./state.ts";

// Delays of the probes that follow one that found the server up after a lost connection.
const RECHECK_MS = [150, 350];
// While refused, a call checks again (one probe, shared) at most this often.
const REFUSAL_RECHECK_MS = 1000;
// A probe that got no answer is given more time next time (a probeTimeout below a round trip must
// not keep the server "down" while it answers), up to this many times probeTimeout.
const PROBE_GROWTH = 1.5;
const PROBE_MAX_FACTOR = 8;
// A side connection's failures that are an outage by themselves (see SideConnections.probe).
const OUTAGE_REASONS = new Set(["connection refused", "no answer"]);

export interface HealthOptions {
  /** ms a call waits at the gate while the server is down before it fails (not sent) and is retried. */
  outageWait: number;
  /** ms between probes while the server is down. */
  probeInterval: number;
  /** ms a probe waits for an answer. */
  probeTimeout: number;
  onStateChange?: (change: StateChange) => void;
}

/** What one attempt to connect found. */
export type ProbeResult =
  | { ok: true }
  | { ok: false; reason: string; /** The server answered and refused us: never retried. */ refusal?: ConnectFailure; error?: unknown };

/** What reaches the server for a probe: the adapter's side connections (src/adapter/side.ts). */
export interface Prober {
  readonly canConnect: boolean;
  probe(timeoutMs: number): Promise<ProbeResult>;
  close(): void;
}

export interface HealthHooks {
  /** The server is down: destroy connections with calls in flight, retire the pool if a fresh one can be built. */
  onDown(): void;
  /** The server refuses us: retire the pool (if ours) so that callers waiting in it fail now. */
  onRefused(): void;
  /** The server answers again: build the next generation's pool (or keep the existing one when none can be built). */
  reconnect(): Promise<void>;
  /** The connection string, password as ****. */
  url(): string;
  /** The server's flavour, once a connection told it (for telemetry). */
  system?(): DbSystem | undefined;
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

export class ServerHealth<S extends Prober = Prober> {
  state: HealthState = "up";
  generation = 0;
  /** Set while the server refuses us: what every call fails with. */
  refusal?: ConnectFailedError;
  private downSince = 0;
  /** When the server was last found down (not refusing): -Infinity until then. */
  lastOutageAt = -Infinity;
  private downReason = "";
  private suspecting?: Promise<void>;
  private back?: Promise<void>;
  private refusalCheck?: Promise<void>;
  private refusalCheckedAt = 0;
  private closed = false;
  private rechecking = false;
  private readonly sleeps = new Set<{ timer: NodeJS.Timeout; wake: () => void }>();

  constructor(
    private readonly options: HealthOptions,
    readonly side: S,
    private readonly hooks: HealthHooks,
  ) {}

  get canProbe(): boolean {
    return this.side.canConnect;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * After a lost connection or an unavailable server: is the server still there? One probe at a
   * time, shared by every caller that failed meanwhile.
   */
  suspect(): Promise<void> {
    if (!this.canProbe || this.state === "down" || this.closed) return Promise.resolve();
    this.suspecting ??= this.side
      .probe(this.options.probeTimeout)
      .then((result) => {
        // A killed server closes its connections and its listening socket in no set order: a probe
        // made the moment a connection dies can still be accepted. Look once more, a little later.
        if (result.ok) this.recheck();
        else this.act(result);
      })
      .finally(() => {
        this.suspecting = undefined;
      });
    return this.suspecting;
  }

  /**
   * Acts on one side connection's failure: a refusal, or an outage when it was refused or got no
   * answer. A connection lost half-way (the server accepted it: a KILL, a reset) says nothing on its
   * own: a probe decides, as after a lost connection (it tries twice).
   */
  judge(result: ProbeResult) {
    if (result.ok) return;
    if (result.refusal || OUTAGE_REASONS.has(result.reason)) this.act(result);
    else void this.suspect();
  }

  /** A failed probe: a refusal (the server answered about this account), or an outage. */
  private act(result: ProbeResult & { ok: false }) {
    if (result.refusal) this.refuse(result.refusal, result.error);
    else this.goDown(result.reason);
  }

  private recheck() {
    if (this.rechecking) return;
    this.rechecking = true;
    const again = async () => {
      for (const delay of RECHECK_MS) {
        await this.sleep(delay * (0.75 + Math.random() / 2));
        if (this.state === "down" || this.closed) return;
        const result = await this.side.probe(this.options.probeTimeout);
        if (!result.ok) return this.act(result);
      }
      log("probes after a lost connection: the server is up");
    };
    void again().finally(() => {
      this.rechecking = false;
    });
  }

  /** The server answered and refused us (wrong password, no access, unknown database). */
  refuse(reason: ConnectFailure, cause: unknown) {
    if (this.closed) return;
    const first = this.refusal === undefined;
    this.refusal = new ConnectFailedError(reason, this.hooks.url(), { cause });
    this.refusalCheckedAt = performance.now();
    if (!first) return;
    const wasUp = this.state === "up";
    this.state = "down";
    this.downSince = performance.now();
    this.downReason = this.refusal.reason;
    log(`the server refuses this app's connections (${reason}): calls fail at once, not retried`);
    if (wasUp) this.emit({ state: "down", reason: describeRefusal(reason), generation: this.generation });
    this.hooks.onRefused();
  }

  /**
   * Resolves when the server is up (at once if it is); rejects with ServerDownError after outageWait,
   * or with ConnectFailedError while the server refuses us.
   */
  gate(): Promise<void> {
    if (this.closed) return Promise.reject(new ServerDownError("closed"));
    if (this.refusal) return this.checkRefusal();
    if (this.state === "up") return Promise.resolve();
    if (!this.back) return Promise.reject(new ServerDownError(this.downReason));
    const held = new Promise<void>((resolve, reject) => {
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
    return recordOutageWait(held, this.hooks.system?.());
  }

  /** While refused: fail at once, except that a call now and then checks again (one probe, shared). */
  private checkRefusal(): Promise<void> {
    if (!this.refusalCheck && performance.now() - this.refusalCheckedAt < REFUSAL_RECHECK_MS) return Promise.reject(this.refusal);
    this.refusalCheck ??= (async () => {
      const result = await this.side.probe(this.options.probeTimeout);
      this.refusalCheckedAt = performance.now();
      if (this.closed) throw new ServerDownError("closed");
      if (!result.ok && result.refusal) {
        this.refusal = new ConnectFailedError(result.refusal, this.hooks.url(), { cause: result.error });
        throw this.refusal;
      }
      this.refusal = undefined;
      if (result.ok) {
        try {
          await this.comeBack();
          return;
        } catch (e) {
          if (this.closed) throw e;
          log(`building a fresh pool failed (${describeError(e)}); probing again`);
          this.state = "up";
          this.goDown("reconnecting");
          return this.gate();
        }
      }
      // No longer refused, but not there: an outage.
      this.state = "up";
      this.goDown(result.reason);
      return this.gate();
    })().finally(() => {
      this.refusalCheck = undefined;
    });
    return this.refusalCheck;
  }

  goDown(reason: string) {
    if (this.state === "down" || this.closed) return;
    this.state = "down";
    this.downSince = performance.now();
    this.lastOutageAt = this.downSince;
    this.downReason = reason;
    log(`server down (${reason}): holding new calls, probing every ${this.options.probeInterval} ms`);
    this.emit({ state: "down", reason, generation: this.generation });
    try {
      this.hooks.onDown();
    } catch (e) {
      log(`retiring the old pool failed (${describeError(e)})`);
    }
    this.back = this.probeUntilUp();
    this.back.catch(() => undefined);
  }

  private async probeUntilUp(): Promise<void> {
    let timeout = this.options.probeTimeout;
    for (;;) {
      if (this.closed) throw new ServerDownError("closed");
      const result = await this.side.probe(timeout);
      if (this.closed) throw new ServerDownError("closed");
      if (!result.ok && result.refusal) {
        // It answers again, but refuses us: held callers learn that at the gate.
        this.refusal = new ConnectFailedError(result.refusal, this.hooks.url(), { cause: result.error });
        this.refusalCheckedAt = performance.now();
        return;
      }
      if (result.ok) {
        try {
          await this.comeBack();
          return;
        } catch (e) {
          if (this.closed) throw new ServerDownError("closed");
          log(`building a fresh pool failed (${describeError(e)}); probing again`);
        }
      } else {
        this.downReason = result.reason;
        if (result.reason === "no answer") timeout = Math.min(timeout * PROBE_GROWTH, this.options.probeTimeout * PROBE_MAX_FACTOR);
      }
      // Jitter: several app instances probing one server do not move in step.
      await this.sleep(this.options.probeInterval * (0.75 + Math.random() / 2));
    }
  }

  private async comeBack() {
    await this.hooks.reconnect();
    if (this.closed) throw new ServerDownError("closed");
    this.generation++;
    this.state = "up";
    const downForMs = Math.round(performance.now() - this.downSince);
    log(`server back after ${downForMs} ms: generation ${this.generation}, fresh pool`);
    this.emit({ state: "up", reason: "server accepts connections", downForMs, generation: this.generation });
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const entry = {
        timer: setTimeout(() => {
          this.sleeps.delete(entry);
          resolve();
        }, ms),
        wake: resolve,
      };
      this.sleeps.add(entry);
    });
  }

  private emit(change: StateChange) {
    try {
      this.options.onStateChange?.(Object.freeze(change));
    } catch {
      // an observer's failure is not the database's
    }
    recordStateChange(change, this.hooks.system?.());
  }

  /** Stops probing and wakes every wait; held callers fail unsent. Leaves no timer behind. */
  close() {
    this.closed = true;
    for (const s of this.sleeps) {
      clearTimeout(s.timer);
      s.wake();
    }
    this.sleeps.clear();
    this.side.close();
  }
}

function describeRefusal(reason: ConnectFailure): string {
  return reason === "auth" ? "authentication failed" : reason === "access" ? "access denied" : reason === "unknown-database" ? "unknown database" : reason;
}
