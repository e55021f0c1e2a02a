// The PostgreSQL wrapper's side connections (src/pg-adapter/side.ts) are bounded: a peer that
// accepts and never answers ends a connect, a probe and a verification's connection within their
// time (before: a client ended while connecting never settled, and the wait hung for good).
import assert from "node:assert/strict";
import { createServer, type Server, type Socket } from "node:net";
import { after, before, test } from "node:test";
import { PgSide } from "../src/pg-adapter/side.ts";
import { within } from "./support/bounded.ts";

let silent: Server;
let port = 0;
const sockets = new Set<Socket>();
before(async () => {
  silent = createServer((s) => void sockets.add(s));
  await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
  port = (silent.address() as { port: number }).port;
});
after(async () => {
  for (const s of sockets) s.destroy();
  await new Promise((resolve) => silent.close(resolve));
});

for (const ms of [100, 300, 1000]) {
  test(`a peer that never answers: connect and probe end within their ${ms} ms (never hang)`, async () => {
    const side = new PgSide(() => ({ host: "127.0.0.1", port, user: "nobody", password: "x", database: "none" }));
    try {
      const started = performance.now();
      const connected = await within(side.connect(ms), ms + 2000, "the side connect");
      assert.equal(connected.client, undefined);
      assert.equal(connected.result.ok, false);
      assert.equal(connected.result.ok === false && connected.result.reason, "no answer");
      const probed = await within(side.probe(ms), ms + 2000, "the probe");
      assert.equal(probed.ok, false);
      assert.ok(performance.now() - started < 2 * ms + 2000);
    } finally {
      side.close();
    }
  });
}
