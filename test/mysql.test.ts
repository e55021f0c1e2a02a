// MySQL 8 as a first-class server. MySQL cannot be installed on the machines this suite runs on, so
// the first block is built by hand from MySQL's documented shapes (the handshake's version string,
// the rows its identity queries return); it says nothing a real server has confirmed. The second
// block runs the same guarantees against a real MySQL 8.0.22+ when TEST_MYSQL_URL names one (its
// user needs to create tables in that database); without it, it is reported as skipped.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import mariadb from "mariadb";
import { flavorOf, processlist, serverIdentityOf, serverSql, sessionIdentityOf, sessionSql } from "../src/mysql/identity.ts";
import { classify } from "../src/index.ts";
import { ResilientTransaction } from "../src/adapter/transaction.ts";
import { resilientClient, withParams, type ResilientHandle } from "./support/clients.ts";
import { ledgerRows, uniqueKey } from "./support/data.ts";
import { connectDatabase, type TestDatabase } from "./support/mariadb.ts";
import { startProxy, type FaultProxy } from "./support/proxy.ts";

describe("MySQL 8 shapes (hand-built, not from a real server)", () => {
  test("the flavour comes from the handshake: MySQL's version string has no 'MariaDB'", () => {
    assert.equal(flavorOf({ info: { serverVersion: { raw: "8.0.36", mariaDb: false, major: 8 } } }), "mysql");
    assert.equal(flavorOf({ info: { serverVersion: { raw: "10.11.19-MariaDB-0+deb12u1", mariaDb: true } } }), "mariadb");
    // Not known (no handshake yet, another driver): the MariaDB statements, whose failure only means "no identity".
    assert.equal(flavorOf({}), "mariadb");
  });

  test("MySQL's identity statements use what MySQL 8 has (no information_schema.GLOBAL_STATUS, no @@in_transaction)", () => {
    for (const sql of [sessionSql("mysql"), serverSql("mysql")]) {
      assert.doesNotMatch(sql, /information_schema\.GLOBAL_STATUS/i);
      assert.doesNotMatch(sql, /in_transaction|wsrep/i);
      assert.match(sql, /performance_schema\.global_status/);
      assert.match(sql, /@@server_uuid/);
    }
    assert.match(sessionSql("mysql"), /performance_schema\.processlist p/);
    assert.equal(processlist("mysql"), "performance_schema.processlist");
    assert.equal(processlist("mariadb"), "information_schema.PROCESSLIST");
  });

  test("a MySQL identity row: the session, its server, the server's uuid", () => {
    const row = { id: 42n, user: "app", host: "10.0.0.7:51234", h: "db-1", p: 3306, sid: 1, suuid: "3e11fa47-71ca-11e1-9e33-c80aa9429562", wt: 28800, started: 1764000000n };
    const identity = sessionIdentityOf(row);
    assert.deepEqual(identity, {
      threadId: 42,
      user: "app",
      host: "10.0.0.7:51234",
      server: { hostname: "db-1", port: 3306, started: 1764000000, serverId: 1, serverUuid: "3e11fa47-71ca-11e1-9e33-c80aa9429562" },
      waitTimeout: 28800,
    });
    assert.deepEqual(serverIdentityOf(row), identity!.server);
  });

  // A connection as the mariadb driver hands it to the adapter, with the handshake of `serverVersion`;
  // it records every text command the transaction sends itself (Prisma's own go through `inner`).
  // `hasInTransaction: false` answers `SELECT @@in_transaction` as MySQL does (1193).
  function connectionOf(serverVersion: { raw: string; mariaDb: boolean }, hasInTransaction: boolean) {
    const sent: string[] = [];
    const query = async (sql: string) => {
      sent.push(sql);
      if (!hasInTransaction && /@@in_transaction/.test(sql)) {
        throw Object.assign(new Error("Unknown system variable 'in_transaction'"), { errno: 1193, sqlState: "HY000", sqlMessage: "Unknown system variable 'in_transaction'", code: "ER_UNKNOWN_SYSTEM_VARIABLE" });
      }
      return [{ t: 1 }];
    };
    // The pool hands out a new wrapper (mariadb's ConnectionPromise) for every getConnection();
    // what they share is the connection's `info`.
    const info = { status: 1, serverVersion };
    return { conn: () => ({ info, query }), sent };
  }
  function transactionOn(conn: object) {
    const inner: any = {
      provider: "mysql",
      adapterName: "fake",
      options: {},
      conn,
      queryRaw: async () => ({ rows: [] }),
      executeRaw: async () => 1,
      commit: async () => undefined,
      rollback: async () => undefined,
    };
    const handler: any = { suspect: async () => undefined, killGhost: async () => undefined };
    return new ResilientTransaction(inner, handler);
  }
  async function writeAndCommit(conn: () => object) {
    const tx = transactionOn(conn());
    await tx.executeRaw({ sql: "UPDATE t SET a = 1" });
    await tx.commit();
  }

  test("MySQL answers the `SELECT @@in_transaction` guard with 1193 once per connection: the COMMIT still commits, no guard afterwards", async () => {
    const { conn, sent } = connectionOf({ raw: "8.0.36", mariaDb: false }, false);
    await writeAndCommit(conn);
    await writeAndCommit(conn);
    await writeAndCommit(conn);
    assert.deepEqual(sent, ["SELECT @@in_transaction AS t"]);
  });

  test("a proxy announcing MySQL in front of MariaDB (Galera): the guard still goes with every COMMIT", async () => {
    const { conn, sent } = connectionOf({ raw: "8.0.11", mariaDb: false }, true);
    await writeAndCommit(conn);
    await writeAndCommit(conn);
    assert.deepEqual(sent, ["SELECT @@in_transaction AS t", "SELECT @@in_transaction AS t"]);
  });

  test("on MariaDB the guard goes with every COMMIT (a Galera node can end a transaction silently)", async () => {
    const { conn, sent } = connectionOf({ raw: "10.11.19-MariaDB", mariaDb: true }, true);
    await writeAndCommit(conn);
    assert.deepEqual(sent, ["SELECT @@in_transaction AS t"]);
  });

  test("4031 is MySQL's inactivity disconnect (MySQL 8.0.24+; on MariaDB it means something else)", () => {
    const error = { name: "DriverAdapterError", cause: { kind: "mysql", code: 4031, state: "HY000", message: "The client was disconnected by the server because of inactivity." } };
    assert.equal(classify(error, { flavor: "mysql" }), "connection-lost");
    assert.equal(classify(error, { flavor: "mariadb" }), "fatal");
  });
});

const MYSQL_URL = process.env.TEST_MYSQL_URL;

// Each test is reported as skipped (with the reason) when no MySQL is given: never as a pass.
const skip = MYSQL_URL ? false : "set TEST_MYSQL_URL to a MySQL 8.0.22+ server's URL to run";

describe("a real MySQL 8 (TEST_MYSQL_URL)", () => {
  let db: TestDatabase;
  const handles: ResilientHandle[] = [];
  before(async () => {
    if (MYSQL_URL) db = await connectDatabase(MYSQL_URL);
  });
  after(async () => {
    for (const h of handles) await h.prisma.$disconnect().catch(() => undefined);
    await db?.stop();
  });

  test("a connection's identity is read: its own session, its server with server_id and server_uuid", { skip }, async () => {
    const conn = await mariadb.createConnection(MYSQL_URL!.replace(/^mysql:/, "mariadb:"));
    try {
      assert.equal(flavorOf(conn), "mysql");
      const [row] = await conn.query(sessionSql("mysql"));
      const identity = sessionIdentityOf(row);
      assert.ok(identity, "an identity");
      assert.equal(identity.threadId, Number(conn.threadId));
      assert.ok(identity.server.serverUuid, "server_uuid");
      assert.deepEqual(serverIdentityOf((await conn.query(serverSql("mysql")))[0]), identity.server);
    } finally {
      await conn.end();
    }
  });

  async function throughProxy(run: (proxy: FaultProxy, url: string) => Promise<void>) {
    const proxy = await startProxy(db.host, db.port);
    try {
      await run(proxy, withParams(proxy.urlFor(MYSQL_URL!), { connectionLimit: 2 }));
    } finally {
      await proxy.close();
    }
  }

  test("COMMIT delivered, its reply lost: verified as committed, one row, nothing re-run", { skip }, async () => {
    await throughProxy(async (proxy, url) => {
      const h = resilientClient(url);
      handles.push(h);
      const key = uniqueKey("mysql-lost");
      await h.prisma.ledger.count();
      await sleep(200);
      const lost = proxy.loseReplyTo("COMMIT");
      const row = await h.prisma.ledger.create({ data: { key, amount: 1 } });
      await lost;
      assert.equal(row.key, key);
      assert.equal(h.retries.length, 0);
      assert.equal(await ledgerRows(db, key), 1);
    });
  });

  test("COMMIT swallowed before the server: re-run once, one row", { skip }, async () => {
    await throughProxy(async (proxy, url) => {
      const h = resilientClient(url);
      handles.push(h);
      const key = uniqueKey("mysql-swallow");
      await h.prisma.ledger.count();
      await sleep(200);
      const swallowed = proxy.swallow("COMMIT");
      await h.prisma.ledger.create({ data: { key, amount: 1 } });
      await swallowed;
      assert.equal(h.retries.length, 1);
      assert.equal(await ledgerRows(db, key), 1);
    });
  });
});
