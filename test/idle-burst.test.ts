// Acceptance for the tuned pool settings: wait_timeout = 3, cycles of "idle 4 s, then a burst",
// validation pings off, the server's FIN hidden by a proxy (as behind a NAT or a TCP proxy that does
// not pass the close on: the app learns only when it next writes). Tuned settings retire idle
// connections before the server does: zero errors. The driver's defaults with pings off hand out
// connections the server already closed: errors. Bare Prisma on both sides, so the difference is the
// pool settings alone. Runs both clients at once: 25 cycles in `npm test` (about 1.8 minutes, to keep
// CI under its 20; the defaults failed 350 of 400 operations at 50), IDLE_BURST_CYCLES=50 for the
// acceptance run (about 3.5 minutes).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { tunePool } from "../src/index.ts";
import { bareClient, withParams } from "./support/clients.ts";
import { startDatabase, type TestDatabase } from "./support/mariadb.ts";
import { startProxy, type FaultProxy } from "./support/proxy.ts";

const CYCLES = Number(process.env.IDLE_BURST_CYCLES ?? 25);
const IDLE_MS = 4000;
const BURST = 8;

let db: TestDatabase;
const proxies: FaultProxy[] = [];
before(async () => {
  db = await startDatabase();
  await db.setGlobal("wait_timeout", 3);
});
after(async () => {
  for (const p of proxies) await p.close();
  await db?.setGlobal("wait_timeout", 28800).catch(() => undefined);
  await db?.stop();
});

async function finHidingUrl(url: string) {
  const proxy = await startProxy(db.host, db.port);
  proxy.hideServerClose = true;
  proxies.push(proxy);
  return proxy.urlFor(url);
}

async function cycles(url: string) {
  const prisma = bareClient(url);
  const errors: string[] = [];
  let ops = 0;
  try {
    for (let i = 0; i < CYCLES; i++) {
      const burst = await Promise.allSettled(Array.from({ length: BURST }, () => prisma.user.count()));
      ops += burst.length;
      for (const b of burst) if (b.status === "rejected") errors.push(String((b.reason as any)?.code ?? b.reason));
      await sleep(IDLE_MS);
    }
  } finally {
    await prisma.$disconnect();
  }
  return { ops, errors };
}

test(`${CYCLES} idle-then-burst cycles at wait_timeout=3, pings off: tuned settings never fail, the defaults do`, async () => {
  const review = await tunePool(db.url);
  assert.equal(review.server.waitTimeout, 3);
  assert.ok(review.recommended.minDelayValidation > review.recommended.socketTimeout, "tuned: validation pings off");
  const tunedUrl = await finHidingUrl(review.url!);
  const untunedUrl = await finHidingUrl(withParams(db.url, { minDelayValidation: 600_000 }));

  const pings0 = await db.statusCounter("Com_admin_commands");
  const [tuned, untuned] = await Promise.all([cycles(tunedUrl), cycles(untunedUrl)]);
  const pings = (await db.statusCounter("Com_admin_commands")) - pings0;
  console.log(JSON.stringify({ tuned: { ops: tuned.ops, errors: tuned.errors.length }, untuned: { ops: untuned.ops, errors: untuned.errors.length, codes: [...new Set(untuned.errors)] }, pings }));

  assert.equal(tuned.ops, CYCLES * BURST);
  assert.deepEqual(tuned.errors, [], "tuned: zero errors");
  assert.ok(untuned.errors.length >= CYCLES / 2, `untuned with pings off fails (${untuned.errors.length} errors)`);
  assert.ok(pings < (tuned.ops + untuned.ops) / 20, `no ping per checkout (${pings} pings for ${tuned.ops + untuned.ops} operations)`);
});
