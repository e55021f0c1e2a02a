// A COMMIT lost with an error the classifier does not name (here a TLS record garbled on its way
// back: ERR_SSL_*, not a lost connection) still has an unknown outcome: with verification on it is
// verified (committed: the result, one row; not committed: re-run once, one row); without, it is
// OutcomeUnknownError with the original as its cause. Errors the server sent stay as they are.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, afterEach, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { PrismaMariaDb } from "@prisma/adapter-mariadb";
import { PrismaClient } from "../generated/prisma/client.ts";
import { classify, isOutcomeUnknown, resilience, serverAnswered, withResilience, type ResilientAdapterOptions, type RetryContext } from "../src/index.ts";
import { ledgerRows, rejectionOf, uniqueKey } from "./support/data.ts";
import { startDatabase, type TestDatabase } from "./support/mariadb.ts";
import { startProxy, type FaultProxy } from "./support/proxy.ts";

let db: TestDatabase;
let ca: string;
let proxy: FaultProxy;
const open: Array<{ $disconnect(): Promise<void> }> = [];

before(async () => {
  db = await startDatabase({ tls: true });
  ca = readFileSync(db.tls!.ca, "utf8");
});
afterEach(async () => {
  for (const prisma of open.splice(0)) {
    const done = prisma.$disconnect().then(() => true, () => true);
    assert.ok(await Promise.race([done, sleep(10_000, false, { ref: false })]), "$disconnect() ended within 10 s");
  }
  await proxy?.close();
});
after(async () => {
  await db?.stop();
});

/** The driver's settings: TLS through the fault proxy, one pooled connection. */
function tlsConfig(): any {
  return { host: proxy.host, port: proxy.port, user: db.user, password: db.password, database: db.database, ssl: { ca }, connectionLimit: 1 };
}

async function tlsClient(adapter: ResilientAdapterOptions = {}) {
  proxy = await startProxy(db.host, db.port);
  const retries: RetryContext[] = [];
  const verified: string[] = [];
  const options = { ...adapter, onCommitVerified: (v: { verdict: string }) => verified.push(v.verdict) };
  const prisma = new PrismaClient({ adapter: withResilience(new PrismaMariaDb(tlsConfig()), options) }).$extends(
    resilience({ deadline: 10_000, onRetry: (ctx) => retries.push(ctx) }),
  );
  open.push(prisma);
  await prisma.ledger.count(); // the pool is open, the commit table checked
  await sleep(200);
  return { prisma, retries, verified };
}

/** Waits for the proxy's fault, or fails the test in 5 s. */
function happened(fault: Promise<void>): Promise<void> {
  return Promise.race([fault, sleep(5000).then(() => assert.fail("the garbled reply never went out"))]);
}

/** The error behind Prisma's, as the driver raised it. */
function socketCodeOf(error: any): string | undefined {
  for (let e = error, i = 0; e && i < 6; e = e.cause, i++) if (typeof e.code === "string" && /^E[A-Z]/.test(e.code)) return e.code;
  return undefined;
}

describe("a COMMIT whose reply is garbled (TLS): an error the classifier does not name", () => {
  test("precondition: the error is none of connection-lost, unavailable, conflict, and not a server answer", async () => {
    const { prisma } = await tlsClient({ verifyCommits: false });
    const garbled = proxy.garbleNextReply(false);
    const error = await rejectionOf(prisma.$queryRaw`SELECT 1`);
    await happened(garbled);
    const code = socketCodeOf(error);
    assert.match(String(code), /^ERR_SSL_|^EPROTO$/, `got ${code}: ${error?.message}`);
    assert.equal(classify(error), "fatal");
    assert.equal(serverAnswered(error), false);
  });

  test("verification on, the COMMIT delivered: verified committed, the callback's result, one row, nothing re-run", async () => {
    const { prisma, retries, verified } = await tlsClient();
    const key = uniqueKey("garbled-commit");
    let runs = 0;
    let garbled: Promise<void> | undefined;
    const result = await prisma.$transaction(async (tx: any) => {
      runs++;
      await tx.ledger.create({ data: { key, amount: 1 } });
      if (runs === 1) garbled = proxy.garbleNextReply(true); // the mark and the COMMIT go next
      return "callback result";
    });
    await happened(garbled!);
    assert.equal(result, "callback result");
    assert.deepEqual(verified, ["committed"]);
    assert.equal(runs, 1, "not re-run");
    assert.equal(retries.length, 0);
    assert.equal(await ledgerRows(db, key), 1);
  });

  test("verification on, the COMMIT swallowed: verified not committed, re-run once, one row", async () => {
    const { prisma, retries, verified } = await tlsClient();
    const key = uniqueKey("garbled-swallowed");
    let runs = 0;
    let garbled: Promise<void> | undefined;
    const result = await prisma.$transaction(async (tx: any) => {
      runs++;
      await tx.ledger.create({ data: { key, amount: 1 } });
      if (runs === 1) garbled = proxy.garbleNextReply(false);
      return runs;
    });
    await happened(garbled!);
    assert.equal(result, 2, "the first run was found not committed and the callback ran again");
    assert.deepEqual(verified, ["not-committed"]);
    assert.equal(retries.length, 1);
    assert.equal(retries[0].errorClass, "connection-lost");
    assert.equal(await ledgerRows(db, key), 1);
  });

  test("verifyCommits: false, the COMMIT delivered: OutcomeUnknownError with the original as its cause, one row", async () => {
    const { prisma, retries } = await tlsClient({ verifyCommits: false });
    const key = uniqueKey("garbled-off");
    let runs = 0;
    let garbled: Promise<void> | undefined;
    const error = await rejectionOf(
      prisma.$transaction(async (tx: any) => {
        runs++;
        await tx.ledger.create({ data: { key, amount: 1 } });
        garbled = proxy.garbleNextReply(true);
      }),
    );
    await happened(garbled!);
    assert.ok(isOutcomeUnknown(error), `got ${error?.name}: ${error?.message}`);
    assert.equal(error.inFlight, "commit");
    assert.match(String(socketCodeOf(error.cause)), /^ERR_SSL_|^EPROTO$/);
    assert.equal(runs, 1);
    assert.equal(retries.length, 0);
    assert.equal(await ledgerRows(db, key), 1, "it had committed: one row");
  });

  test("verifyCommits: false, an autocommit $executeRaw INSERT: OutcomeUnknownError, one row", async () => {
    const { prisma, retries } = await tlsClient({ verifyCommits: false });
    const key = uniqueKey("garbled-autocommit");
    const garbled = proxy.garbleNextReply(true);
    const error = await rejectionOf(prisma.$executeRaw`INSERT INTO Ledger (\`key\`, amount) VALUES (${key}, 1)`);
    await happened(garbled);
    assert.ok(isOutcomeUnknown(error), `got ${error?.name}: ${error?.message}`);
    assert.equal(error.inFlight, "autocommit");
    assert.match(String(socketCodeOf(error.cause)), /^ERR_SSL_|^EPROTO$/);
    assert.equal(retries.length, 0);
    assert.equal(await ledgerRows(db, key), 1);
  });

  test("a garbled read outside a transaction stays as it is (nothing can have committed)", async () => {
    const { prisma, retries } = await tlsClient({ verifyCommits: false });
    const garbled = proxy.garbleNextReply(true);
    const error = await rejectionOf(prisma.$queryRaw`SELECT 1`);
    await happened(garbled);
    assert.ok(!isOutcomeUnknown(error), `got ${error?.name}`);
    assert.match(String(socketCodeOf(error)), /^ERR_SSL_|^EPROTO$/);
    assert.equal(retries.length, 0);
  });
});

describe("errors the server sent at a write stay as they are", () => {
  test("1062 on an autocommit INSERT (verification on and off): P2010, not unknown, not re-run, one row", async () => {
    for (const verifyCommits of [true, false]) {
      const { prisma, retries } = await tlsClient({ verifyCommits });
      const key = uniqueKey("dup-raw");
      await prisma.$executeRaw`INSERT INTO Ledger (\`key\`, amount) VALUES (${key}, 1)`;
      const error = await rejectionOf(prisma.$executeRawUnsafe("INSERT INTO Ledger (`id`, `key`, amount) SELECT id, `key`, amount FROM Ledger WHERE `key` = ?", key));
      assert.ok(!isOutcomeUnknown(error), `got ${error?.name}: ${error?.message}`);
      assert.match(String(error?.message), /1062|Duplicate/);
      assert.equal(retries.length, 0);
      assert.equal(await ledgerRows(db, key), 1);
      await prisma.$disconnect();
      await proxy.close();
    }
  });

  test("1969 (max_statement_time) on an autocommit write: not unknown, not re-run, nothing written", async () => {
    const { prisma, retries } = await tlsClient({ verifyCommits: false });
    const key = uniqueKey("stmt-timeout");
    const error = await rejectionOf(
      prisma.$executeRawUnsafe("SET STATEMENT max_statement_time = 0.2 FOR INSERT INTO Ledger (`key`, amount) SELECT ?, SLEEP(2)", key),
    );
    assert.ok(!isOutcomeUnknown(error), `got ${error?.name}: ${error?.message}`);
    assert.match(String(error?.message), /1969|max_statement_time/);
    assert.equal(retries.length, 0);
    assert.equal(await ledgerRows(db, key), 0);
  });
});
