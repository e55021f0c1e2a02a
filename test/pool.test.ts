// Pool settings below wait_timeout: the review's decisions, input validation, redaction, the doctor
// CLI against a real server (exit codes, --json, a wrong password named within 2 s), and the round
// trips per operation of tuned vs default settings measured with the server's status counters.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { inspect } from "node:util";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { readFileSync } from "node:fs";
import { readPoolSettings, redact, reviewPool, runDoctor, tunePool, type ServerTimeouts } from "../src/index.ts";
import { driverWarnings } from "../src/tuning/driver.ts";
import { bareClient } from "./support/clients.ts";
import { startDatabase, type TestDatabase } from "./support/mariadb.ts";

const SERVER: ServerTimeouts = { waitTimeout: 28800, sessionWaitTimeout: 28800, maxConnections: 151, version: "10.11.19-MariaDB", flavor: "mariadb" };
const URL_WITH_SECRET = "mysql://app:s3cr3t-pw@db.internal:3306/shop";

describe("reviewPool (pure)", () => {
  test("driver defaults: socketTimeout 0 is unsafe, the rest is tuned below wait_timeout", () => {
    const r = reviewPool(URL_WITH_SECRET, SERVER);
    assert.equal(r.verdict, "unsafe");
    const by = Object.fromEntries(r.settings.map((s) => [s.setting, s]));
    assert.equal(by.socketTimeout.verdict, "unsafe");
    assert.equal(r.recommended.socketTimeout, 30_000);
    assert.ok(r.recommended.minimumIdle >= 1 && r.recommended.minimumIdle < r.recommended.connectionLimit);
    assert.ok(r.recommended.idleTimeout < SERVER.waitTimeout);
    assert.ok(r.recommended.minDelayValidation > r.recommended.socketTimeout, "no idle connection reaches the ping threshold");
    assert.equal(r.recommended.acquireTimeout, 5000);
  });

  test("short wait_timeout: everything retires before it, margin 1 s", () => {
    const r = reviewPool("mysql://u:p@h/db", { waitTimeout: 3 });
    assert.equal(r.retireAfter, 2);
    assert.equal(r.recommended.idleTimeout, 2);
    assert.equal(r.recommended.socketTimeout, 2000);
  });

  test("the smallest of global, session and network idle timeouts wins", () => {
    const r = reviewPool("mysql://u:p@h/db", { waitTimeout: 600, sessionWaitTimeout: 300 }, { networkIdleTimeout: 120 });
    assert.equal(r.retireAfter, 120 - 12);
  });

  test("explicit safe settings are kept; unsafe ones are replaced and say why", () => {
    const r = reviewPool("mysql://u:p@h/db?connectionLimit=20&minimumIdle=4&idleTimeout=60&socketTimeout=10000&minDelayValidation=0", SERVER);
    assert.equal(r.recommended.connectionLimit, 20);
    assert.equal(r.recommended.minimumIdle, 4);
    assert.equal(r.recommended.idleTimeout, 60);
    assert.equal(r.recommended.socketTimeout, 10_000);
    assert.equal(r.recommended.minDelayValidation, 11_000);
    const zero = reviewPool("mysql://u:p@h/db?minimumIdle=0", SERVER);
    const mi = zero.settings.find((s) => s.setting === "minimumIdle")!;
    assert.equal(mi.verdict, "unsafe");
    assert.match(mi.reason, /starves/);
    assert.equal(zero.recommended.minimumIdle, 1);
  });

  test("optimistic: false keeps the validation ping", () => {
    const r = reviewPool("mysql://u:p@h/db", SERVER, { optimistic: false });
    assert.equal(r.recommended.minDelayValidation, 500);
  });

  test("connectionLimit at or above max_connections is unsafe", () => {
    const r = reviewPool("mysql://u:p@h/db?connectionLimit=200", { waitTimeout: 100, maxConnections: 151 });
    assert.equal(r.settings.find((s) => s.setting === "connectionLimit")!.verdict, "unsafe");
  });

  test("a config object in, a config object out (password kept, not enumerable)", () => {
    const r = reviewPool({ host: "h", user: "u", password: "s3cr3t-pw", connectionLimit: 5 }, SERVER);
    assert.equal(r.config!.password, "s3cr3t-pw");
    assert.equal(r.config!.socketTimeout, 30_000);
    assert.equal(r.url, undefined);
    assert.ok(!JSON.stringify(r).includes("s3cr3t-pw"));
  });

  test("the password never shows: redactedUrl, JSON, console output", () => {
    const r = reviewPool(URL_WITH_SECRET, SERVER);
    assert.ok(r.url!.includes("s3cr3t-pw"), "url keeps it for the app to use");
    assert.ok(!r.redactedUrl!.includes("s3cr3t-pw"));
    assert.match(r.redactedUrl!, /app:\*\*\*\*@db\.internal/);
    assert.ok(!JSON.stringify(r).includes("s3cr3t-pw"));
    assert.ok(!inspect(r, { depth: 5 }).includes("s3cr3t-pw"));
  });

  const invalid: Array<[string, () => unknown, RegExp]> = [
    ["not a MySQL URL", () => reviewPool("postgres://u:s3cr3t-pw@h/db", SERVER), /mysql:\/\/ or mariadb:\/\//],
    ["not a URL", () => reviewPool("nonsense", SERVER), /not a valid connection string/],
    ["negative wait_timeout", () => reviewPool("mysql://h/db", { waitTimeout: -1 }), /waitTimeout/],
    ["negative pool value", () => reviewPool("mysql://h/db?idleTimeout=-5", SERVER), /idleTimeout/],
    ["margin larger than the timeout", () => reviewPool("mysql://h/db", { waitTimeout: 10 }, { margin: 20 }), /margin \(20 s\) must leave at least 1 ms/],
    ["negative margin", () => reviewPool("mysql://h/db", SERVER, { margin: -1 }), /margin/],
    ["a number as input", () => reviewPool(42 as any, SERVER), /connection string or a mariadb pool config/],
  ];
  for (const [name, call, message] of invalid) {
    test(`rejects ${name} with a TypeError`, () => {
      assert.throws(call, (e: unknown) => e instanceof TypeError && message.test((e as Error).message) && !(e as Error).message.includes("s3cr3t-pw"));
    });
  }

  test("wait_timeout = 1 with the default margin: retire after 0.5 s, socketTimeout 500 ms", () => {
    const r = reviewPool("mysql://u:p@h/db", { waitTimeout: 1 });
    assert.equal(r.margin, 0.5);
    assert.equal(r.retireAfter, 0.5);
    assert.equal(r.recommended.socketTimeout, 500);
    assert.equal(r.recommended.idleTimeout, 1, "whole seconds (the driver reads a URL with parseInt)");
    assert.match(r.url!, /idleTimeout=1(&|$)/);
  });

  test("numbers in the URL are read as the driver reads them (parseInt): `1e3` is refused, naming what the driver would use", () => {
    assert.throws(
      () => reviewPool("mysql://u:p@h/db?socketTimeout=1e3", SERVER),
      (e: unknown) => e instanceof TypeError && /`socketTimeout=1e3`.*parseInt, as 1\)/.test((e as Error).message),
    );
    assert.throws(() => readPoolSettings("mysql://u:p@h/db?acquireTimeout=2.5"), /`acquireTimeout=2\.5`.*as 2\)/);
    assert.throws(() => readPoolSettings("mysql://u:p@h/db?idleTimeout=abc"), /`idleTimeout=abc` in the connection string must be a whole number/);
    // A config object is read with Number, as the driver does for objects.
    assert.equal(readPoolSettings({ socketTimeout: 1e3 }).settings.socketTimeout, 1000);
  });

  test("ms options must be whole numbers ≥ 1: the driver reads a URL with parseInt (0.5 → 0, no timeout)", () => {
    for (const [name, value] of [["maxQueryMs", 0.5], ["acquireTimeout", 0.5], ["maxQueryMs", 1500.5]] as const) {
      assert.throws(() => reviewPool("mysql://u:p@h/db", SERVER, { [name]: value }), (e: unknown) => e instanceof TypeError && new RegExp(`\`${name}\` must be a whole number of ms`).test((e as Error).message));
    }
    // A margin that leaves less than 1 ms would recommend socketTimeout=0 (no timeout).
    assert.throws(() => reviewPool("mysql://u:p@h/db", { waitTimeout: 1 }, { margin: 0.9999 }), /at least 1 ms/);
  });

  test("tunePool checks its options before connecting", async () => {
    await assert.rejects(tunePool("mysql://u:s3cr3t-pw@127.0.0.1:1/db", { margin: -1 }), (e: unknown) => e instanceof TypeError && /margin/.test((e as Error).message));
    await assert.rejects(tunePool("mysql://u:s3cr3t-pw@127.0.0.1:1/db", { maxQueryMs: 0.5 }), TypeError);
  });

  test("PrismaMariaDb's reading of the query: `#` in a value, a space, an empty password", () => {
    const warned = (url: string, re: RegExp) => assert.ok(reviewPool(url, SERVER).warnings.some((w) => re.test(w)), `${url}: ${reviewPool(url, SERVER).warnings}`);
    warned("mysql://u:p@h/db?password=a#b", /PrismaMariaDb misreads.*`password`/);
    warned("mysql://u:p@h/db?initSql=SET%20@a=1", /PrismaMariaDb misreads.*`initSql`.*\+/);
    warned("mysql://u:p@h/db?initSql=SET @a=1", /`initSql`/);
    assert.deepEqual(reviewPool("mysql://u:p@h/db?initSql=SET%20@a=1&prepareCacheLength=0", SERVER).warnings, []);
    // The driver reads `password=` as "no password", overriding the URL's: so does the tool.
    const empty = reviewPool("mysql://u:p@h/db?password=", SERVER);
    assert.match(empty.url!, /[?&]password=(&|$)/);
    assert.ok(empty.warnings.some((w) => /`password=` is empty/.test(w)), String(empty.warnings));
    assert.deepEqual(reviewPool("mysql://u:p%20q@h/db?ssl=true", SERVER).warnings, []);
  });

  test("the driver's queryTimeout (URL or config) is warned of: its SET at connect can leave a rejection unhandled", () => {
    // As the driver reads it (connection-options.js): parseInt in a URL, Number in a config object.
    const warned = ["mysql://u:p@h/db?queryTimeout=5000", "mysql://u:p@h/db?queryTimeout=5000ms", { host: "h", user: "u", database: "db", queryTimeout: 5000 }, { host: "h", user: "u", database: "db", queryTimeout: "5000" }];
    for (const input of warned) {
      const warnings = reviewPool(input as any, SERVER).warnings;
      assert.ok(warnings.some((w) => /queryTimeout.*unhandled/.test(w)), `${JSON.stringify(input)}: ${warnings}`);
    }
    const unset = ["mysql://u:p@h/db?queryTimeout=0", "mysql://u:p@h/db?queryTimeout=abc", "mysql://u:p@h/db?queryTimeout=-5x", { host: "h", user: "u", database: "db", queryTimeout: 0 }, { host: "h", user: "u", database: "db", queryTimeout: "abc" }, { host: "h", user: "u", database: "db", queryTimeout: -1 }, "mysql://u:p@h/db"];
    for (const input of unset) {
      assert.deepEqual(reviewPool(input as any, SERVER).warnings.filter((w) => /queryTimeout/.test(w)), [], JSON.stringify(input));
    }
  });

  test("unknown option keys are refused by name", () => {
    assert.throws(() => reviewPool("mysql://h/db", SERVER, { margni: 3 } as any), /reviewPool\(\): unknown option `margni`/);
    assert.throws(() => reviewPool("mysql://h/db", SERVER, "fast" as any), /options must be an object/);
  });

  test("Prisma 6 TLS parameters (sslaccept, sslcert) are flagged: the driver ignores them", () => {
    const r = reviewPool("mysql://u:p@h/db?sslaccept=strict&sslcert=ca.pem", SERVER);
    assert.equal(r.warnings.filter((w) => /is not a mariadb driver option/.test(w)).length, 2);
    assert.deepEqual(reviewPool("mysql://u:p@h/db?ssl=true", SERVER).warnings, []);
  });

  test("known driver bugs by version: 3.3 to 3.4.7 leave the set-up rejection unhandled, 3.5.1 does not", () => {
    for (const v of ["3.3.2", "3.4.5", "3.4.7"]) assert.match(driverWarnings(v).join(), /unhandled.*"overrides": \{ "mariadb": "\^3\.5\.1" \}/);
    for (const v of ["3.5.1", "3.5.4", "4.0.0"]) assert.deepEqual(driverWarnings(v), []);
  });

  test("readPoolSettings applies the driver's defaults (minimumIdle = connectionLimit)", () => {
    const { settings, explicit } = readPoolSettings("mariadb://h/db?connectionLimit=4");
    assert.equal(settings.minimumIdle, 4);
    assert.equal(settings.idleTimeout, 1800);
    assert.deepEqual([...explicit], ["connectionLimit"]);
  });

  test("redact hides passwords in URLs and in unparsable strings", () => {
    assert.equal(redact("mysql://app:pw@h:3306/db"), "mysql://app:****@h:3306/db");
    assert.ok(!redact("mysql://app:p%40ss@h/db").includes("p%40ss"));
    assert.ok(!redact("mysql://h/db?password=pw").includes("=pw"));
    assert.ok(!redact("not a url //user:pw@host").includes("pw@"));
  });
});

describe("against a live server", () => {
  let db: TestDatabase;
  before(async () => {
    db = await startDatabase();
  });
  after(async () => {
    await db?.stop();
  });

  const doctor = (...args: string[]) => {
    const res = spawnSync(process.execPath, ["--import", "tsx", "src/tuning/cli.ts", "doctor", ...args], {
      encoding: "utf8",
      env: { ...process.env, DATABASE_URL: "" },
      timeout: 30_000,
    });
    return { code: res.status, stdout: res.stdout, stderr: res.stderr, all: res.stdout + res.stderr };
  };

  test("tunePool reads the server's timeouts", async () => {
    await db.setGlobal("wait_timeout", 120);
    try {
      const r = await tunePool(db.url);
      assert.equal(r.server.waitTimeout, 120);
      assert.equal(r.server.flavor, "mariadb");
      assert.match(r.server.version!, /MariaDB/);
      assert.equal(r.retireAfter, 108);
    } finally {
      await db.setGlobal("wait_timeout", 28800);
    }
  });

  test("doctor: driver defaults are unsafe (exit 1), no password in the output", () => {
    const r = doctor("--url", db.url);
    assert.equal(r.code, 1, r.all);
    assert.match(r.stdout, /socketTimeout\s+0\s+30000\s+UNSAFE/);
    assert.match(r.stdout, /recommended mysql:\/\/app:\*\*\*\*@127\.0\.0\.1/);
    assert.ok(!r.all.includes(db.password), "the password is not printed");
  });

  test("doctor: names the installed mariadb driver and warns about its known bug", async () => {
    const installed = JSON.parse(readFileSync("node_modules/mariadb/package.json", "utf8")).version;
    const r = doctor("--url", db.url);
    assert.match(r.stdout, new RegExp(`^driver {6}mariadb ${installed.replace(/\./g, "\\.")}$`, "m"));
    assert.equal(/^warning .*unhandled.*overrides/m.test(r.stdout), driverWarnings(installed).length > 0);
    const json = JSON.parse((await runDoctor({ url: db.url, json: true })).output);
    assert.equal(json.driver.version, installed);
    assert.deepEqual(json.driver.warnings, driverWarnings(installed));
  });

  test("tunePool against wait_timeout = 1 (default margin)", async () => {
    await db.setGlobal("wait_timeout", 1);
    try {
      const r = await tunePool(db.url);
      assert.equal(r.server.waitTimeout, 1);
      assert.equal(r.recommended.socketTimeout, 500);
    } finally {
      await db.setGlobal("wait_timeout", 28800);
    }
  });

  test("doctor: the recommended settings are safe (exit 0)", async () => {
    const tuned = (await tunePool(db.url)).url!;
    const r = doctor("--url", tuned);
    assert.equal(r.code, 0, r.all);
    assert.ok(!r.stdout.includes("UNSAFE"));
    assert.ok(!r.all.includes(db.password));
  });

  test("doctor --json: the shape a program reads", () => {
    const r = doctor("--url", db.url, "--json");
    assert.equal(r.code, 1);
    const out = JSON.parse(r.stdout);
    assert.equal(out.ok, false);
    assert.equal(out.verdict, "unsafe");
    assert.equal(out.server.flavor, "mariadb");
    assert.equal(typeof out.server.waitTimeout, "number");
    assert.ok(Array.isArray(out.settings) && out.settings.length === 7);
    for (const s of out.settings) {
      assert.deepEqual(Object.keys(s).sort(), ["current", "explicit", "reason", "recommended", "setting", "verdict"]);
    }
    assert.match(out.recommended.url, /\*\*\*\*/);
    assert.equal(typeof out.recommended.settings.socketTimeout, "number");
    assert.ok(!r.all.includes(db.password));
  });

  test("doctor: a wrong password is named as such within 2 s (exit 2)", () => {
    const u = new URL(db.url);
    u.password = "wrong-s3cr3t";
    const started = performance.now();
    const r = doctor("--url", u.toString(), "--json");
    const elapsed = performance.now() - started;
    assert.equal(r.code, 2, r.all);
    const out = JSON.parse(r.stdout);
    assert.equal(out.error.reason, "auth");
    assert.match(out.error.message, /authentication failed/);
    assert.ok(!r.all.includes("wrong-s3cr3t"));
    assert.ok(elapsed < 2000 + 1500, `answered in ${Math.round(elapsed)} ms (includes starting node)`);
  });

  test("doctor: nothing listening is 'connection refused' (exit 2)", () => {
    const r = doctor("--url", "mysql://app:pw@127.0.0.1:1/app");
    assert.equal(r.code, 2);
    assert.match(r.stdout, /connection refused/);
  });

  test("doctor: bad input and missing URL exit 2 with a message", () => {
    assert.equal(doctor("--url", "redis://x@h/db").code, 2);
    const none = doctor();
    assert.equal(none.code, 2);
    assert.match(none.stderr, /DATABASE_URL/);
  });

  test("idle-then-burst: tuned settings without pings send fewer round trips per operation than the defaults, zero errors", async () => {
    await db.setGlobal("wait_timeout", 3);
    try {
      const tunedUrl = (await tunePool(db.url)).url!;
      const measure = async (url: string) => {
        const prisma = bareClient(url);
        let errors = 0;
        let ops = 0;
        await prisma.user.count();
        await sleep(300);
        const pings0 = await db.statusCounter("Com_admin_commands");
        const questions0 = await db.statusCounter("Questions");
        for (let cycle = 0; cycle < 6; cycle++) {
          await sleep(1000); // idle: below wait_timeout, above the default 500 ms validation delay
          const burst = await Promise.allSettled(Array.from({ length: 16 }, () => prisma.user.count()));
          ops += burst.length;
          errors += burst.filter((b) => b.status === "rejected").length;
        }
        const pings = (await db.statusCounter("Com_admin_commands")) - pings0;
        const questions = (await db.statusCounter("Questions")) - questions0;
        await prisma.$disconnect();
        return { errors, ops, pings, questions, roundTripsPerOp: (pings + questions) / ops };
      };
      const defaults = await measure(db.url);
      const tuned = await measure(tunedUrl);
      console.log(JSON.stringify({ defaults, tuned }));
      assert.equal(defaults.errors, 0);
      assert.equal(tuned.errors, 0);
      assert.ok(defaults.pings / defaults.ops > 0.3, "the default pool pinged connections after idling");
      // The driver still revalidates idle connections once after a connection error (e.g. one
      // retired by socketTimeout): an occasional ping, never one per checkout.
      assert.ok(tuned.pings / tuned.ops < 0.05, `no ping per checkout with tuned settings (${tuned.pings} for ${tuned.ops} operations)`);
      assert.ok(tuned.roundTripsPerOp < defaults.roundTripsPerOp, "fewer round trips per operation");
    } finally {
      await db.setGlobal("wait_timeout", 28800);
    }
  });
});
