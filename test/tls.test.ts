// The doctor, tunePool and readServerTimeouts connect with every option of the URL or config: TLS
// above all (against a user created REQUIRE SSL, with a certificate the harness makes), never
// falling back to plaintext; socketPath, initSql and the rest too. Bad input is a TypeError naming
// what is wrong.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import mariadb from "mariadb";
import { PrismaMariaDb } from "@prisma/adapter-mariadb";
import { PrismaClient } from "../generated/prisma/client.ts";
import { readServerTimeouts, tunePool } from "../src/index.ts";
import { startDatabase, type TestDatabase } from "./support/mariadb.ts";

const TLS_USER = "tlsonly";
const tlsPassword = randomBytes(9).toString("base64url");

describe("TLS and connection options", () => {
  let db: TestDatabase;
  let ca: string;
  const tlsUrl = (query = "ssl=true") => `mysql://${TLS_USER}:${tlsPassword}@127.0.0.1:${db.port}/${db.database}?${query}`;
  const tlsConfig = () => ({ host: "127.0.0.1", port: db.port, user: TLS_USER, password: tlsPassword, database: db.database, ssl: { ca } });
  const doctor = (env: Record<string, string>, ...args: string[]) => {
    const res = spawnSync(process.execPath, ["--import", "tsx", "src/tuning/cli.ts", "doctor", ...args], {
      encoding: "utf8",
      env: { ...process.env, DATABASE_URL: "", NODE_EXTRA_CA_CERTS: "", ...env },
      timeout: 30_000,
    });
    return { code: res.status, stdout: res.stdout, all: res.stdout + res.stderr };
  };

  before(async () => {
    db = await startDatabase({ tls: true });
    ca = readFileSync(db.tls!.ca, "utf8");
    await db.admin(`CREATE USER '${TLS_USER}'@'%' IDENTIFIED BY ? REQUIRE SSL`, [tlsPassword]);
    await db.admin(`GRANT ALL ON \`${db.database}\`.* TO '${TLS_USER}'@'%'`);
  });
  after(async () => {
    await db?.stop();
  });

  test("precondition: the user is TLS-only (plaintext is refused, TLS with the CA works)", async () => {
    const { ssl, ...plain } = tlsConfig();
    await assert.rejects(mariadb.createConnection({ ...plain, connectTimeout: 2000 }), (e: any) => e.errno === 1045);
    const conn = await mariadb.createConnection({ ...tlsConfig(), connectTimeout: 2000 });
    await conn.end();
  });

  test("tunePool with a config object keeps `ssl`: reads the server over TLS, and its config works with PrismaMariaDb", async () => {
    const input = tlsConfig();
    const review = await tunePool(input);
    assert.match(String(review.server.tls), /^TLS_|AES|CHACHA/, `cipher: ${review.server.tls}`);
    assert.equal((review.config as any).ssl.ca, ca, "the recommended config keeps ssl");
    assert.deepEqual(Object.keys(input.ssl), ["ca"], "the caller's ssl object is not written to");
    const prisma = new PrismaClient({ adapter: new PrismaMariaDb(review.config as any) });
    try {
      assert.equal(typeof (await prisma.user.count()), "number");
    } finally {
      await prisma.$disconnect();
    }
  });

  test("the doctor with ?ssl=true (CA trusted through NODE_EXTRA_CA_CERTS): connects over TLS, the recommended URL keeps ssl=true", async () => {
    const r = doctor({ NODE_EXTRA_CA_CERTS: db.tls!.ca }, "--url", tlsUrl());
    assert.equal(r.code, 1, `defaults are unsafe, not "cannot connect": ${r.stdout.split("\n")[0]}`);
    assert.match(r.stdout, /^tls {9}yes \(/m);
    assert.match(r.stdout, /^recommended mysql:\/\/tlsonly:\*\*\*\*@127\.0\.0\.1:\d+\/app\?ssl=true&/m);
    assert.ok(!r.all.includes(tlsPassword));
    // The recommended URL, checked again: still TLS, now safe.
    const tuned = (await tunePool(tlsUrl(), { server: { waitTimeout: 28800 } })).url!;
    const again = doctor({ NODE_EXTRA_CA_CERTS: db.tls!.ca }, "--url", tuned, "--json");
    assert.equal(again.code, 0, again.stdout.slice(0, 300));
    assert.match(JSON.parse(again.stdout).server.tls, /./);
  });

  test("never a downgrade: ssl=true with a certificate the client cannot verify fails, even for a user plaintext would let in", async () => {
    const appTls = `mysql://${db.user}:${db.password}@127.0.0.1:${db.port}/${db.database}?ssl=true`;
    await assert.rejects(readServerTimeouts(appTls), (e: any) => {
      assert.equal(e.name, "ConnectFailedError");
      assert.match(e.message, /certificate/i);
      assert.ok(!e.message.includes(db.password));
      return true;
    });
    const r = doctor({}, "--url", appTls, "--json");
    assert.equal(r.code, 2, r.stdout);
    assert.match(JSON.parse(r.stdout).error.message, /certificate/i);
    assert.ok(!r.all.includes(db.password));
  });

  test("every other option of the URL is kept too: socketPath, initSql", async () => {
    const socket = (db as any).socket as string;
    // Port 1 has nothing listening: only the socket can answer.
    const viaSocket = await readServerTimeouts(
      `mysql://${db.user}:${db.password}@localhost:1/${db.database}?socketPath=${encodeURIComponent(socket)}`,
    );
    assert.equal(viaSocket.flavor, "mariadb");
    const withInit = await readServerTimeouts(`${db.url}?initSql=${encodeURIComponent("SET SESSION wait_timeout = 77")}`);
    assert.equal(withInit.sessionWaitTimeout, 77, "the session the app gets, initSql applied");
    const tls = await readServerTimeouts(tlsUrl(`ssl=true&initSql=${encodeURIComponent("SET SESSION wait_timeout = 66")}`)).catch((e) => e);
    assert.match(String(tls?.message), /certificate/i, "untrusted CA in this process: refused, not plaintext");
  });

  const invalid: Array<[string, () => Promise<unknown>, RegExp]> = [
    ["a URL without a database", () => readServerTimeouts("mysql://u:pw-s3cr3t@127.0.0.1:1"), /names no database/],
    ["a number", () => readServerTimeouts(42 as any), /connection string or a mariadb pool config/],
    ["an unknown tunePool option", () => tunePool("mysql://u:pw-s3cr3t@127.0.0.1:1/db", { marginn: 3 } as any), /tunePool\(\): unknown option `marginn`/],
    ["an unknown readServerTimeouts option", () => readServerTimeouts("mysql://u:pw-s3cr3t@127.0.0.1:1/db", { timeout: 3 } as any), /unknown option `timeout`/],
    ["a negative connectTimeout", () => readServerTimeouts("mysql://u:pw-s3cr3t@127.0.0.1:1/db", { connectTimeout: -1 }), /connectTimeout/],
    ["a bad percent-escape", () => readServerTimeouts("mysql://u:pw%s3cr3t@127.0.0.1:1/db"), /password holds a `%`/],
    ["a URL number the driver misreads, before connecting", () => tunePool("mysql://u:pw-s3cr3t@127.0.0.1:1/db?socketTimeout=1e3"), /`socketTimeout=1e3`.*as 1\)/],
  ];
  for (const [name, call, message] of invalid) {
    test(`rejects ${name} with a TypeError that says what is wrong`, async () => {
      await assert.rejects(call(), (e: unknown) => {
        assert.ok(e instanceof TypeError, `${(e as Error)?.name}: ${(e as Error)?.message}`);
        assert.match((e as Error).message, message);
        assert.ok(!(e as Error).message.includes("s3cr3t"));
        return true;
      });
    });
  }
});
