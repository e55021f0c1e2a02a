// The 0.5 ms-latency proxy in a process of its own, so that its polling and copying land neither in
// the bench's CPU figures nor on its event loop. argv: target host, port, latency ms. IPC: it sends
// { port } once listening; answers "counts" with a WireCounts; exits on "close" or when the parent goes.
import { WireProxy } from "./wire.ts";

const [host, port, latency] = process.argv.slice(2);
const proxy = await new WireProxy(host, Number(port), Number(latency)).listen();
process.on("message", async (m: string) => {
  if (m === "counts") process.send!({ counts: proxy.snapshot() });
  if (m === "close") {
    await proxy.close();
    process.disconnect();
  }
});
process.on("disconnect", () => process.exit(0));
process.send!({ port: proxy.port });
