// A direct side connection goes to an address the cluster advertised (wsrep_incoming_addresses),
// not one the app was given: without verified TLS it must not hand the password to whatever
// answers there. The driver answers a greeting that names mysql_clear_password with the password in
// clear, whatever `restrictedAuth` says (that covers only a later switch), so the greeting is read
// first. A fake server (no database) greets with each plugin and records what the client sent.
import assert from "node:assert/strict";
import { createServer, type Socket } from "node:net";
import { test } from "node:test";
import { SideConnections } from "../src/adapter/side.ts";

const PASSWORD = "S3cret-Passw0rd";

function packet(seq: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h.writeUIntLE(payload.length, 0, 3);
  h[3] = seq;
  return Buffer.concat([h, payload]);
}

/** A protocol-10 greeting (MariaDB-shaped) that names `plugin`; resolves with what the client sent back. */
async function fakeServer(plugin: string, split = false): Promise<{ port: number; received: Promise<Buffer>; close(): void }> {
  let deliver!: (b: Buffer) => void;
  const received = new Promise<Buffer>((r) => (deliver = r));
  const sockets: Socket[] = [];
  const server = createServer((s) => {
    sockets.push(s);
    const caps = 0xf7ff | (0x81bf << 16); // PLUGIN_AUTH, SECURE_CONNECTION …
    const greeting = Buffer.concat([
      Buffer.from([10]),
      Buffer.from("10.11.19-MariaDB\0"),
      Buffer.from([1, 0, 0, 0]),
      Buffer.from("abcdefgh"),
      Buffer.from([0]),
      Buffer.from([caps & 0xff, (caps >> 8) & 0xff]),
      Buffer.from([45]),
      Buffer.from([2, 0]),
      Buffer.from([(caps >> 16) & 0xff, (caps >> 24) & 0xff]),
      Buffer.from([21]),
      Buffer.alloc(10),
      Buffer.from("ijklmnopqrst\0"),
      Buffer.from(`${plugin}\0`),
    ]);
    let got = Buffer.alloc(0);
    s.on("data", (d) => (got = Buffer.concat([got, d])));
    s.on("close", () => deliver(got));
    s.on("error", () => undefined);
    const whole = packet(0, greeting);
    // Split: the greeting arrives in two TCP chunks.
    if (split) {
      s.write(whole.subarray(0, 20));
      setTimeout(() => s.write(whole.subarray(20)), 50);
    } else s.write(whole);
    setTimeout(() => s.destroy(), 1000);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return {
    port: (server.address() as { port: number }).port,
    received,
    close() {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

// The plugin field as the greeting carries it (the driver reads up to the first NUL), and the app's TLS setting.
const refused: Array<[string, Record<string, unknown>]> = [
  ["mysql_clear_password", {}],
  ["dialog", {}],
  ["mysql_clear_password\0mysql_native_password", {}],
  ["mysql_clear_password", { ssl: true }],
  ["sha256_password", { ssl: { rejectUnauthorized: false } }],
];
for (const [plugin, tls] of refused) {
  test(`a direct connection greeted with ${JSON.stringify(plugin)} (${JSON.stringify(tls)}) sends nothing: no password leaves`, async () => {
    const fake = await fakeServer(plugin);
    const side = new SideConnections(
      () => ({ host: "127.0.0.1", port: 1, user: "app", password: PASSWORD, ...tls }),
      () => undefined,
    );
    try {
      const { conn, result } = await side.connect(2000, { host: "127.0.0.1", port: fake.port });
      assert.equal(conn, undefined, "no connection");
      assert.equal(result.ok, false);
      const sent = await fake.received;
      assert.equal(sent.includes(Buffer.from(PASSWORD)), false, "the password was not sent");
      assert.equal(sent.length, 0, `nothing was sent (${sent.length} bytes)`);
    } finally {
      side.close();
      fake.close();
    }
  });
}

// The driver answers these: a native-password greeting on a direct route (a scramble, never the
// password), and any greeting on the app's own address (the app chose that server; not checked).
const answered: Array<[string, boolean, boolean]> = [
  ["a direct connection greeted with mysql_native_password answers it (a scramble)", true, false],
  ["a greeting split over two TCP chunks is read whole, then answered", true, true],
  ["the app's own address is not checked (the app chose it): the driver answers the greeting", false, false],
];
for (const [name, direct, split] of answered) {
  test(name, async () => {
    const fake = await fakeServer("mysql_native_password", split);
    const side = new SideConnections(
      () => ({ host: "127.0.0.1", port: direct ? 1 : fake.port, user: "app", password: PASSWORD }),
      () => undefined,
    );
    try {
      await side.connect(1500, direct ? { host: "127.0.0.1", port: fake.port } : undefined);
      const sent = await fake.received;
      assert.ok(sent.length > 0, "the driver answered the greeting");
      assert.equal(sent.includes(Buffer.from(PASSWORD)), false, "a scramble, never the password");
    } finally {
      side.close();
      fake.close();
    }
  });
}
