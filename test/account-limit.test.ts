// An account's connection limit is an answer about the account, not an outage: a user created
// `WITH MAX_USER_CONNECTIONS 6` (shared hosting, managed servers) and the default pool of 10. The
// pool cannot open its 7th connection, and a side connection (probe, session check, commit
// verification) is refused with 1226 while the pool holds all six. Meanwhile a root connection
// KILLs a running statement of that user every 250 ms. The server is up all along: no call may
// fail, the adapter must never declare it down (no onStateChange at all), and the data must be
// exact (no duplicate key, every acknowledged write present).
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { PrismaMariaDb } from "@prisma/adapter-mariadb";
import { PrismaClient } from "../generated/prisma/client.ts";
import { resilience, withResilience, type StateChange } from "../src/index.ts";
import { errnoOf } from "./support/clients.ts";
import { duplicateKeys, missingKeys } from "./support/data.ts";
import { startDatabase, type TestDatabase } from "./support/mariadb.ts";
import { startProxy } from "./support/proxy.ts";
import { within } from "./support/bounded.ts";

const LIMITED_USER = "limited";
const TIGHT_USER = "tight";
const LIMIT = 6;
const LOAD_MS = 8000;
const CALLERS = 12;
const KILL_EVERY_MS = 250;

let db: TestDatabase;
const secret = randomBytes(12).toString("hex");

before(async () => {
  db = await startDatabase();
  await db.admin(`CREATE USER '${LIMITED_USER}'@'%' IDENTIFIED BY ? WITH MAX_USER_CONNECTIONS ${LIMIT}`, [secret]);
  await db.admin(`GRANT ALL ON \`${db.database}\`.* TO '${LIMITED_USER}'@'%'`);
  await db.admin(`CREATE USER '${TIGHT_USER}'@'%' IDENTIFIED BY ? WITH MAX_USER_CONNECTIONS 2`, [secret]);
  await db.admin(`GRANT ALL ON \`${db.database}\`.* TO '${TIGHT_USER}'@'%'`);
});
after(async () => {
  await db?.stop();
});

/** The default setup a user runs: withResilience(new PrismaMariaDb(url)) + resilience(), no tuning. */
function limitedClient(changes: StateChange[]) {
  const url = `mysql://${LIMITED_USER}:${secret}@127.0.0.1:${db.port}/${db.database}`;
  const adapter = withResilience(new PrismaMariaDb(url), { onStateChange: (c) => changes.push(c) });
  return new PrismaClient({ adapter }).$extends(resilience());
}

/** The limited user's threads that are doing something (a statement, a handshake): never idle ones. */
async function busyThreads(): Promise<{ busy: number[]; total: number }> {
  const rows = await db.admin<any[]>("SELECT ID, COMMAND FROM information_schema.PROCESSLIST WHERE USER = ?", [LIMITED_USER]);
  return { busy: rows.filter((r) => r.COMMAND !== "Sleep" && r.COMMAND !== "Killed").map((r) => Number(r.ID)), total: rows.length };
}

function describeFailure(e: any): string {
  const first = String(e?.message ?? e).split("\n").find((l) => l.trim() !== "") ?? "";
  return `${e?.name ?? "?"} ${e?.code ?? ""} ${first.slice(0, 200)}`;
}

describe("an account's connection limit (MAX_USER_CONNECTIONS 6) under KILLs", () => {
  test("12 callers, default pool of 10, a running statement KILLed every 250 ms: nothing fails, the server is never declared down, data exact", async () => {
    const changes: StateChange[] = [];
    const prisma = limitedClient(changes);
    const prefix = `acct-${process.pid}-${Date.now().toString(36)}`;
    const acknowledged = new Set<string>();
    const failures: string[] = [];
    const ops = { read: 0, create: 0, transaction: 0 };
    let failed = 0;
    let interrupted = 0;
    let kills = 0;
    let mostConnections = 0;
    const start = performance.now();
    const running = () => performance.now() - start < LOAD_MS;

    const caller = async (c: number) => {
      for (let seq = 0; running(); seq++) {
        const key = `${prefix}-${c}-${seq}`;
        const pick = (c + seq) % 3;
        try {
          if (pick === 0) {
            ops.read++;
            await prisma.ledger.findMany({ where: { key: { startsWith: `${prefix}-${c}-` } }, take: 5, orderBy: { id: "desc" } });
          } else if (pick === 1) {
            ops.create++;
            await prisma.ledger.create({ data: { key, amount: 1 } });
            acknowledged.add(key);
          } else {
            ops.transaction++;
            await prisma.$transaction(async (tx) => {
              await tx.ledger.create({ data: { key, amount: 2 } });
              return tx.ledger.count({ where: { key } });
            });
            acknowledged.add(key);
          }
        } catch (e) {
          // A KILL QUERY that lands on a running statement is answered 1317 (interrupted): the server's
          // answer, passed to the caller as it is (a DBA's KILL QUERY is never re-run), not a fault here.
          if (errnoOf(e) === 1317) {
            interrupted++;
            continue;
          }
          failed++;
          if (failures.length < 5) failures.push(`${Math.round(performance.now() - start)} ms: ${describeFailure(e)} (errno ${errnoOf(e)})`);
        }
      }
    };

    const killer = async () => {
      for (let n = 0; running(); n++) {
        await sleep(KILL_EVERY_MS);
        // Statements here take a millisecond or so: look a few times for one that is running.
        let busy: number[] = [];
        for (let look = 0; busy.length === 0 && look < 40 && running(); look++) {
          const seen = await busyThreads();
          mostConnections = Math.max(mostConnections, seen.total);
          busy = seen.busy;
        }
        if (busy.length === 0) continue;
        const victim = busy[Math.floor(Math.random() * busy.length)];
        // Mostly the connection (a lost connection mid-statement); now and then only the statement.
        await db.admin(`KILL ${n % 4 === 3 ? "QUERY" : "CONNECTION"} ${victim}`).then(
          () => kills++,
          () => undefined, // it ended meanwhile
        );
      }
    };

    try {
      await Promise.all([...Array.from({ length: CALLERS }, (_, c) => caller(c)), killer()]);
    } finally {
      const ended = prisma.$disconnect().then(
        () => true,
        () => true,
      );
      assert.ok(await Promise.race([ended, sleep(10_000, false, { ref: false })]), "$disconnect() ended within 10 s");
    }

    const rows = await db.admin<any[]>(`SELECT COUNT(*) AS n FROM \`${db.database}\`.Ledger WHERE \`key\` LIKE ?`, [`${prefix}-%`]);
    console.log(
      JSON.stringify({ ops, failed, interrupted, kills, mostConnections, acknowledged: acknowledged.size, rows: Number(rows[0].n), stateChanges: changes.map((c) => `${c.state}: ${c.reason}`), failures }),
    );
    assert.ok(kills >= 10, `the fault happened (${kills} KILLs)`);
    assert.ok(mostConnections >= LIMIT, `the account's limit was reached (${mostConnections} connections seen)`);
    assert.deepEqual(changes.map((c) => `${c.state}: ${c.reason}`), [], "the server was up all along: never declared down");
    assert.equal(failed, 0, `no operation failed: ${failures.join(" | ")}`);
    assert.deepEqual(await duplicateKeys(db), [], "no key has two rows");
    assert.deepEqual(await missingKeys(db, acknowledged), [], "every acknowledged write is there");
  });
});

// The pool holds every connection the account may have (2 of 2), and a COMMIT's reply is lost: no
// side connection can be opened (1226) while the pool keeps its slots, so the verification reads the
// mark over a connection of the pool itself (src/adapter/side.ts borrowFromPool). Seen in CI: the
// soak above failed once with "checking did not tell" after 10 s of 1226.
describe("an account with all its connections in the pool", () => {
  test("a COMMIT's reply lost: verified over a pool connection, the transaction resolves once, one row", { timeout: 30_000 }, async () => {
    const proxy = await startProxy("127.0.0.1", db.port);
    const url = `mysql://${TIGHT_USER}:${secret}@${proxy.host}:${proxy.port}/${db.database}?connectionLimit=2`;
    const retries: unknown[] = [];
    const prisma = new PrismaClient({ adapter: withResilience(new PrismaMariaDb(url), { verifyTimeout: 4000 }) }).$extends(resilience({ onRetry: (r) => void retries.push(r) }));
    const key = `tight-${process.pid}-${Date.now().toString(36)}`;
    try {
      // Both slots taken by the pool (two statements at once), then idle in it.
      await Promise.all([prisma.$queryRawUnsafe("SELECT SLEEP(0.2)"), prisma.$queryRawUnsafe("SELECT SLEEP(0.2)")]);
      await sleep(300);
      const lost = proxy.loseReplyTo("COMMIT");
      const outcome = await within(
        prisma
          .$transaction(async (tx) => {
            await tx.ledger.create({ data: { key, amount: 1 } });
            return "done";
          })
          .then((r) => ({ r }), (e: any) => ({ error: `${e?.name}: ${String(e?.message).split("\n").find((l: string) => l.trim())}` })),
        20_000,
        "the transaction",
      );
      await within(lost, 5_000, "the lost reply");
      const [row] = await db.admin<any[]>(`SELECT COUNT(*) AS n FROM \`${db.database}\`.Ledger WHERE \`key\` = ?`, [key]);
      assert.equal(Number(row.n), 1, "committed once");
      assert.deepEqual(outcome, { r: "done" }, "verified committed");
      assert.equal(retries.length, 0, "not re-run");
    } finally {
      await within(prisma.$disconnect(), 10_000, "$disconnect()").catch(() => undefined);
      await proxy.close();
    }
  });
});
