// A loopback TCP proxy for the bench: a precise added latency per direction, and exact counts of
// what the client sends. test/support/proxy.ts delays with setTimeout, whose floor is 1 ms (Node
// rounds 0.5 up), so the 0.5 ms case needs its own clock; and counting needs a MySQL packet parser.
//
// Counted per link, from the client's side of the wire:
// - round trips: replies the client waited for, i.e. server bytes delivered after the client sent
//   something since the previous reply (pipelined commands share one; a COM_STMT_CLOSE, which gets
//   no reply, rides with the next command instead of counting alone);
// - commands: MySQL packets with sequence number 0 (each one command: COM_QUERY, COM_STMT_EXECUTE,
//   COM_PING, …), by type.
import { createServer, connect, type Server, type Socket } from "node:net";

const COMMANDS: Record<number, string> = {
  0x01: "QUIT",
  0x03: "QUERY",
  0x0e: "PING",
  0x11: "CHANGE_USER",
  0x16: "PREPARE",
  0x17: "EXECUTE",
  0x19: "CLOSE_STMT",
  0x1a: "RESET_STMT",
  0x1b: "SET_OPTION",
  0x1f: "RESET_CONNECTION",
  0xfa: "BULK_EXECUTE",
};

export interface WireCounts {
  roundTrips: number;
  commands: number;
  byType: Record<string, number>;
  connections: number;
}

interface Pending {
  due: bigint;
  chunk: Buffer;
}

interface Link {
  client: Socket;
  upstream: Socket;
  up: Pending[];
  down: Pending[];
  /** The client sent bytes since the last server bytes it was delivered. */
  sent: boolean;
  acc: Buffer;
  accDown: Buffer;
  /** SQL of prepares not yet answered, and the statement ids the server gave, for traces. */
  prepares: string[];
  statements: Map<number, string>;
}

export class WireProxy {
  port = 0;
  /** Added to every chunk, each direction, in ms (0: forwarded at once). */
  latencyMs: number;
  private server: Server;
  private links = new Set<Link>();
  private counts: WireCounts = { roundTrips: 0, commands: 0, byType: {}, connections: 0 };
  private pumping = false;
  /** While set, the commands of each client burst are recorded (a trace of one operation). */
  private trace?: string[][];

  constructor(
    readonly targetHost: string,
    readonly targetPort: number,
    latencyMs = 0,
  ) {
    this.latencyMs = latencyMs;
    this.server = createServer((client) => this.accept(client));
  }

  async listen(): Promise<this> {
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(0, "127.0.0.1", () => resolve());
    });
    this.port = (this.server.address() as { port: number }).port;
    return this;
  }

  urlFor(base: string): string {
    const u = new URL(base);
    u.hostname = "127.0.0.1";
    u.port = String(this.port);
    return u.toString();
  }

  snapshot(): WireCounts {
    return { ...this.counts, byType: { ...this.counts.byType } };
  }

  startTrace() {
    for (const link of this.links) link.accDown = Buffer.alloc(0);
    this.trace = [];
  }

  stopTrace(): string[][] {
    const t = this.trace ?? [];
    this.trace = undefined;
    return t;
  }

  private accept(client: Socket) {
    this.counts.connections++;
    client.setNoDelay(true);
    const upstream = connect({ host: this.targetHost, port: this.targetPort });
    upstream.setNoDelay(true);
    const link: Link = {
      client,
      upstream,
      up: [],
      down: [],
      sent: false,
      acc: Buffer.alloc(0),
      accDown: Buffer.alloc(0),
      prepares: [],
      statements: new Map(),
    };
    this.links.add(link);
    client.on("data", (chunk: Buffer) => {
      // A new burst of commands in the trace: the first since the trace began, or after a reply.
      if (this.trace && (!link.sent || this.trace.length === 0)) this.trace.push([]);
      link.sent = true;
      this.parseUp(link, chunk);
      this.queue(link, link.up, upstream, chunk);
    });
    upstream.on("data", (chunk: Buffer) => this.queue(link, link.down, client, chunk));
    const close = () => {
      this.links.delete(link);
      client.destroy();
      upstream.destroy();
    };
    client.on("close", close);
    upstream.on("close", close);
    client.on("error", () => undefined);
    upstream.on("error", () => undefined);
  }

  private queue(link: Link, q: Pending[], to: Socket, chunk: Buffer) {
    if (this.latencyMs <= 0 && q.length === 0) return this.deliver(link, to, chunk);
    q.push({ due: process.hrtime.bigint() + BigInt(Math.round(this.latencyMs * 1e6)), chunk });
    if (!this.pumping) {
      this.pumping = true;
      setImmediate(() => this.pump());
    }
  }

  private deliver(link: Link, to: Socket, chunk: Buffer) {
    if (to.destroyed) return;
    to.write(chunk);
    if (to === link.client) {
      if (link.sent) this.counts.roundTrips++;
      link.sent = false;
      if (this.trace) this.parseDown(link, chunk);
    }
  }

  /**
   * Forwards what is due. Below a timer's resolution it polls with setImmediate (I/O is still
   * served between polls), so a 0.5 ms latency costs this process CPU while bytes are in flight.
   */
  private pump() {
    const now = process.hrtime.bigint();
    let next: bigint | undefined;
    for (const link of this.links) {
      for (const [q, to] of [[link.up, link.upstream], [link.down, link.client]] as const) {
        while (q.length > 0 && q[0].due <= now) this.deliver(link, to, q.shift()!.chunk);
        if (q.length > 0 && (next === undefined || q[0].due < next)) next = q[0].due;
      }
    }
    if (next === undefined) {
      this.pumping = false;
      return;
    }
    const waitMs = Number(next - now) / 1e6;
    if (waitMs > 2) setTimeout(() => this.pump(), Math.floor(waitMs) - 1);
    else setImmediate(() => this.pump());
  }

  private parseUp(link: Link, chunk: Buffer) {
    let acc = link.acc.length ? Buffer.concat([link.acc, chunk]) : chunk;
    let pos = 0;
    while (acc.length - pos >= 4) {
      const len = acc.readUIntLE(pos, 3);
      if (acc.length - pos < 4 + len) break;
      const seq = acc[pos + 3];
      if (seq === 0 && len > 0) {
        const type = COMMANDS[acc[pos + 4]] ?? `0x${acc[pos + 4].toString(16)}`;
        this.counts.commands++;
        this.counts.byType[type] = (this.counts.byType[type] ?? 0) + 1;
        if (this.trace) {
          let what = type;
          if (type === "QUERY" || type === "PREPARE") {
            const sql = acc.subarray(pos + 5, pos + 4 + Math.min(len, 90)).toString("utf8").replace(/\s+/g, " ");
            what += `: ${sql}`;
            if (type === "PREPARE") link.prepares.push(sql);
          } else if (type === "EXECUTE" || type === "BULK_EXECUTE" || type === "CLOSE_STMT") {
            const id = acc.readUInt32LE(pos + 5);
            what += `: ${link.statements.get(id) ?? `#${id}`}`;
          }
          this.trace[this.trace.length - 1].push(what);
        }
      }
      pos += 4 + len;
    }
    link.acc = pos < acc.length ? Buffer.from(acc.subarray(pos)) : Buffer.alloc(0);
  }

  /** Only while tracing: the statement ids of PREPARE replies (a 12-byte OK with sequence 1). */
  private parseDown(link: Link, chunk: Buffer) {
    const acc = link.accDown.length ? Buffer.concat([link.accDown, chunk]) : chunk;
    let pos = 0;
    while (acc.length - pos >= 4) {
      const len = acc.readUIntLE(pos, 3);
      if (acc.length - pos < 4 + len) break;
      if (acc[pos + 3] === 1 && link.prepares.length > 0) {
        if (len === 12 && acc[pos + 4] === 0) link.statements.set(acc.readUInt32LE(pos + 5), link.prepares.shift()!);
        else if (acc[pos + 4] === 0xff) link.prepares.shift();
      }
      pos += 4 + len;
    }
    link.accDown = pos < acc.length ? Buffer.from(acc.subarray(pos)) : Buffer.alloc(0);
  }

  async close() {
    for (const link of this.links) {
      link.client.destroy();
      link.upstream.destroy();
    }
    this.links.clear();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

export function diff(a: WireCounts, b: WireCounts): WireCounts {
  const byType: Record<string, number> = {};
  for (const k of new Set([...Object.keys(a.byType), ...Object.keys(b.byType)])) {
    const d = (b.byType[k] ?? 0) - (a.byType[k] ?? 0);
    if (d) byType[k] = d;
  }
  return { roundTrips: b.roundTrips - a.roundTrips, commands: b.commands - a.commands, byType, connections: b.connections - a.connections };
}
