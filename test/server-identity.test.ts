// One server per identity. A primary and a replica on different addresses can share the host name and
// the port (two servers on one machine here; containers elsewhere). After a lost COMMIT reply a proxy
// or a VIP may send the verifying side connection to the other one: that is not "the same server,
// started later" (which would make the old session gone and a mark missing there read as "not
// committed": a re-run, a duplicate). The server id tells them apart.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { isOutcomeUnknown, type CommitVerification } from "../src/index.ts";
import { restartOf, sameServer, serverIdentityOf, type ServerIdentity } from "../src/mysql/identity.ts";
import { withParams } from "./support/clients.ts";
import { ledgerRows, rejectionOf, uniqueKey } from "./support/data.ts";
import { startDatabase, type TestDatabase } from "./support/mariadb.ts";
import { startProxy } from "./support/proxy.ts";
import { faultSuite } from "./support/suite.ts";

describe("server identity (hand-built identities)", () => {
  const a: ServerIdentity = { hostname: "db", port: 3306, started: 1000, serverId: 1 };
  test("a later start with the same host name, port and server id is a restart", () => {
    assert.equal(restartOf({ ...a, started: 1010 }, a), true);
    assert.equal(sameServer({ ...a, started: 1001 }, a), true);
  });
  test("another server id (a replica on another address) is neither the same server nor a restart", () => {
    assert.equal(restartOf({ ...a, started: 1010, serverId: 2 }, a), false);
    assert.equal(sameServer({ ...a, serverId: 2 }, a), false);
  });
  test("MySQL's server_uuid: kept across a restart, another server has another one", () => {
    const m: ServerIdentity = { ...a, serverUuid: "8a94f357-aab4-11df-86ab-c80aa9429562" };
    assert.equal(restartOf({ ...m, started: 1010 }, m), true);
    assert.equal(restartOf({ ...m, started: 1010, serverUuid: "1b2c3d4e-aab4-11df-86ab-c80aa9429562" }, m), false);
    assert.equal(sameServer({ ...m, serverUuid: "1b2c3d4e-aab4-11df-86ab-c80aa9429562" }, m), false);
    // One names a uuid, the other cannot (MariaDB): not the same server.
    assert.equal(sameServer(a, m), false);
  });
  test("rows as the identity queries return them (MariaDB shape recorded; MySQL shape hand-built)", () => {
    assert.deepEqual(serverIdentityOf({ h: "db", p: 3306, sid: 7n, started: 1000 }), { hostname: "db", port: 3306, started: 1000, serverId: 7 });
    assert.deepEqual(serverIdentityOf({ h: "db", p: 3306, sid: 7, suuid: "u-1", started: "1000" }), { hostname: "db", port: 3306, started: 1000, serverId: 7, serverUuid: "u-1" });
    assert.equal(serverIdentityOf({ h: "db", p: 3306, started: null }), undefined);
  });
});

let primary: TestDatabase;
let replica: TestDatabase | undefined;
const client = faultSuite((started) => (primary = started), { checkDuplicates: true });

describe("a lost COMMIT verified on another server with the same host name and port", () => {
  before(async () => {
    // Started at least 2 s after the primary: to a check by host name, port and start time alone it
    // looks like the primary restarted.
    await sleep(2200);
    replica = await startDatabase({ host: "127.0.0.2", port: primary.port, serverId: 2, password: primary.password });
  });
  after(async () => {
    await replica?.stop();
  });

  test("the side connection reaches the other server: never taken for a restart, nothing re-run", async () => {
    const other = replica!;
    const proxy = await startProxy(primary.host, primary.port);
    try {
      const verdicts: CommitVerification[] = [];
      const url = withParams(proxy.urlFor(primary.url), { connectionLimit: 2 });
      const { prisma, retries } = client(url, { adapter: { verifyTimeout: 1500, onCommitVerified: (v) => verdicts.push(v) } });
      const key = uniqueKey("identity-other-server");
      await prisma.ledger.count();
      await sleep(200);
      // The COMMIT reaches the primary and commits; its reply is lost; from now on the proxy sends
      // new connections (the verification's, a re-run's) to the other server.
      const lost = proxy.loseReplyTo("COMMIT", async () => {
        proxy.route = () => ({ host: other.host, port: other.port });
      });
      const error = await rejectionOf(prisma.ledger.create({ data: { key, amount: 1 } }), "OutcomeUnknownError");
      await lost;
      assert.ok(isOutcomeUnknown(error), `OutcomeUnknownError, got ${error?.name}: ${error?.message}`);
      assert.equal(error.verificationIncomplete, true);
      assert.deepEqual(verdicts.map((v) => v.verdict), ["unknown"]);
      assert.equal(retries.length, 0, "nothing re-run");
      assert.equal(await ledgerRows(primary, key), 1, "committed on the primary");
      assert.equal(await ledgerRows(other, key), 0, "not written again on the other server");
    } finally {
      await proxy.close();
    }
  });
});
