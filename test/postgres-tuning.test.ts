// tunePool, readServerTimeouts and the doctor on PostgreSQL: the review's decisions and input
// validation (pure), then against a real server the harness starts: the settings read right (URL
// options kept), connect failures named with no password anywhere, the doctor's text and JSON,
// a proxy and PgBouncer detected, and idle_session_timeout: bare Prisma on PrismaPg's default pool
// fails when a checkout races the server's end, on the tuned config it does not.
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { chownSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { inspect } from "node:util";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { PrismaPg } from "@prisma/adapter-pg";
import pg from "pg";
import { PrismaClient } from "../generated/postgres/client.ts";
import { ConnectFailedError, readServerTimeouts, reviewPgPool, runDoctor, tunePgPool, tunePool, type PgServerSettings } from "../src/index.ts";
import { dialectOf } from "../src/tuning/pg-input.ts";
import { startProxy } from "./support/proxy.ts";
import { startPostgres, type PostgresServer } from "./support/postgres.ts";
import { within } from "./support/pg-clients.ts";

const SERVER: PgServerSettings = { dialect: "postgres", idleSessionTimeout: 3000, maxConnections: 100, reservedConnections: 3, roleConnLimit: -1, databaseConnLimit: -1 };
const SECRET = "s3cr3t-pw";
const URL_WITH_SECRET = `postgresql://app:${SECRET}@db.internal:5432/shop`;
const by = (r: { settings: Array<{ setting: string }> }) => Object.fromEntries(r.settings.map((s) => [s.setting, s])) as Record<string, any>;

describe("reviewPgPool (pure)", () => {
  test("PrismaPg(url) defaults against idle_session_timeout 3 s: idle clients retired by 2 s, waits bounded, keepalive on", () => {
    const r = reviewPgPool(URL_WITH_SECRET, SERVER);
    assert.equal(r.verdict, "unsafe");
    const s = by(r);
    assert.equal(s.idleTimeoutMillis.verdict, "unsafe", "10000 ms is not below 3000 ms");
    assert.equal(s.connectionTimeoutMillis.verdict, "unsafe", "0 waits forever");
    assert.equal(s.keepAlive.verdict, "improve");
    assert.equal(r.retireAfter, 2);
    assert.deepEqual(r.recommended, { max: 10, min: 0, idleTimeoutMillis: 2000, connectionTimeoutMillis: 5000, keepAlive: true, keepAliveInitialDelayMillis: 10_000 });
    assert.equal(r.config.connectionString, URL_WITH_SECRET, "the config keeps the password");
    assert.equal(r.config.idleTimeoutMillis, 2000);
    assert.equal(r.redactedConfig.connectionString, "postgresql://app:****@db.internal:5432/shop");
    for (const text of [JSON.stringify(r), inspect(r, { depth: 9 }), String(Object.keys(r))]) assert.ok(!text.includes(SECRET), text);
  });

  test("explicit safe settings are kept; each unsafe one is replaced and says why", () => {
    const ok = reviewPgPool({ connectionString: URL_WITH_SECRET, max: 20, idleTimeoutMillis: 1500, connectionTimeoutMillis: 3000, keepAlive: true, keepAliveInitialDelayMillis: 5000, application_name: "shop" }, SERVER);
    assert.equal(ok.verdict, "ok", JSON.stringify(ok.settings));
    assert.deepEqual(ok.recommended, { max: 20, min: 0, idleTimeoutMillis: 1500, connectionTimeoutMillis: 3000, keepAlive: true, keepAliveInitialDelayMillis: 5000 });
    assert.equal(ok.config.application_name, "shop", "the input's other options are kept");
    const race = by(reviewPgPool({ connectionString: URL_WITH_SECRET, idleTimeoutMillis: 2500, min: 2 }, SERVER));
    assert.equal(race.idleTimeoutMillis.verdict, "improve", "within the margin");
    assert.equal(race.idleTimeoutMillis.recommended, 2000);
    assert.equal(race.min.verdict, "improve");
    assert.equal(race.min.recommended, 0);
    const never = by(reviewPgPool({ connectionString: URL_WITH_SECRET, idleTimeoutMillis: 0, connectionTimeoutMillis: 60_000 }, SERVER));
    assert.equal(never.idleTimeoutMillis.verdict, "unsafe");
    assert.match(never.idleTimeoutMillis.reason, /0 \(never\)/);
    assert.equal(never.connectionTimeoutMillis.verdict, "improve");
    const at = by(reviewPgPool({ connectionString: URL_WITH_SECRET, idleTimeoutMillis: 3000 }, SERVER));
    assert.equal(at.idleTimeoutMillis.verdict, "unsafe", "idleTimeoutMillis = idle_session_timeout");
  });

  test("a network idle limit: keepalive probes before it, idle clients retired before it", () => {
    const r = reviewPgPool(URL_WITH_SECRET, { ...SERVER, idleSessionTimeout: 0 }, { networkIdleTimeout: 60 });
    const s = by(r);
    assert.equal(r.retireAfter, 54);
    assert.equal(s.keepAlive.verdict, "unsafe");
    assert.equal(s.keepAliveInitialDelayMillis.recommended, 54_000);
    assert.equal(s.idleTimeoutMillis.verdict, "ok", "10 s is below 54 s");
    // Node reads whole seconds: 500 ms is the OS default (7200 s on Linux), far above 60 s.
    const half = by(reviewPgPool({ connectionString: URL_WITH_SECRET, keepAlive: true, keepAliveInitialDelayMillis: 500 }, SERVER, { networkIdleTimeout: 60 }));
    assert.equal(half.keepAliveInitialDelayMillis.verdict, "unsafe");
    assert.match(half.keepAliveInitialDelayMillis.reason, /OS default/);
    const late = by(reviewPgPool({ connectionString: URL_WITH_SECRET, keepAlive: true, keepAliveInitialDelayMillis: 90_000 }, SERVER, { networkIdleTimeout: 60 }));
    assert.equal(late.keepAliveInitialDelayMillis.verdict, "unsafe");
  });

  test("no idle limit at all: idleTimeoutMillis is kept", () => {
    const r = by(reviewPgPool(URL_WITH_SECRET, { ...SERVER, idleSessionTimeout: 0 }));
    assert.equal(r.idleTimeoutMillis.verdict, "ok");
    assert.equal(r.idleTimeoutMillis.recommended, 10_000);
  });

  test("max is checked against max_connections less the reserved, the role's and the database's CONNECTION LIMIT", () => {
    assert.equal(by(reviewPgPool(URL_WITH_SECRET, { ...SERVER, roleConnLimit: 10 })).max.verdict, "unsafe", "= the role limit: the side connection is refused");
    const role = by(reviewPgPool(URL_WITH_SECRET, { ...SERVER, roleConnLimit: 5 })).max;
    assert.equal(role.recommended, 4);
    assert.match(role.reason, /role's CONNECTION LIMIT \(5\)/);
    assert.match(by(reviewPgPool({ connectionString: URL_WITH_SECRET, max: 97 }, SERVER)).max.reason, /max_connections \(100\) less 3 reserved/);
    assert.equal(by(reviewPgPool({ connectionString: URL_WITH_SECRET, max: 96 }, SERVER)).max.verdict, "ok");
    assert.equal(by(reviewPgPool(URL_WITH_SECRET, { ...SERVER, databaseConnLimit: 3 })).max.recommended, 2);
  });

  test("which database: the scheme, connectionString or a pg-only key; mixed keys and strangers are TypeErrors without the password", () => {
    assert.equal(dialectOf("postgres://u@h/db"), "postgres");
    assert.equal(dialectOf("POSTGRESQL://u@h/db"), "postgres");
    assert.equal(dialectOf("mysql://u@h/db"), "mysql");
    assert.equal(dialectOf({ host: "h", user: "u", database: "d" }), "mysql", "a bare object stays MySQL, as before");
    assert.equal(dialectOf({ host: "h", database: "d", max: 5 }), "postgres");
    const rejects: Array<[string, () => unknown, RegExp]> = [
      ["mixed keys", () => dialectOf({ host: "h", max: 5, connectionLimit: 5 }), /node-postgres key \(`max`\) and a mariadb key \(`connectionLimit`\)/],
      ["a mysql connectionString", () => dialectOf({ connectionString: `mysql://u:${SECRET}@h/db` }), /must be a postgres/],
      ["another scheme", () => dialectOf(`redis://u:${SECRET}@h/0`), /got redis:\/\//],
      ["maxQueryMs", () => reviewPgPool(URL_WITH_SECRET, SERVER, { maxQueryMs: 1000 }), /MySQL\/MariaDB option/],
      ["a negative setting", () => reviewPgPool({ connectionString: URL_WITH_SECRET, idleTimeoutMillis: -1 }, SERVER), /`idleTimeoutMillis` must be a non-negative number/],
      ["keepAlive not boolean", () => reviewPgPool({ connectionString: URL_WITH_SECRET, keepAlive: "yes" }, SERVER), /keepAlive/],
      ["a margin as big as the limit", () => reviewPgPool(URL_WITH_SECRET, SERVER, { margin: 3 }), /margin/],
      ["an unknown option", () => reviewPgPool(URL_WITH_SECRET, SERVER, { nope: 1 } as any), /unknown option `nope`/],
      ["an unparsable URL", () => reviewPgPool(`postgresql://app:${SECRET}@h:99999/db`, SERVER), /not a valid postgres connection string/],
    ];
    for (const [name, call, message] of rejects) {
      assert.throws(call, (e: unknown) => e instanceof TypeError && message.test((e as Error).message) && !(e as Error).message.includes(SECRET), name);
    }
  });

  test("pool settings written into the URL are flagged: pg-pool reads them only from the config", () => {
    const r = reviewPgPool(`${URL_WITH_SECRET}?idleTimeoutMillis=1000&sslmode=require`, SERVER);
    assert.equal(r.warnings.length, 1, String(r.warnings));
    assert.match(r.warnings[0]!, /`idleTimeoutMillis` in the connection string is ignored/);
    assert.equal(r.current.idleTimeoutMillis, 10_000);
  });

  test("tunePool checks its options before connecting", async () => {
    await assert.rejects(tunePool(`postgresql://u:${SECRET}@127.0.0.1:1/db`, { margin: -1 }), (e: unknown) => e instanceof TypeError && /margin/.test((e as Error).message));
  });
});

describe("against a live PostgreSQL", () => {
  let server: PostgresServer;
  before(async () => {
    server = await startPostgres();
  });
  after(async () => {
    await server?.stop();
  });
  const reset = async () => {
    for (const name of ["idle_session_timeout", "idle_in_transaction_session_timeout", "statement_timeout", "tcp_keepalives_idle"]) await server.admin(`ALTER SYSTEM RESET ${name}`);
    await server.admin("SELECT pg_reload_conf()");
    await server.admin(`ALTER ROLE ${server.user} CONNECTION LIMIT -1`);
  };
  const withPassword = (password: string, path = `/${server.database}`) => {
    const u = new URL(server.url);
    u.password = password;
    u.pathname = path;
    return u.toString();
  };
  const doctor = (...args: string[]) => {
    const res = spawnSync(process.execPath, ["--import", "tsx", "src/tuning/cli.ts", "doctor", ...args], { encoding: "utf8", env: { ...process.env, DATABASE_URL: "" }, timeout: 30_000 });
    return { code: res.status, stdout: res.stdout, all: res.stdout + res.stderr };
  };

  test("reads the server's settings as the app's sessions get them, and tunes below them", async () => {
    try {
      await server.setSystem("idle_session_timeout", "3000");
      await server.setSystem("idle_in_transaction_session_timeout", "1500");
      await server.setSystem("statement_timeout", "7s");
      await server.setSystem("tcp_keepalives_idle", "60");
      await server.admin(`ALTER ROLE ${server.user} CONNECTION LIMIT 20`);
      const s = await readServerTimeouts(server.url as `postgresql://${string}`);
      assert.equal(s.dialect, "postgres");
      assert.match(s.version!, /^15\./);
      assert.equal(s.idleSessionTimeout, 3000);
      assert.equal(s.idleInTransactionSessionTimeout, 1500);
      assert.equal(s.statementTimeout, 7000);
      assert.equal(s.tcpKeepalivesIdle, 60);
      assert.equal(s.maxConnections, 200);
      assert.equal(s.roleConnLimit, 20);
      assert.equal(s.databaseConnLimit, -1);
      assert.equal(s.tls, false);
      assert.equal(s.pooler?.detected, false);
      const r = await tunePool(server.url as `postgresql://${string}`);
      assert.ok(r.recommended.idleTimeoutMillis < 3000, `idleTimeoutMillis ${r.recommended.idleTimeoutMillis} below idle_session_timeout`);
      assert.equal(r.recommended.connectionTimeoutMillis, 5000);
      assert.equal(r.recommended.max, 10, "below the role's 20");
      assert.ok(r.notes.some((n) => /idle_in_transaction_session_timeout 1500 ms/.test(n)), String(r.notes));
      // A URL typed `string` dispatches by its scheme at run time too.
      assert.equal(((await tunePool(server.url)) as unknown as { dialect: string }).dialect, "postgres");
    } finally {
      await reset();
    }
  });

  test("every option of the URL is kept: `options` reaches the server, sslmode=verify-full is never downgraded", async () => {
    const u = new URL(server.url);
    u.searchParams.set("options", "-c statement_timeout=4321");
    const s = await readServerTimeouts(u.toString() as `postgresql://${string}`);
    assert.equal(s.statementTimeout, 4321);
    const cfg = await tunePgPool({ connectionString: server.url, statement_timeout: 1234 });
    assert.equal(cfg.server.statementTimeout, 1234, "a config's statement_timeout is sent as pg sends it");
    u.searchParams.set("sslmode", "verify-full");
    await assert.rejects(within(readServerTimeouts(u.toString() as `postgresql://${string}`), 5000, "ssl"), (e: unknown) => e instanceof ConnectFailedError && /SSL/i.test((e as Error).message));
  });

  test("connect failures are named at once, with no password in message, stack, cause or inspect()", async () => {
    const cases: Array<[string, string]> = [
      ["auth", withPassword("wrong-s3cr3t")],
      ["unknown-database", withPassword(server.password, "/nodb")],
      ["refused", `postgresql://app:wrong-s3cr3t@127.0.0.1:1/app`],
      // The role's CONNECTION LIMIT 0 below: 53300 "too many connections for role".
      ["too-many-connections", server.url],
    ];
    try {
      for (const [reason, url] of cases) {
        if (reason === "too-many-connections") await server.admin(`ALTER ROLE ${server.user} CONNECTION LIMIT 0`);
        const started = performance.now();
        const error = await within(readServerTimeouts(url as `postgresql://${string}`).then(() => undefined, (e) => e), 5000, reason);
        const elapsed = performance.now() - started;
        assert.ok(error instanceof ConnectFailedError, `${reason}: ${error}`);
        assert.equal(error.reason, reason);
        assert.ok(elapsed < 2000, `${reason} in ${Math.round(elapsed)} ms`);
        for (const text of [error.message, String(error.stack), inspect(error, { depth: 9 }), JSON.stringify(error.meta)]) {
          assert.ok(!text.includes("wrong-s3cr3t") && !text.includes(server.password), `${reason}: ${text}`);
        }
      }
    } finally {
      await reset();
    }
  });

  test("doctor: text report, exit 1 for PrismaPg(url)'s defaults, the password never printed", () => {
    const r = doctor("--url", server.url);
    assert.equal(r.code, 1, r.all);
    assert.match(r.stdout, /^server {6}postgresql 15\./m);
    assert.match(r.stdout, /^timeouts {4}idle_session_timeout 0 \(off\)/m);
    assert.match(r.stdout, /connectionTimeoutMillis\s+0\s+5000\s+UNSAFE/);
    assert.match(r.stdout, /^recommended new PrismaPg\(\{"connectionString":"postgresql:\/\/app:\*\*\*\*@127\.0\.0\.1/m);
    assert.ok(!r.all.includes(server.password));
  });

  test("doctor --json: the shape a program reads; a wrong password is exit 2, reason auth", async () => {
    const r = doctor("--url", server.url, "--json", "--network-idle-timeout", "300");
    assert.equal(r.code, 1, r.all);
    const out = JSON.parse(r.stdout);
    assert.equal(out.dialect, "postgres");
    assert.equal(out.verdict, "unsafe");
    assert.equal(out.server.maxConnections, 200);
    assert.equal(out.retireAfter, 270);
    assert.equal(out.settings.length, 6);
    for (const s of out.settings) assert.deepEqual(Object.keys(s).sort(), ["current", "explicit", "reason", "recommended", "setting", "verdict"]);
    assert.equal(out.recommended.config.keepAliveInitialDelayMillis, 270_000);
    assert.match(out.recommended.config.connectionString, /:\*\*\*\*@/);
    assert.ok(!r.all.includes(server.password));
    const bad = doctor("--url", withPassword("wrong-s3cr3t"), "--json");
    assert.equal(bad.code, 2, bad.all);
    assert.equal(JSON.parse(bad.stdout).error.reason, "auth");
    assert.ok(!bad.all.includes("wrong-s3cr3t"));
    const maxQuery = await runDoctor({ url: server.url, maxQueryMs: 1000, json: true });
    assert.equal(maxQuery.exitCode, 2);
    assert.equal(JSON.parse(maxQuery.output).error.reason, "invalid-input");
  });

  test("a proxy between app and server is seen (connected port ≠ the server's)", async () => {
    const proxy = await startProxy(server.host, server.port);
    try {
      const s = await readServerTimeouts(proxy.urlFor(server.url) as `postgresql://${string}`);
      assert.equal(s.pooler?.detected, true);
      assert.match(s.pooler!.reason, new RegExp(`connected to port ${proxy.port}, the server listens on ${server.port}`));
    } finally {
      await proxy.close();
    }
  });

  const pgbouncer = spawnSync("sh", ["-c", "command -v pgbouncer"], { encoding: "utf8" }).stdout.trim();
  test("PgBouncer in transaction mode on the server's own port is seen: two statements, two backends", { skip: pgbouncer ? false : "pgbouncer is not installed (apt-get install pgbouncer)" }, async () => {
    // 127.0.0.2 and the server's port: only the backend pids can tell (server_round_robin alternates them).
    const ini = join(server.dir, "pgbouncer.ini");
    const users = join(server.dir, "pgbouncer-users.txt");
    writeFileSync(users, `"${server.user}" "${server.password}"\n`);
    writeFileSync(
      ini,
      `[databases]\n${server.database} = host=127.0.0.1 port=${server.port} dbname=${server.database}\n[pgbouncer]\nlisten_addr = 127.0.0.2\nlisten_port = ${server.port}\n` +
        `unix_socket_dir =\nauth_type = scram-sha-256\nauth_file = ${users}\npool_mode = transaction\nserver_round_robin = 1\nmin_pool_size = 2\ndefault_pool_size = 4\n` +
        `logfile = ${join(server.dir, "pgbouncer.log")}\npidfile = ${join(server.dir, "pgbouncer.pid")}\n`,
    );
    const owner = (server as any).owner as { uid: number; gid: number } | undefined;
    if (owner) for (const f of [ini, users]) chownSync(f, owner.uid, owner.gid);
    const child: ChildProcess = spawn(pgbouncer, owner ? ["-u", "postgres", ini] : [ini], { stdio: "ignore" });
    try {
      const u = new URL(server.url);
      u.hostname = "127.0.0.2";
      const url = u.toString() as `postgresql://${string}`;
      // Wait (bounded) until PgBouncer listens, then make it open two server connections: two open transactions.
      for (const until = Date.now() + 10_000; !(await readServerTimeouts(url).then(() => true, () => false)); await sleep(100)) {
        if (Date.now() > until) throw new Error("pgbouncer did not listen within 10 s");
      }
      const clients = [new pg.Client({ connectionString: url }), new pg.Client({ connectionString: url })];
      try {
        for (const c of clients) await c.connect();
        for (const c of clients) await c.query("BEGIN; SELECT 1");
        for (const c of clients) await c.query("COMMIT");
      } finally {
        for (const c of clients) await c.end().catch(() => undefined);
      }
      assert.ok((await server.appConnections()).length >= 2, "two server connections behind PgBouncer");
      const s = await readServerTimeouts(url);
      assert.equal(s.pooler?.detected, true, JSON.stringify(s.pooler));
      assert.match(s.pooler!.reason, /two backends .* a pooler in transaction mode/);
      const r = await tunePool(url, { server: s });
      assert.ok(r.notes.some((n) => /networkIdleTimeout/.test(n) && /killGhostSessions: false/.test(n)), String(r.notes));
    } finally {
      child.kill("SIGKILL");
    }
  });

  test("idle_session_timeout 300 ms, checkouts around it: bare Prisma on PrismaPg(url) fails with 57P05, on the tuned config none fails", async () => {
    await server.setSystem("idle_session_timeout", "300");
    try {
      const tuned = await tunePgPool(server.url);
      assert.equal(tuned.recommended.idleTimeoutMillis, 150);
      const run = async (config: Record<string, unknown>) => {
        const prisma = new PrismaClient({ adapter: new PrismaPg(config as any) });
        const failures = new Map<string, number>();
        let ops = 0;
        let failed = 0;
        try {
          await prisma.user.count();
          for (let i = 0; i < 30; i++) {
            // 285…315 ms idle: the checkout races the server's end of the idle session.
            await sleep(300 + ((i % 11) - 5) * 3);
            const burst = await within(Promise.allSettled(Array.from({ length: 4 }, () => prisma.user.count())), 10_000, "a burst");
            ops += burst.length;
            for (const b of burst) {
              if (b.status === "fulfilled") continue;
              failed++;
              const code = String((b.reason as any)?.code) + " " + (/`(\w{5})`/.exec(String((b.reason as any)?.message))?.[1] ?? "");
              failures.set(code, (failures.get(code) ?? 0) + 1);
            }
          }
        } finally {
          await prisma.$disconnect();
        }
        return { ops, failed, failures: Object.fromEntries(failures) };
      };
      const defaults = await run({ connectionString: server.url });
      const tunedRun = await run(tuned.config);
      console.log(JSON.stringify({ defaults, tuned: tunedRun }));
      assert.equal(tunedRun.failed, 0, JSON.stringify(tunedRun));
      assert.ok(defaults.failed > 0, "the default pool met the race (the test can tell the two apart)");
      assert.ok(Object.keys(defaults.failures).every((k) => k === "P2039 57P05"), JSON.stringify(defaults.failures));
    } finally {
      await reset();
    }
  });
});
