// Outages and silent drops on a real MariaDB and the loopback proxy: a server killed under load and
// restarted, a server down for longer than the deadline, everything silently dropped, a ghost
// session holding a lock after a silent drop, max_connections exhausted, and the debug log.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import mariadb from "mariadb";
import { PrismaMariaDb } from "@prisma/adapter-mariadb";
import { PrismaClient } from "../generated/prisma/client.ts";
import { withResilience, type StateChange } from "../src/index.ts";
import { RECENT_FAULT } from "../src/adapter/adapter.ts";
import { runChaos, summary, violations } from "./support/chaos.ts";
import { withParams } from "./support/clients.ts";
import { duplicateKeys, inFlight, missingKeys, uniqueKey } from "./support/data.ts";
import type { TestDatabase } from "./support/mariadb.ts";
import { faultSuite } from "./support/suite.ts";
import { startProxy } from "./support/proxy.ts";

let db: TestDatabase;
const client = faultSuite((started) => (db = started));

describe("server killed under load", () => {
  test("kill -9, restart 2 s later, deadline 5 s: nothing fails, nothing duplicated or lost, recovery within 200 ms", async () => {
    const changes: StateChange[] = [];
    const result = await runChaos(db, {
      mode: "resilient",
      durationMs: 7000,
      workers: 8,
      killEveryMs: 0,
      waitTimeout: 28800,
      restartAtMs: 2500,
      downMs: 2000,
      resilience: { deadline: 5000 },
      adapter: { onStateChange: (c) => changes.push(c) },
    });
    console.log(JSON.stringify(summary(result)));
    assert.deepEqual(violations(result), [], "no failure but typed unknown outcomes, no duplicate, no loss");
    assert.ok(result.recoveryMs !== null && result.recoveryMs <= 200, `first success ${result.recoveryMs} ms after the server accepted connections`);
    assert.deepEqual(changes.map((c) => c.state), ["down", "up"], "one outage seen, one reconnect shared by all callers");
    assert.equal(changes[0].reason, "connection refused");
    assert.ok(changes[1].downForMs! >= 1900, `down for ${changes[1].downForMs} ms`);
    assert.equal(changes[1].generation, 1);
  });
});

describe("server down longer than the deadline", () => {
  test("every operation fails within deadline + 10 % naming 'connection refused'; none waits the 10 s pool timeout", async () => {
    const deadline = 3000;
    const { prisma } = client(db.url, { deadline }); // driver defaults: acquireTimeout 10 s
    await Promise.all(Array.from({ length: 8 }, () => prisma.user.count()));
    await db.kill9();
    try {
      const started = performance.now();
      const outcomes = await Promise.all(
        Array.from({ length: 8 }, (_, i) =>
          Promise.resolve(i % 2 ? prisma.user.count() : prisma.ledger.create({ data: { key: uniqueKey("down") } })).then(
            () => ({ ok: true as const, ms: performance.now() - started }),
            (error) => ({ ok: false as const, error, ms: performance.now() - started }),
          ),
        ),
      );
      for (const o of outcomes) {
        assert.equal(o.ok, false);
        if (o.ok) continue;
        assert.equal((o.error as any).name, "DatabaseUnavailableError", String(o.error));
        assert.equal((o.error as any).reason, "connection refused");
        assert.ok((o.error as any).waitedMs >= deadline * 0.7);
        assert.ok(o.ms <= deadline * 1.1, `failed after ${Math.round(o.ms)} ms (deadline ${deadline})`);
      }
    } finally {
      await db.start();

    }
    assert.equal(typeof (await prisma.user.count()), "number", "works again once the server is back, without a restart of the app");
  });
});

describe("silent drops", () => {
  test("everything dropped mid-load for 3 s: no operation past its deadline + 10 %, recovers on its own", async () => {
    const proxy = await startProxy(db.host, db.port);
    try {
      const deadline = 6000;
      const url = withParams(proxy.urlFor(db.url), { socketTimeout: 800, connectTimeout: 500, acquireTimeout: 800 });
      const { prisma } = client(url, { deadline });
      const acknowledged: string[] = [];
      const outcomes: Array<{ ms: number; ok: boolean; name?: string }> = [];
      const stopAt = performance.now() + 9000;
      const worker = async (w: number) => {
        let i = 0;
        while (performance.now() < stopAt) {
          const key = `${uniqueKey("drop")}-${w}-${i++}`;
          const t0 = performance.now();
          try {
            if (i % 2) await prisma.ledger.create({ data: { key } });
            else await prisma.ledger.findMany({ where: { key }, take: 1 });
            if (i % 2) acknowledged.push(key);
            outcomes.push({ ms: performance.now() - t0, ok: true });
          } catch (e) {
            outcomes.push({ ms: performance.now() - t0, ok: false, name: (e as any)?.name });
          }
        }
      };
      const load = Promise.all(Array.from({ length: 8 }, (_, w) => worker(w)));
      await sleep(2000);
      proxy.mode = "drop";
      proxy.dropAll();
      await sleep(3000);
      proxy.mode = "pass";
      const passedAt = performance.now();
      await load;
      const slowest = Math.max(...outcomes.map((o) => o.ms));
      const failed = outcomes.filter((o) => !o.ok);
      console.log(JSON.stringify({ operations: outcomes.length, failed: failed.length, names: [...new Set(failed.map((f) => f.name))], slowestMs: Math.round(slowest) }));
      assert.ok(slowest <= deadline * 1.1, `slowest operation ${Math.round(slowest)} ms`);
      assert.ok(failed.every((f) => f.name === "OutcomeUnknownError" || f.name === "DatabaseUnavailableError"), "only typed errors");
      // After traffic passes again the app recovers by itself: operations after that succeed.
      const after = await prisma.ledger.count();
      assert.ok(after >= acknowledged.length);
      assert.ok(performance.now() - passedAt < 10_000);
      assert.deepEqual(await missingKeys(db, acknowledged), [], "no acknowledged write lost");
      assert.deepEqual(await duplicateKeys(db), [], "no write duplicated");
    } finally {
      await proxy.close();
    }
  });

  for (const kill of [true, false]) {
    test(`a silently dropped transaction's ghost session ${kill ? "is killed, so the re-run does not wait for its locks" : "(killGhostSessions: false) keeps its row lock: the re-run is stuck"}`, async () => {
      const proxy = await startProxy(db.host, db.port);
      let ghost: number | undefined;
      await db.setGlobal("innodb_lock_wait_timeout", 3);
      try {
        const url = withParams(proxy.urlFor(db.url), { socketTimeout: 1000, connectionLimit: 2 });
        const { prisma, retries } = client(url, { deadline: 15_000, adapter: { killGhostSessions: kill } });
        const user = await prisma.user.create({ data: { email: `${uniqueKey("ghost")}@example.com` } });
        let runs = 0;
        const started = performance.now();
        const result = await prisma
          .$transaction(async (tx) => {
            runs++;
            await tx.user.update({ where: { id: user.id }, data: { balance: { increment: 1 } } });
            if (runs === 1) {
              const [{ id }] = await tx.$queryRaw<{ id: bigint }[]>`SELECT CONNECTION_ID() AS id`;
              ghost = Number(id);
              proxy.dropAll(); // this transaction's connection goes silent; new connections pass
            }
            return tx.user.findUniqueOrThrow({ where: { id: user.id } });
          })
          .then(
            (r) => ({ ok: true as const, r }),
            (e) => ({ ok: false as const, e }),
          );
        const elapsed = performance.now() - started;
        const [row] = await db.admin<any[]>(`SELECT balance FROM \`${db.database}\`.User WHERE id = ?`, [user.id]);
        if (kill) {
          assert.ok(result.ok, `succeeded: ${!result.ok && result.e}`);
          assert.equal(runs, 2);
          assert.equal(retries.length, 1);
          assert.ok(elapsed < 2900, `no lock wait: ${Math.round(elapsed)} ms (innodb_lock_wait_timeout is 3 s)`);
          assert.ok(!(await db.appConnections()).some((c) => c.id === ghost), "the ghost session is gone");
          assert.equal(Number(row.balance), 1, "incremented exactly once");
        } else {
          // The re-run's UPDATE waits on the row its own ghost still locks, silently, until the
          // 1 s socketTimeout ends that attempt too: the operation fails.
          assert.equal(result.ok, false, "without the kill the re-run is stuck behind its ghost");
          assert.ok((await db.appConnections()).some((c) => c.id === ghost), "the ghost session is still there");
          assert.equal(Number(row.balance), 0, "the ghost's increment never committed");
        }
      } finally {
        await db.setGlobal("innodb_lock_wait_timeout", 50);
        if (ghost !== undefined) await db.admin(`KILL ${ghost}`).catch(() => undefined);
        await proxy.close();
      }
    });
  }
});

describe("the watchdog's answer comes late", () => {
  test("a connection that received its reply while the server was being asked is left alone (the session was idle because it had answered)", async () => {
    const proxy = await startProxy(db.host, db.port);
    try {
      // One connection, and no retries: a connection cut by mistake surfaces as the next statement's error.
      const { prisma, retries } = client(withParams(proxy.urlFor(db.url), { connectionLimit: 1 }), { retries: 0 });
      await prisma.$queryRawUnsafe("SELECT 1");
      const reply = proxy.holdReplyTo("SELECT 'held reply'");
      const check = proxy.holdReplyTo("FROM information_schema.PROCESSLIST WHERE ID");
      const next = proxy.holdReplyTo("SELECT SLEEP(0.2)");
      const within = (p: Promise<void>, ms: number) => Promise.race([p.then(() => true), sleep(ms, false, { ref: false })]);
      // The reply is held past silentAfter (1 s), so the watchdog asks the server: the session is
      // idle (it has answered). That answer is held until the reply has arrived and the app's next
      // statement is on the connection, whose own reply is held until the watchdog has decided (past
      // its grace): the answer no longer says anything about the connection.
      const choreography = (async () => {
        const asked = await within(check.seen, 5000);
        await sleep(100); // the server has read the session's state
        reply.release();
        const nextSent = await within(next.seen, 5000);
        check.release();
        await sleep(600);
        next.release();
        return { asked, nextSent };
      })();
      const t0 = performance.now();
      await prisma.$queryRawUnsafe("SELECT 'held reply'");
      const heldMs = Math.round(performance.now() - t0);
      let error: unknown;
      await prisma.$queryRawUnsafe("SELECT SLEEP(0.2)").catch((e: unknown) => (error = e));
      const { asked, nextSent } = await choreography;
      console.log(JSON.stringify({ heldMs, asked, nextSent, error: error ? `${(error as any).name} ${(error as any).code}` : null, retries: retries.length }));
      assert.ok(asked, "the watchdog asked the server about the silent connection");
      assert.ok(nextSent, "the next statement ran on the connection before the answer came");
      assert.equal(error, undefined, "the next statement was not cut");
      assert.equal(retries.length, 0);
    } finally {
      await proxy.close();
    }
  });
});

describe("what the P2028 rule counts as a fault", () => {
  test("an idle pooled connection closed at wait_timeout is routine; one killed is a fault", async () => {
    // A P2028 within 15 s of a fault costs time, not `retries` (README: retries): a close at the
    // server's wait_timeout must not open that window for a pool that may be busy next.
    const waitTimeout = await db.getGlobal("wait_timeout");
    await db.setGlobal("wait_timeout", 2); // the sessions opened from now on
    const factory: any = withResilience(new PrismaMariaDb(withParams(db.url, { connectionLimit: 1 })));
    const prisma = new PrismaClient({ adapter: factory });
    const until = async (what: string, done: () => Promise<boolean>, ms: number) => {
      const stopAt = performance.now() + ms;
      while (!(await done())) {
        if (performance.now() > stopAt) throw new Error(`not within ${ms} ms: ${what}`);
        await sleep(50);
      }
    };
    try {
      await prisma.$queryRawUnsafe("SELECT 1");
      await sleep(200); // its identity (with wait_timeout) is read
      assert.equal(factory[RECENT_FAULT](), false, "no fault yet");
      await until("the server closed the idle connection", async () => (await db.appConnections()).length === 0, 6000);
      await sleep(200); // the driver has seen the close
      const afterTimeout = factory[RECENT_FAULT]();
      const [{ id }] = await prisma.$queryRawUnsafe<Array<{ id: bigint }>>("SELECT CONNECTION_ID() AS id"); // a fresh connection, then idle
      await sleep(200);
      await db.admin(`KILL ${Number(id)}`);
      await until("the killed connection's close was noted", async () => factory[RECENT_FAULT]() === true, 2000).catch(() => undefined);
      const afterKill = factory[RECENT_FAULT]();
      console.log(JSON.stringify({ afterTimeout, afterKill }));
      assert.equal(afterTimeout, false, "a close at wait_timeout is routine");
      assert.equal(afterKill, true, "an idle connection killed is a fault");
    } finally {
      await db.setGlobal("wait_timeout", Number(waitTimeout));
      await Promise.race([prisma.$disconnect(), sleep(10_000, undefined, { ref: false })]);
    }
  });
});

describe("a busy pool and the deadline", () => {
  test("a transaction that cannot get a connection (P2028) ends by its deadline, not maxWait after it", async () => {
    // One connection, held by a long transaction: every start of another one waits Prisma's maxWait
    // (2 s) and gets P2028, which uses up the one retry. With deadline 3 s, the re-run may wait only
    // what is left (about 1 s), so the call ends at about 3 s, not 4 s.
    const { prisma, retries } = client(withParams(db.url, { connectionLimit: 1 }), { deadline: 3000 });
    const holder = prisma.$transaction(async (tx: any) => {
      await tx.$queryRaw`SELECT SLEEP(5)`;
    }, { timeout: 10_000 });
    holder.catch(() => undefined);
    await sleep(300); // the holder has the connection
    const started = performance.now();
    const error = await prisma.$transaction(async (tx: any) => tx.user.count()).then(() => undefined, (e: unknown) => e);
    const elapsed = performance.now() - started;
    await holder; // done before any assertion: a failing test leaves no transaction open
    console.log(`P2028 twice: ended after ${Math.round(elapsed)} ms (deadline 3000), ${retries.length} retry, ${(error as any)?.name} ${(error as any)?.code ?? ""}`);
    assert.ok(error, "it could not start");
    assert.equal(retries.length, 1, "one re-run (P2028 without a fault uses up the retry)");
    assert.ok(elapsed >= 2900 && elapsed < 3700, `ended after ${Math.round(elapsed)} ms (without the clamp: about 4.2 s)`);
    assert.equal(typeof (await prisma.user.count()), "number", "the pool works afterwards");
  });
});

describe("too many connections", () => {
  test("max_connections exhausted by other clients: backs off, succeeds once they leave", async () => {
    const { prisma, retries } = client(withParams(db.url, { acquireTimeout: 700 }), { deadline: 10_000 });
    const before = await db.getGlobal("max_connections");
    const hogs: mariadb.Connection[] = [];
    try {
      const used = (await db.admin<any[]>("SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST"))[0].n;
      await db.setGlobal("max_connections", Number(used) + 3);
      for (;;) {
        try {
          const c = await mariadb.createConnection({ host: db.host, port: db.port, user: db.user, password: db.password, connectTimeout: 500 });
          c.on("error", () => undefined);
          hogs.push(c);
        } catch (e) {
          assert.equal((e as any).errno, 1040, "the server refused with 'Too many connections'");
          break;
        }
      }
      const started = performance.now();
      const op = inFlight(prisma.user.count());
      await sleep(2000);
      for (const h of hogs.splice(0)) await h.end();
      assert.equal(typeof (await op), "number");
      assert.ok(performance.now() - started >= 2000);
      assert.ok(retries.length >= 1 && retries.every((r) => r.errorClass === "unavailable"), JSON.stringify(retries.map((r) => r.errorClass)));
      assert.ok(retries.some((r) => r.delayMs > 0), "waited with backoff");
    } finally {
      for (const h of hogs) await h.end().catch(() => undefined);
      await db.setGlobal("max_connections", Number(before));
    }
  });
});

describe("observability", () => {
  test("DEBUG=prisma-extension-resilience logs retries and outages, never the password", async () => {
    const script = `
      import { resilientClient } from "./test/support/clients.ts";
      const { prisma } = resilientClient(process.env.APP_URL);
      await prisma.user.count();
      console.log("ready");
      await prisma.$queryRaw\`SELECT SLEEP(1), 'debug_marker'\`;
      await prisma.$disconnect();
    `;
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      env: { ...process.env, DEBUG: "prisma-extension-resilience", APP_URL: db.url },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    let stdout = "";
    child.stderr.on("data", (d) => (stderr += d));
    child.stdout.on("data", (d) => (stdout += d));
    const exited = new Promise<number>((resolve) => child.once("exit", (code) => resolve(code ?? -1)));
    await db.waitForStatement("debug_marker", 20_000);
    await db.killConnections({ running: "debug_marker" });
    assert.equal(await exited, 0, stderr);
    assert.match(stderr, /prisma-extension-resilience retry \$queryRaw after connection-lost/);
    assert.ok(!stderr.includes(db.password) && !stdout.includes(db.password), "no password in the log");
  });
});
