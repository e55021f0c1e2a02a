// A TCP proxy on loopback between the app and the server, to inject network faults the server
// cannot: resets (RST), silent drops (no FIN, no RST: bytes just stop arriving, as behind a NAT
// that forgot the flow), added latency, a slow uplink, and "lose the reply to a COMMIT".
import { randomBytes } from "node:crypto";
import { createServer, connect, type Server, type Socket } from "node:net";

export type ProxyMode = "pass" | "drop";

interface Link {
  id: number;
  client: Socket;
  upstream: Socket;
  /** A dropped link discards everything in both directions and never closes by itself. */
  dropped: boolean;
  /** The server side is gone but the client was not told: its next packet gets an RST. */
  stale: boolean;
  /** While set, the server's bytes to the client wait here (holdReplyTo), in order. */
  held?: Buffer[];
  /** The server closed while bytes were held: the client is told after them. */
  heldEnd?: boolean;
  /** Set by delayPgMessage: the server's next bytes are split before the first message of this type. */
  splitPg?: { type: number; ms: number; done: () => void };
  /** Set by crashAfterPgStartup/crashAfterPgReplyTo: the server's next ReadyForQuery on this link is followed by a FATAL. */
  crashAfterReady?: () => void;
  /** Set by garbleNextReply: the server's next chunk on this link gets a byte flipped. */
  garble?: () => void;
  /** The server's chunks gathered before the garbled one goes out. */
  garbled?: Buffer[];
  /** While set, the client's bytes to the server wait here (holdFrom), in order. */
  heldUp?: Buffer[];
  /** Client bytes waiting for the throttle (throttleUp), in order, and the timer that forwards them. */
  upQueue?: Buffer[];
  upQueued?: number;
  upTimer?: NodeJS.Timeout;
}

// The throttle forwards a slice every THROTTLE_TICK_MS and stops reading from the client while this
// much waits (TCP backpressure, as on a slow link).
const THROTTLE_TICK_MS = 10;
const THROTTLE_QUEUE_MAX = 64 * 1024;
// How long garbleNextReply gathers the server's replies before it garbles the last byte.
const GARBLE_GATHER_MS = 100;

export class FaultProxy {
  readonly host = "127.0.0.1";
  port = 0;
  mode: ProxyMode = "pass";
  /** Delay added to every chunk, in ms, in both directions. */
  delayMs = 0;
  /**
   * Client-to-server bandwidth in bytes/s (0: unlimited), for links opened from now on: a slow
   * uplink, so that the server reads a large statement bit by bit.
   */
  throttleUp = 0;
  private server: Server;
  private links = new Set<Link>();
  private nextId = 1;
  private clientDataTaps: Array<(link: Link, chunk: Buffer) => boolean> = [];
  private crashNextStartup?: () => void;
  private crashTaps = new Set<(link: Link, chunk: Buffer) => boolean>();
  /** How many client connections the proxy has accepted. */
  accepted = 0;
  /**
   * Hide the server's FIN from the client: when the server closes a connection (KILL,
   * wait_timeout), the client is not told until it next sends something, which then gets an RST.
   * This is what a client sees when the close raced its next query, or when a middlebox forgot the
   * flow: its query fails with ECONNRESET/EPIPE instead of the pool quietly replacing the connection.
   */
  hideServerClose = false;
  /** Where the n-th accepted connection (from 1) goes; default the target. A load balancer in miniature. */
  route?: (n: number) => { host: string; port: number };

  constructor(
    readonly targetHost: string,
    readonly targetPort: number,
  ) {
    this.server = createServer((client) => this.accept(client));
  }

  async listen(): Promise<this> {
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(0, this.host, () => resolve());
    });
    this.port = (this.server.address() as { port: number }).port;
    return this;
  }

  /** A URL like `base`, but through this proxy. */
  urlFor(base: string): string {
    const u = new URL(base);
    u.hostname = this.host;
    u.port = String(this.port);
    return u.toString();
  }

  get openLinks(): number {
    return [...this.links].filter((l) => !l.dropped).length;
  }

  /** Links whose client is still connected and whose server side is still there. */
  get liveLinks(): number {
    return [...this.links].filter((l) => !l.dropped && !l.stale && !l.client.readableEnded && !l.client.destroyed).length;
  }

  private accept(client: Socket) {
    this.accepted++;
    client.setNoDelay(true);
    const target = this.route?.(this.accepted) ?? { host: this.targetHost, port: this.targetPort };
    const upstream = connect(target);
    upstream.setNoDelay(true);
    const link: Link = { id: this.nextId++, client, upstream, dropped: this.mode === "drop", stale: false };
    this.links.add(link);
    link.crashAfterReady = this.crashNextStartup;
    this.crashNextStartup = undefined;
    const rate = this.throttleUp;
    const send = (to: Socket, chunk: Buffer) => {
      if (this.delayMs > 0) setTimeout(() => !link.dropped && !to.destroyed && to.write(chunk), this.delayMs);
      else if (!to.destroyed) to.write(chunk);
    };
    const throttled = (chunk: Buffer) => {
      (link.upQueue ??= []).push(chunk);
      link.upQueued = (link.upQueued ?? 0) + chunk.length;
      if (link.upQueued > THROTTLE_QUEUE_MAX) client.pause();
      link.upTimer ??= setInterval(() => {
        let budget = Math.max(1, Math.round((rate * THROTTLE_TICK_MS) / 1000));
        const queue = link.upQueue!;
        while (budget > 0 && queue.length > 0 && !link.dropped) {
          const head = queue[0];
          const n = Math.min(budget, head.length);
          send(upstream, head.subarray(0, n));
          budget -= n;
          link.upQueued! -= n;
          if (n === head.length) queue.shift();
          else queue[0] = head.subarray(n);
        }
        if (link.upQueued! <= THROTTLE_QUEUE_MAX) client.resume();
        if (queue.length === 0 || link.dropped) {
          clearInterval(link.upTimer);
          link.upTimer = undefined;
        }
      }, THROTTLE_TICK_MS);
    };
    const forward = (from: Socket, to: Socket, fromClient: boolean) => {
      from.on("data", (chunk: Buffer) => {
        if (link.dropped) return;
        if (fromClient && link.stale) {
          this.links.delete(link);
          client.resetAndDestroy();
          return;
        }
        if (fromClient) for (const tap of this.clientDataTaps) if (tap(link, chunk)) return;
        if (fromClient && link.heldUp) {
          link.heldUp.push(chunk);
          return;
        }
        if (!fromClient && link.garble) {
          // Gathered for a moment, so that the replies to pipelined commands (PREPARE + EXECUTE,
          // mark + COMMIT) are all in: the last one's record is garbled, the server has run them all.
          const gathered = (link.garbled ??= []);
          gathered.push(chunk);
          if (gathered.length === 1) {
            setTimeout(() => {
              const all = Buffer.concat(gathered);
              all[all.length - 1] ^= 0xff;
              const done = link.garble!;
              link.garble = undefined;
              link.garbled = undefined;
              if (!link.dropped && !to.destroyed) to.write(all);
              done();
            }, GARBLE_GATHER_MS);
          }
          return;
        }
        if (!fromClient && link.held) {
          link.held.push(chunk);
          return;
        }
        if (!fromClient && link.splitPg && this.splitPgReply(link, chunk)) return;
        if (!fromClient && link.crashAfterReady && this.crashAfterReady(link, chunk)) return;
        if (fromClient && rate > 0) throttled(chunk);
        else send(to, chunk);
      });
      from.on("end", () => {
        if (link.dropped) return;
        if (!fromClient && link.held) {
          link.heldEnd = true;
          return;
        }
        if (!fromClient && this.hideServerClose) link.stale = true;
        else to.end();
      });
      from.on("close", () => {
        // Whatever still waits for the throttle goes nowhere (the client is gone, or the server).
        clearInterval(link.upTimer);
        if (link.dropped || link.stale) return;
        // Held bytes first: release() ends the client after them (and then nothing is destroyed here).
        if (!fromClient && (link.held || link.heldEnd)) {
          link.heldEnd = true;
          return;
        }
        // The server went away (FIN or RST): hidden from the client until it next writes.
        if (!fromClient && this.hideServerClose) {
          link.stale = true;
          return;
        }
        to.destroy();
        this.links.delete(link);
      });
      from.on("error", () => undefined);
    };
    forward(client, upstream, true);
    forward(upstream, client, false);
  }

  /** Marks every open connection stale: the server side stays, but the client's next packet gets an RST. */
  staleAll(): number {
    let n = 0;
    for (const link of this.links) {
      if (link.dropped || link.stale) continue;
      link.stale = true;
      link.upstream.destroy();
      n++;
    }
    return n;
  }

  /** Sends an RST to every client and closes the server side: the app sees ECONNRESET. */
  resetAll(): number {
    let n = 0;
    for (const link of this.links) {
      if (link.dropped) continue;
      n++;
      link.client.resetAndDestroy();
      link.upstream.destroy();
      this.links.delete(link);
    }
    return n;
  }

  /**
   * Silently drops every open connection: nothing more is forwarded in either direction and
   * neither side gets a FIN or RST. With `mode = "drop"`, new connections are black-holed too.
   */
  dropAll(): number {
    let n = 0;
    for (const link of this.links) {
      if (!link.dropped) n++;
      link.dropped = true;
    }
    return n;
  }

  /**
   * Lets the next client packet that contains `marker` (e.g. "COMMIT") through to the server, then
   * resets the client's connection before any reply can come back. The statement reaches the server;
   * the app never learns its outcome. `hold`: runs first (its reply is discarded meanwhile), e.g. to
   * kill the server before the app hears of the lost connection.
   */
  loseReplyTo(marker: string, hold?: () => Promise<void>): Promise<void> {
    return this.tapOnce(marker, hold, (link, chunk) => {
      link.upstream.write(chunk);
      // Let the server read the statement before its side closes.
      setTimeout(() => link.upstream.end(), 200);
    });
  }

  /**
   * Swallows the next client packet that contains `marker`: it never reaches the server. The
   * client's connection is reset and the server's side closed, so the server rolls back whatever
   * that connection had open. `hold`: as in loseReplyTo.
   */
  swallow(marker: string, hold?: () => Promise<void>): Promise<void> {
    return this.tapOnce(marker, hold, (link) => link.upstream.destroy());
  }

  /** Counts, from now until `stop()`, the client chunks that contain `marker` (they go on unchanged). */
  countClient(marker: string): { count: () => number; stop: () => void } {
    const needle = Buffer.from(marker);
    let n = 0;
    const tap = (_link: Link, chunk: Buffer) => {
      if (chunk.includes(needle)) n++;
      return false;
    };
    this.clientDataTaps.push(tap);
    return { count: () => n, stop: () => (this.clientDataTaps = this.clientDataTaps.filter((t) => t !== tap)) };
  }

  /**
   * Rewrites, in the next client chunk where it occurs, the first `find` that `accept` takes (given
   * the bytes after it), into `replace` (as long as `find`): the server receives a different command,
   * and answers it. Resolves once the rewrite was made.
   */
  rewriteOnce(find: Buffer, replace: Buffer, accept: (after: Buffer) => boolean = () => true): Promise<void> {
    if (find.length !== replace.length) throw new Error("rewriteOnce: replace must be as long as find");
    return new Promise((resolve) => {
      const tap = (_link: Link, chunk: Buffer) => {
        for (let at = chunk.indexOf(find); at >= 0; at = chunk.indexOf(find, at + 1)) {
          if (!accept(chunk.subarray(at + find.length))) continue;
          replace.copy(chunk, at);
          this.clientDataTaps = this.clientDataTaps.filter((t) => t !== tap);
          resolve();
          break;
        }
        return false; // the chunk goes on, rewritten, through the other taps
      };
      this.clientDataTaps.push(tap);
    });
  }

  /**
   * Passes the next client packet that contains `marker` to the server, and holds everything the
   * server sends back on that connection (a slow network) until `release()`. `seen` resolves when
   * the packet passed. Nothing is lost: the held bytes follow in order, then the server's close if it
   * came meanwhile. Holds on one connection share its buffer: the first release lets all through.
   */
  holdReplyTo(marker: string): { seen: Promise<void>; release: () => void } {
    const needle = Buffer.from(marker);
    let held: Link | undefined;
    let released = false;
    let markSeen!: () => void;
    const seen = new Promise<void>((resolve) => (markSeen = resolve));
    const tap = (link: Link, chunk: Buffer) => {
      if (!chunk.includes(needle)) return false;
      this.clientDataTaps = this.clientDataTaps.filter((t) => t !== tap);
      if (!released) {
        held = link;
        link.held ??= [];
      }
      markSeen();
      return false; // the packet itself goes on as usual
    };
    this.clientDataTaps.push(tap);
    return {
      seen,
      release: () => {
        released = true;
        this.clientDataTaps = this.clientDataTaps.filter((t) => t !== tap);
        const link = held;
        if (!link?.held) return;
        const chunks = link.held;
        link.held = undefined;
        for (const c of chunks) if (!link.dropped && !link.client.destroyed) link.client.write(c);
        if (link.heldEnd && !link.dropped) {
          link.client.end();
          this.links.delete(link);
        }
      },
    };
  }

  /**
   * Holds the client's bytes from the MySQL packet that contains `marker` on: the packets before it
   * in the same chunk (pipelined commands) go to the server, that one and everything after wait
   * until `release()`. `seen` resolves when the packet was held. E.g. a mark goes through and its
   * COMMIT waits, while another node aborts the transaction.
   */
  holdFrom(marker: string): { seen: Promise<void>; release: () => void } {
    const needle = Buffer.from(marker);
    let held: Link | undefined;
    let markSeen!: () => void;
    const seen = new Promise<void>((resolve) => (markSeen = resolve));
    const tap = (link: Link, chunk: Buffer) => {
      if (!chunk.includes(needle)) return false;
      this.clientDataTaps = this.clientDataTaps.filter((t) => t !== tap);
      // Packets: a 3-byte length and a sequence number, then the payload.
      let start = 0;
      for (let pos = 0; pos + 4 <= chunk.length; ) {
        const end = pos + 4 + chunk.readUIntLE(pos, 3);
        if (chunk.subarray(pos + 4, end).includes(needle)) {
          start = pos;
          break;
        }
        pos = end;
      }
      if (start > 0) link.upstream.write(chunk.subarray(0, start));
      link.heldUp = [chunk.subarray(start)];
      held = link;
      markSeen();
      return true;
    };
    this.clientDataTaps.push(tap);
    return {
      seen,
      release: () => {
        this.clientDataTaps = this.clientDataTaps.filter((t) => t !== tap);
        const chunks = held?.heldUp;
        if (!held || !chunks) return;
        held.heldUp = undefined;
        for (const c of chunks) if (!held.dropped && !held.upstream.destroyed) held.upstream.write(c);
      },
    };
  }

  /**
   * PostgreSQL: in the reply to the next client packet that contains `marker`, the messages before
   * the first one of `type` (e.g. "Z", ReadyForQuery) go at once and the rest follow `ms` later, in
   * order (a reply split across two TCP segments on a slow link). Resolves once the rest went out.
   */
  delayPgMessage(marker: string, type: string, ms: number): Promise<void> {
    const needle = Buffer.from(marker);
    return new Promise((resolve) => {
      const tap = (link: Link, chunk: Buffer) => {
        if (!chunk.includes(needle)) return false;
        this.clientDataTaps = this.clientDataTaps.filter((t) => t !== tap);
        link.splitPg = { type: type.charCodeAt(0), ms, done: resolve };
        return false;
      };
      this.clientDataTaps.push(tap);
    });
  }

  /** Splits a server chunk as delayPgMessage asked; false when the message is not in it (sent as usual). */
  private splitPgReply(link: Link, chunk: Buffer): boolean {
    const split = link.splitPg!;
    // Messages: a type byte, then a 4-byte length that counts itself and the body.
    let at = -1;
    for (let pos = 0; pos + 5 <= chunk.length; pos += 1 + chunk.readUInt32BE(pos + 1)) {
      if (chunk[pos] === split.type) {
        at = pos;
        break;
      }
    }
    if (at < 0) return false;
    link.splitPg = undefined;
    if (at > 0) link.client.write(chunk.subarray(0, at));
    link.held = [chunk.subarray(at)];
    setTimeout(() => {
      const chunks = link.held ?? [];
      link.held = undefined;
      for (const c of chunks) if (!link.dropped && !link.client.destroyed) link.client.write(c);
      if (link.heldEnd && !link.dropped) {
        link.client.end();
        this.links.delete(link);
      }
      split.done();
    }, split.ms);
    return true;
  }

  /**
   * The next connection's start-up ends as a crash of the server can end it: the server's
   * ReadyForQuery and, in the same chunk, the FATAL a backend sends when it finds its postmaster gone
   * (57P01 "terminating connection due to unexpected postmaster exit", from secure_read while it
   * waits for the first query); then the connection closes. Resolves once that went out.
   */
  crashAfterPgStartup(): Promise<void> {
    if (this.crashNextStartup) throw new Error("crashAfterPgStartup: one is armed already");
    return new Promise((resolve) => (this.crashNextStartup = resolve));
  }
  /**
   * The same FATAL, on the connection that next sends `marker`: right behind the ReadyForQuery that
   * ends the server's reply to it, in the same chunk. The pool hands that client over inside that
   * read (a caller waiting for it gets it before the FATAL is parsed).
   */
  crashAfterPgReplyTo(marker: string): Promise<void> {
    const needle = Buffer.from(marker);
    return new Promise((resolve) => {
      const tap = (link: Link, chunk: Buffer) => {
        if (!chunk.includes(needle)) return false;
        this.clientDataTaps = this.clientDataTaps.filter((t) => t !== tap);
        this.crashTaps.delete(tap);
        link.crashAfterReady = resolve;
        return false;
      };
      this.crashTaps.add(tap);
      this.clientDataTaps.push(tap);
    });
  }

  /** Disarms the crashes no connection took (crashAfterPgStartup, crashAfterPgReplyTo: their promises never resolve). */
  disarmPgCrashes() {
    this.crashNextStartup = undefined;
    this.clientDataTaps = this.clientDataTaps.filter((t) => !this.crashTaps.has(t));
    this.crashTaps.clear();
  }

  /** Sends a chunk as crashAfterPgStartup asked; false when it holds no ReadyForQuery (sent as usual). */
  private crashAfterReady(link: Link, chunk: Buffer): boolean {
    let end = -1;
    for (let pos = 0; pos + 5 <= chunk.length; pos += 1 + chunk.readUInt32BE(pos + 1)) {
      if (chunk[pos] === 0x5a /* Z */) {
        end = pos + 1 + chunk.readUInt32BE(pos + 1);
        break;
      }
    }
    if (end < 0) return false;
    const done = link.crashAfterReady!;
    link.crashAfterReady = undefined;
    // Split across chunks: the link goes on as usual, and the crash never comes.
    if (end > chunk.length) return false;
    const fields = ["SFATAL", "VFATAL", "C57P01", "Mterminating connection due to unexpected postmaster exit", "Fbe-secure.c", "L207", "Rsecure_read"];
    const body = Buffer.concat([...fields.map((f) => Buffer.from(`${f}\0`)), Buffer.from([0])]);
    const head = Buffer.alloc(5);
    head[0] = 0x45; // E
    head.writeUInt32BE(4 + body.length, 1);
    link.dropped = true;
    this.links.delete(link);
    link.upstream.destroy();
    link.client.end(Buffer.concat([chunk.subarray(0, end), head, body]));
    done();
    return true;
  }

  /**
   * Garbles the reply to the next bytes any client sends (made for TLS: the record fails its
   * integrity check, and the driver gets an ERR_SSL_* error, not a lost connection). `deliver`:
   * those bytes reach the server and the last byte of what it sends back within 100 ms is flipped
   * (every command of the flight ran, a COMMIT committed, the last reply is garbage); otherwise they are swallowed, the server's side is closed and
   * the client gets a record of random bytes. Resolves once the garbage went out.
   */
  garbleNextReply(deliver: boolean): Promise<void> {
    return new Promise((resolve) => {
      const tap = (link: Link) => {
        this.clientDataTaps = this.clientDataTaps.filter((t) => t !== tap);
        if (deliver) {
          link.garble = resolve;
          return false;
        }
        link.upstream.destroy();
        link.dropped = true;
        this.links.delete(link);
        // A TLS application-data record (type 23, version 3.3) holding 48 random bytes.
        const garbage = Buffer.concat([Buffer.from([0x17, 0x03, 0x03, 0x00, 0x30]), randomBytes(48)]);
        if (!link.client.destroyed) link.client.write(garbage);
        setTimeout(() => link.client.destroy(), 2000).unref();
        resolve();
        return true;
      };
      this.clientDataTaps.push(tap);
    });
  }

  /** The next client packet containing `marker` goes to `upstream`'s care; the client is reset (after `hold`). */
  private tapOnce(marker: string, hold: (() => Promise<void>) | undefined, upstream: (link: Link, chunk: Buffer) => void): Promise<void> {
    const needle = Buffer.from(marker);
    return new Promise((resolve, reject) => {
      const tap = (link: Link, chunk: Buffer) => {
        if (!chunk.includes(needle)) return false;
        this.clientDataTaps = this.clientDataTaps.filter((t) => t !== tap);
        link.dropped = true;
        upstream(link, chunk);
        this.links.delete(link);
        const reset = () => {
          link.client.resetAndDestroy();
          resolve();
        };
        if (!hold) reset();
        else
          hold().then(reset, (e) => {
            link.client.resetAndDestroy();
            reject(e);
          });
        return true;
      };
      this.clientDataTaps.push(tap);
    });
  }

  /** Destroys everything, including black-holed links. */
  async close() {
    for (const link of this.links) {
      clearInterval(link.upTimer);
      link.client.destroy();
      link.upstream.destroy();
    }
    this.links.clear();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

export async function startProxy(targetHost: string, targetPort: number): Promise<FaultProxy> {
  return await new FaultProxy(targetHost, targetPort).listen();
}
