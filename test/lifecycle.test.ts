// What dispose() ($disconnect()) leaves behind: every pool the adapter made is ended and awaited,
// also pools retired during an outage and a pool half-built by a reconnect, with no socket or timer
// left. And `killGhostSessions: false`: this package never sends KILL.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer, type Socket } from "node:net";
import { describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { PrismaMariaDb } from "@prisma/adapter-mariadb";
import { withResilience, type StateChange } from "../src/index.ts";
import type { TestDatabase } from "./support/mariadb.ts";
import { startProxy } from "./support/proxy.ts";
import { faultSuite } from "./support/suite.ts";
import { withParams } from "./support/clients.ts";
import { uniqueKey } from "./support/data.ts";

let db: TestDatabase;
const client = faultSuite((started) => (db = started), { checkDuplicates: true });

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([p, sleep(ms, undefined, { ref: false }).then(() => assert.fail(`${what} did not happen within ${ms} ms`))]);
}

async function until(what: string, done: () => Promise<boolean> | boolean, ms: number) {
  for (const stopAt = performance.now() + ms; !(await done()); await sleep(20)) {
    assert.ok(performance.now() < stopAt, `${what} within ${ms} ms`);
  }
}

// The app, in a process of its own (so that whatever it leaves behind is its own): a statement
// runs, the fault comes (from this process), the app waits until the outage is noticed, then
// $disconnect(). It prints what is still open at that moment, and must then exit by itself.
const APP = `
  import { resilientClient } from "./test/support/clients.ts";
  const changes = [];
  const { prisma } = resilientClient(process.env.APP_URL, { deadline: 3000, adapter: { probeTimeout: 300, onStateChange: (c) => changes.push(c.state) } });
  await prisma.ledger.count();
  const busy = prisma.$queryRawUnsafe("SELECT SLEEP(5), 'lc_busy'").then(() => "done", (e) => e.name);
  for (let i = 0; i < 400 && !changes.includes("down"); i++) await new Promise((r) => setTimeout(r, 20));
  const t0 = performance.now();
  await prisma.$disconnect();
  const ms = Math.round(performance.now() - t0);
  const sockets = process._getActiveHandles().filter((h) => h?.constructor?.name === "Socket" && !h.destroyed && h.remotePort).length;
  console.log(JSON.stringify({ changes, ms, sockets, resources: process.getActiveResourcesInfo().filter((r) => r !== "PipeWrap" && r !== "TTYWrap") }));
  void busy;
`;

/** Runs APP against `url`; `fault` runs once its statement is on the server. */
async function appDisconnectsAfter(url: string, fault: () => Promise<void>) {
  await db.killConnections("all"); // sessions an earlier test left behind a black-holed link
  const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", APP], {
    env: { ...process.env, APP_URL: url },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const exited = new Promise<number>((resolve) => child.once("exit", (code) => resolve(code ?? -1)));
  let onLine!: (line: string) => void;
  const line = new Promise<string>((resolve) => (onLine = resolve));
  child.stdout.on("data", (d) => {
    stdout += d;
    const nl = stdout.indexOf("\n");
    if (nl >= 0) onLine(stdout.slice(0, nl));
  });
  try {
    await db.waitForStatement("lc_busy", 20_000);
    await fault();
    const report = JSON.parse(await within(line, 15_000, "the app's $disconnect()").catch((e) => {
      throw new Error(`${e.message}; the app's log: ${stderr.split("\n").slice(-12).join("\n")}`);
    }));
    // Read at once: what of the app is still on the server when its $disconnect() resolved.
    const onServer = (await db.appConnections().catch(() => [])).length;
    const t0 = performance.now();
    const code = await Promise.race([exited, sleep(3000, "still running", { ref: false })]);
    const exitMs = Math.round(performance.now() - t0);
    console.log(`    ${JSON.stringify({ ...report, onServer, exitMs, code })}`);
    assert.equal(code, 0, `the app exited by itself within 3 s of $disconnect() (${stderr.split("\n").slice(-5).join(" | ")})`);
    return { ...report, onServer, exitMs };
  } finally {
    child.kill("SIGKILL");
  }
}

describe("dispose() after an outage", () => {
  test("link black-holed while a statement runs: when $disconnect() resolves no socket is open, and the app exits by itself", async () => {
    const proxy = await startProxy(db.host, db.port);
    try {
      const r = await appDisconnectsAfter(withParams(proxy.urlFor(db.url), { connectionLimit: 2 }), async () => {
        proxy.mode = "drop";
        proxy.dropAll();
      });
      assert.deepEqual(r.changes, ["down"]);
      assert.equal(r.sockets, 0, "no socket of the app open");
    } finally {
      await proxy.close();
    }
  });

  test("the server refuses new connections while a statement runs (its pool retired, the statement still running): when $disconnect() resolves the session is gone", async () => {
    const password = db.password;
    try {
      const r = await appDisconnectsAfter(withParams(db.url, { connectionLimit: 2 }), async () => {
        await db.admin(`SET PASSWORD FOR '${db.user}'@'%' = PASSWORD(?)`, ["not-the-app-password"]);
        await db.killConnections("idle"); // the pool opens a fresh one: refused
      });
      assert.deepEqual(r.changes, ["down"], "the refusal was seen");
      assert.equal(r.onServer, 0, "no session of the app on the server when $disconnect() resolved");
      assert.equal(r.sockets, 0, "no socket of the app open");
    } finally {
      await db.admin(`SET PASSWORD FOR '${db.user}'@'%' = PASSWORD(?)`, [password]);
    }
  });
});

/**
 * PrismaMariaDb behind a factory that can fail (or wait) after it has built its pool: a reconnect
 * that fails half-way. `pools` are the driver pools it built, in order.
 */
function halfBuilding(url: string) {
  const inner = new PrismaMariaDb(url);
  const pools: any[] = [];
  const control = {
    pools,
    /** The next connect() waits for this (after its pool is built), then fails if it rejects. */
    hold: undefined as Promise<void> | undefined,
    /** Called when a connect() has built its pool and is waiting or failing. */
    onBuilt: undefined as (() => void) | undefined,
  };
  const factory = {
    provider: inner.provider,
    adapterName: inner.adapterName,
    async connect() {
      const adapter: any = await inner.connect();
      pools.push(adapter.underlyingDriver());
      const hold = control.hold;
      control.hold = undefined;
      if (!hold) return adapter;
      control.onBuilt?.();
      await hold; // a rejection: the factory fails with its pool built
      return adapter;
    },
  };
  return { factory, control };
}

describe("dispose() and the pool's first connection", () => {
  test("a server that accepts but never greets: when dispose() resolves, the pool's first connect is ended too", async () => {
    const open = new Set<Socket>();
    const silent = createServer((s) => {
      open.add(s);
      s.on("close", () => open.delete(s));
      s.on("error", () => undefined);
    });
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = silent.address() as { port: number };
      const factory = withResilience(new PrismaMariaDb({ host: "127.0.0.1", port, user: "u", password: "p", connectTimeout: 6000, acquireTimeout: 8000 }), { verifyCommits: false });
      const adapter: any = await within(factory.connect(), 5000, "connect()");
      await within(adapter.dispose(), 12_000, "dispose()");
      // The server side sees the close a moment later; none may stay until connectTimeout (6 s).
      await until("every connection the pool began is closed", () => open.size === 0, 1000);
    } finally {
      for (const s of open) s.destroy();
      silent.close();
    }
  });
});

describe("dispose() and a reconnect that fails half-way", () => {
  for (const how of ["fails", "is still building when dispose() comes, then fails", "is still building when dispose() comes, then succeeds"] as const) {
    test(`the server is back, the fresh pool is built, and the reconnect ${how}: after dispose() that pool is ended, nothing left on the server`, async () => {
      const { factory, control } = halfBuilding(withParams(db.url, { connectionLimit: 2 }));
      const changes: StateChange[] = [];
      const adapter: any = await withResilience(factory, { probeInterval: 50, onStateChange: (c) => changes.push(c) }).connect();
      let restarted = false;
      try {
        await adapter.queryRaw({ sql: "SELECT 1", args: [], argTypes: [] });
        await until("the pool's connections are open", async () => (await db.appConnections()).length >= 1, 5000);
        let release!: () => void;
        let fail!: (e: Error) => void;
        control.hold = new Promise<void>((resolve, reject) => {
          release = resolve;
          fail = reject;
        });
        control.hold.catch(() => undefined);
        const built = new Promise<void>((resolve) => (control.onBuilt = resolve));
        await db.kill9();
        await adapter.queryRaw({ sql: "SELECT 1", args: [], argTypes: [] }).catch(() => undefined); // the outage is noticed
        await until("the outage was noticed", () => changes.some((c) => c.state === "down"), 5000);
        await db.start();
        restarted = true;
        await within(built, 10_000, "the reconnect's fresh pool");
        assert.equal(control.pools.length, 2, "one fresh pool built");
        await until("the fresh pool opened its connections", async () => (await db.appConnections()).length >= 1, 5000);
        if (how === "fails") {
          fail(new Error("the fresh pool cannot be used"));
          await sleep(20); // the reconnect has failed; the next attempt comes after the next probe
        }
        let disposeError: unknown;
        await within(adapter.dispose().catch((e: unknown) => (disposeError = e)), 12_000, "dispose()");
        const states = control.pools.map((p) => ({ closed: p.closed, connections: p.totalConnections() }));
        // The server drops a session a moment after its COM_QUIT: a second is plenty.
        const gone = await until("no session of the app on the server", async () => (await db.appConnections()).length === 0, 1000).then(
          () => true,
          () => false,
        );
        if (how !== "fails") {
          if (how.endsWith("fails")) fail(new Error("the fresh pool cannot be used"));
          else release();
          await sleep(300);
        }
        const leftAfter = (await db.appConnections()).length;
        console.log(`    ${JSON.stringify({ states, gone, leftAfter, disposeError: disposeError ? String(disposeError) : undefined, changes: changes.map((c) => c.state) })}`);
        assert.equal(disposeError, undefined, "dispose() resolved");
        assert.deepEqual(states, control.pools.map(() => ({ closed: true, connections: 0 })), "every pool the adapter built is ended when dispose() resolves");
        assert.ok(gone, "no session of the app left on the server after dispose()");
        assert.equal(leftAfter, 0, "nor once the reconnect settled");
      } finally {
        if (!restarted) await db.start();
        await adapter.dispose().catch(() => undefined);
      }
    });
  }
});

// `killGhostSessions: false`: this package sends no KILL at all (counted by the server: Com_kill).
// Nothing else sends KILL to this server while a test counts.
describe("killGhostSessions: false sends no KILL", () => {
  const kills = () => db.statusCounter("Com_kill");

  for (const kill of [true, false]) {
    test(`a silently dropped transaction's ghost (killGhostSessions: ${kill}): ${kill ? "KILLed" : "no KILL"}`, async () => {
      const proxy = await startProxy(db.host, db.port);
      let ghost: number | undefined;
      try {
        const { prisma } = client(withParams(proxy.urlFor(db.url), { socketTimeout: 1000, connectionLimit: 2 }), { retries: 0, adapter: { killGhostSessions: kill, verifyCommits: false } });
        const user = await prisma.user.create({ data: { email: `${uniqueKey("lc-ghost")}@example.com` } });
        const before = await kills();
        const result = await prisma
          .$transaction(async (tx) => {
            await tx.user.update({ where: { id: user.id }, data: { balance: { increment: 1 } } });
            const [{ id }] = await tx.$queryRaw<{ id: bigint }[]>`SELECT CONNECTION_ID() AS id`;
            ghost = Number(id);
            proxy.dropAll(); // this transaction's connection goes silent; new connections pass
            return tx.user.findUniqueOrThrow({ where: { id: user.id } });
          })
          .then(() => "committed", (e) => String(e?.name));
        await sleep(1500); // the watchdog's check and the ghost kill, if any, are done
        const sent = (await kills()) - before;
        const present = (await db.appConnections()).some((c) => c.id === ghost);
        console.log(`    ${JSON.stringify({ kill, result, sent, ghostPresent: present })}`);
        assert.notEqual(result, "committed");
        assert.equal(sent, kill ? 1 : 0, `KILLs sent: ${sent}`);
        assert.equal(present, !kill, kill ? "the ghost is gone" : "the ghost is left alone");
      } finally {
        await proxy.close();
        await until("the ghost gone with the proxy", async () => !(await db.appConnections()).some((c) => c.id === ghost), 5000);
      }
      const [row] = await db.admin<any[]>(`SELECT balance FROM \`${db.database}\`.User WHERE email LIKE 'lc-ghost%' ORDER BY id DESC LIMIT 1`);
      assert.equal(Number(row.balance), 0, "the ghost's increment never committed");
    });

    test(`a lost COMMIT's verification (killGhostSessions: ${kill}): ${kill ? "ends the old session with KILL, then re-runs once" : "no KILL; the session still there, the outcome is unknown (never 'not committed')"}`, async () => {
      const proxy = await startProxy(db.host, db.port);
      let runs = 0;
      const verdicts: string[] = [];
      let outcome: string;
      try {
        const { prisma, retries } = client(withParams(proxy.urlFor(db.url), { socketTimeout: 1000, connectionLimit: 2 }), {
          deadline: 10_000,
          adapter: { killGhostSessions: kill, verifyTimeout: 1500, onCommitVerified: (v) => verdicts.push(v.verdict) },
        });
        const user = await prisma.user.create({ data: { email: `${uniqueKey("lc-commit")}@example.com` } });
        await sleep(200);
        const before = await kills();
        outcome = await prisma
          .$transaction(async (tx: any) => {
            runs++;
            await tx.user.update({ where: { id: user.id }, data: { balance: { increment: 1 } } });
            if (runs === 1) proxy.dropAll(); // the COMMIT (and its mark) go nowhere; the session keeps its row lock
            return "resolved";
          })
          .then((r: string) => r, (e: any) => String(e?.name));
        const sent = (await kills()) - before;
        console.log(`    ${JSON.stringify({ kill, outcome, runs, retries: retries.length, verdicts, sent })}`);
        assert.equal(sent, kill ? 1 : 0, `KILLs sent: ${sent}`);
        if (kill) {
          assert.equal(outcome, "resolved");
          assert.deepEqual(verdicts, ["not-committed"]);
          assert.equal(runs, 2, "found not committed (its session ended first), run again");
        } else {
          assert.equal(outcome, "OutcomeUnknownError", "the old session could still commit: unknown, not re-run");
          assert.deepEqual(verdicts, ["unknown"]);
          assert.equal(runs, 1);
        }
        await proxy.close(); // the old session ends with its link: its transaction rolls back
        await sleep(300);
        const [row] = await db.admin<any[]>(`SELECT balance FROM \`${db.database}\`.User WHERE id = ?`, [user.id]);
        assert.equal(Number(row.balance), kill ? 1 : 0, kill ? "applied once" : "nothing applied");
      } finally {
        await proxy.close().catch(() => undefined);
      }
    });

    if (!kill)
      test("a COMMIT delivered, its reply lost (killGhostSessions: false): the old session ends by itself, verified committed without a KILL, one row", async () => {
        const proxy = await startProxy(db.host, db.port);
        try {
          const verdicts: string[] = [];
          const { prisma, retries } = client(withParams(proxy.urlFor(db.url), { connectionLimit: 2 }), { adapter: { killGhostSessions: false, onCommitVerified: (v) => verdicts.push(v.verdict) } });
          const key = uniqueKey("lc-lost-reply");
          await prisma.ledger.count();
          await sleep(200);
          const before = await kills();
          const lost = proxy.loseReplyTo("COMMIT");
          const row = await prisma.ledger.create({ data: { key, amount: 1 } });
          await within(lost, 5000, "a COMMIT");
          const sent = (await kills()) - before;
          const n = Number((await db.admin<any[]>(`SELECT COUNT(*) AS n FROM \`${db.database}\`.Ledger WHERE \`key\` = ?`, [key]))[0].n);
          console.log(`    ${JSON.stringify({ verdicts, retries: retries.length, sent, rows: n })}`);
          assert.equal(row.key, key);
          assert.deepEqual(verdicts, ["committed"]);
          assert.equal(retries.length, 0);
          assert.equal(sent, 0, "no KILL");
          assert.equal(n, 1);
        } finally {
          await proxy.close();
        }
      });

    test(`a busy pooled connection destroyed (killGhostSessions: ${kill}): ${kill ? "its session is KILLed" : "no KILL, neither ours nor the driver's"}`, async () => {
      const adapter: any = await withResilience(new PrismaMariaDb(withParams(db.url, { connectionLimit: 2 })), { killGhostSessions: kill }).connect();
      try {
        const conn = await adapter.underlyingDriver().getConnection();
        await sleep(200); // its identity is read
        const busy = conn.query("SELECT SLEEP(2), 'lc_destroyed'").then(() => "answered", (e: any) => e?.errno);
        const row = await db.waitForStatement("lc_destroyed");
        const before = await kills();
        conn.destroy();
        const failedWith = await within(busy, 5000, "the destroyed connection's call failing");
        await sleep(500); // a KILL, if any, has been sent
        const sent = (await kills()) - before;
        const present = (await db.appConnections()).some((c) => c.id === row.id && c.command !== "Killed");
        console.log(`    ${JSON.stringify({ kill, failedWith, sent, sessionPresent: present })}`);
        assert.notEqual(failedWith, "answered");
        assert.equal(sent, kill ? 1 : 0, `KILLs sent: ${sent}`);
        assert.equal(present, !kill, kill ? "its session ended" : "its session left to finish on its own");
      } finally {
        await adapter.dispose();
      }
      await until("the session gone", async () => (await db.appConnections()).length === 0, 5000);
    });
  }
});
