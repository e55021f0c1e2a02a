// Passwords never print. Table-driven over passwords people paste unencoded into DATABASE_URL (raw
// `#`, `/`, `?`, `@`, `:`, `&`, spaces, quotes, `%`) and their encoded forms, through every place
// that prints a URL: redact(), parse errors, the review (redactedUrl, JSON, inspect), a connect
// failure, the doctor (text and --json, library and CLI), and the DEBUG log. Against a live server,
// a user is created with each password: the parser must find the same credentials the driver does
// (the doctor connects), and the recommended URL must work with PrismaMariaDb.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { inspect } from "node:util";
import { after, before, describe, test } from "node:test";
import { PrismaMariaDb } from "@prisma/adapter-mariadb";
import { PrismaClient } from "../generated/prisma/client.ts";
import { readServerTimeouts, redact, reviewPool, runDoctor, tunePool, type ServerTimeouts } from "../src/index.ts";
import { parseDatabaseUrl, redactUrlsIn, scrub, secretsIn } from "../src/mysql/url.ts";
import { startDatabase, type TestDatabase } from "./support/mariadb.ts";

const SERVER: ServerTimeouts = { waitTimeout: 600, sessionWaitTimeout: 600, maxConnections: 151, version: "10.11", flavor: "mariadb" };

/** As written in the URL (`raw`), and the password the driver decodes from it. */
const NASTY: Array<{ raw: string; name: string }> = [
  { name: "a leading #", raw: "#hunter2" },
  { name: "@ ? # all at once", raw: "p@ss?w:rd#1" },
  { name: "a query-like password", raw: "a?b=c&d=e" },
  { name: "colons", raw: ":colon:s3c:" },
  { name: "@ at both ends", raw: "@edge-pw@" },
  { name: "spaces", raw: "pa ss wo rd" },
  { name: "quotes and a backslash", raw: `q"u'o\\te` },
  { name: "non-ASCII", raw: "pässwörd€" },
  { name: "percent-encoded @ / ? #", raw: "p%40ss%2Fw%3Frd%231x" },
  { name: "an encoded %", raw: "100%25sure" },
];
/** A raw `/` in the password: the driver reads part of it as the host or database, so it is refused (write %2F). */
const RAW_SLASH: Array<{ raw: string; name: string }> = [
  { name: "# and /", raw: "#hunter2/x" },
  { name: "@ / ? # all at once", raw: "p@ss/w?rd#1" },
  { name: "digits then /", raw: "1234/hunter" },
];
const password = (raw: string) => decodeURIComponent(raw);
/** Every form of the password that must never show. */
function forms(raw: string): string[] {
  const pw = password(raw);
  return [...new Set([raw, pw, encodeURIComponent(pw), JSON.stringify(pw).slice(1, -1), "hunter2"].filter((f) => f.length >= 4))];
}
function assertHidden(text: string, raw: string, where: string) {
  for (const f of forms(raw)) assert.ok(!text.includes(f), `${where} shows the password (form ${JSON.stringify(f.length)} chars)`);
}

describe("nasty passwords (no server)", () => {
  test("redact() splits at the last @ before the host, as the driver does", () => {
    assert.equal(redact("mysql://app:#hunter2@db/shop"), "mysql://app:****@db/shop");
    assert.equal(redact("mysql://app:#hunter2/x@127.0.0.1:3306/app"), "mysql://****@127.0.0.1:3306/app", "a raw / in the password: masked up to the host");
    assert.equal(redact("mariadb://u:p@ss@[::1]:3307/db?password=x&connectionLimit=5"), "mariadb://u:****@[::1]:3307/db?password=****&connectionLimit=5");
    assert.equal(redact("mysql://app@db/shop"), "mysql://app@db/shop");
    assert.equal(redact("hunter2"), "****", "an unreadable string is not shown at all");
  });

  for (const { name, raw } of NASTY) {
    const url = `mysql://app:${raw}@db.internal:3306/shop`;
    test(`${name}: redact, review, parse errors`, () => {
      assert.equal(redact(url), "mysql://app:****@db.internal:3306/shop");
      const review = reviewPool(url, SERVER);
      assertHidden(review.redactedUrl!, raw, "redactedUrl");
      assertHidden(JSON.stringify(review), raw, "JSON.stringify(review)");
      assertHidden(inspect(review, { depth: 9 }), raw, "inspect(review)");
      assert.ok(review.url!.startsWith(`mysql://app:${encodeURIComponent(password(raw))}@db.internal:3306/shop?`), "url keeps the password, percent-encoded");
      const bad = [`${url}?socketTimeout=1e3`, url.replace("mysql:", "postgres:"), `${url}?initSql=%zz`];
      for (const input of bad) {
        assert.throws(
          () => reviewPool(input, SERVER),
          (e: unknown) => e instanceof TypeError && (assertHidden((e as Error).message, raw, "TypeError"), true),
        );
      }
    });
  }

  for (const { name, raw } of RAW_SLASH) {
    test(`${name}: a TypeError asking for %2F, the password shown nowhere`, async () => {
      const url = `mysql://app:${raw}@db.internal:3306/shop`;
      assertHidden(redact(url), raw, "redact");
      assert.match(redact(url), /^mysql:\/\/\*\*\*\*@db\.internal:3306\/shop$/);
      assert.throws(
        () => reviewPool(url, SERVER),
        (e: unknown) => e instanceof TypeError && /%2F/.test((e as Error).message) && (assertHidden((e as Error).message, raw, "TypeError"), true),
      );
      for (const json of [true, false]) {
        const r = await runDoctor({ url: url.replace("db.internal:3306", "127.0.0.1:1"), json });
        assert.equal(r.exitCode, 2);
        assertHidden(r.output, raw, `doctor json=${json}`);
      }
      const fixed = `mysql://app:${raw.replace(/\//g, "%2F")}@db.internal:3306/shop`;
      assert.equal(redact(fixed), "mysql://app:****@db.internal:3306/shop");
      assert.ok(reviewPool(fixed, SERVER).url!.startsWith(`mysql://app:${encodeURIComponent(password(raw))}@db.internal:3306/shop?`));
    });
  }

  test("a bad percent-escape is a TypeError naming the part, without the text", () => {
    assert.throws(() => reviewPool("mysql://app:50%off@h/db", SERVER), (e: unknown) => {
      assert.ok(e instanceof TypeError, `got ${(e as Error)?.name}`);
      assert.match((e as Error).message, /password holds a `%` that is not a percent-escape/);
      assert.ok(!(e as Error).message.includes("50%off"));
      return true;
    });
    assert.throws(() => reviewPool("mysql://app:pw@h/d%zzb", SERVER), /database name holds a `%`/);
  });

  test("a refused connection: ConnectFailedError and the doctor (the issue's example)", async () => {
    const raw = "#hunter2?x";
    const url = `mysql://app:${raw}@127.0.0.1:1/app`;
    const error = await readServerTimeouts(url).then(
      () => assert.fail("connected to port 1"),
      (e) => e,
    );
    assert.equal(error.name, "ConnectFailedError");
    assert.equal(error.reason, "refused");
    assertHidden(`${error.message} ${error.url} ${inspect(error, { depth: 9 })}`, raw, "ConnectFailedError");
    for (const json of [true, false]) {
      const r = await runDoctor({ url, json });
      assert.equal(r.exitCode, 2);
      assertHidden(r.output, raw, `doctor json=${json}`);
      assert.match(r.output, /app:\*\*\*\*@127\.0\.0\.1:1/);
    }
  });

  test("the DEBUG log redacts a URL that reaches it", () => {
    for (const { raw } of [...NASTY, ...RAW_SLASH]) {
      const url = `mysql://app:${raw}@db:3306/shop`;
      const res = spawnSync(process.execPath, ["--import", "tsx", "-e", "import('./src/core/log.ts').then((m) => m.log('pool error: ' + process.env.SOME_URL + ' (x)'))"], {
        encoding: "utf8",
        env: { ...process.env, DEBUG: "prisma-extension-resilience", SOME_URL: url },
        timeout: 20_000,
      });
      assert.equal(res.status, 0, res.stderr.slice(0, 300));
      assert.match(res.stderr, /pool error: mysql:\/\/(app:)?\*\*\*\*@db:3306\/shop \(x\)/);
      assertHidden(res.stderr, raw, "DEBUG log");
    }
  });

  test("the DEBUG log hides the password in the driver's own parse error, which quotes the whole URL", () => {
    const raw = "#hunter2/x";
    const script =
      "import('mariadb').then(async ({ default: mariadb }) => { const { log } = await import('./src/core/log.ts');" +
      " try { mariadb.createPool(process.env.SOME_URL); } catch (e) { log('pool: ' + e.message); } })";
    const res = spawnSync(process.execPath, ["--import", "tsx", "-e", script], {
      encoding: "utf8",
      env: { ...process.env, DEBUG: "prisma-extension-resilience", SOME_URL: `mariadb://app:${raw}@db:3306/shop` },
      timeout: 20_000,
    });
    assert.match(res.stderr, /pool: error parsing connection string 'mariadb:\/\/\*\*\*\*@db:3306\/shop'/);
    assertHidden(res.stderr, raw, "DEBUG log");
  });
});

describe("an `@` after the host, query passwords, control characters (no server)", () => {
  const throwsHidden = (call: () => unknown, secret: string, message: RegExp) =>
    assert.throws(call, (e: unknown) => {
      assert.ok(e instanceof TypeError, `${(e as Error)?.name}: ${(e as Error)?.message}`);
      assert.match((e as Error).message, message);
      assert.ok(!(e as Error).message.includes(secret), (e as Error).message);
      return true;
    });

  test("credentials end at the last @ before the first / (the driver's reading)", () => {
    const a = parseDatabaseUrl("mysql://u:pw@host/my@db");
    assert.equal(a.host, "host");
    assert.equal(a.database, "my@db");
    const b = parseDatabaseUrl("mysql://u:pw@h/db?socketPath=/tmp/x@y/mysql.sock");
    assert.equal(b.host, "h");
    assert.equal(b.params.get("socketPath"), "/tmp/x@y/mysql.sock");
    const c = parseDatabaseUrl("mysql://app@db/shop?password=Hunter2@prod/x");
    assert.equal(c.host, "db");
    assert.equal(c.params.get("password"), "Hunter2@prod/x");
  });

  test("an @ in a query value never shows the password: redact, review, TypeError, doctor", async () => {
    const url = "mysql://app@db/shop?password=Hunter2@prod/x";
    assert.equal(redact(url), "mysql://app@db/shop?password=****");
    assert.ok(!reviewPool(url, SERVER).redactedUrl!.includes("Hunter2"));
    throwsHidden(() => reviewPool("postgres://app@db.example.com/shop?password=S3cr3t@x", SERVER), "S3cr3t", /mysql:\/\/ or mariadb:\/\//);
    for (const json of [false, true]) {
      const r = await runDoctor({ url: "mysql://app@127.0.0.1:1/shop?password=Hunter2@prod/x", json });
      assert.equal(r.exitCode, 2);
      assert.ok(!r.output.includes("Hunter2"), r.output);
    }
  });

  test("a raw / in the password is a TypeError asking for %2F, without the password", () => {
    const cases: Array<[string, string]> = [
      ["mariadb://u:p/ss@h/db", "p/ss"],
      ["mysql://app:123/s3cret@h/db", "123/s3cret"],
      ["mysql://app:#hunter2/x@db:3306/shop", "#hunter2/x"],
      ["mysql://app:p@ss/w?rd#1@db:3306/shop", "p@ss/w?rd#1"],
    ];
    for (const [url, pw] of cases) {
      throwsHidden(() => parseDatabaseUrl(url), pw.slice(1), /%2F/);
      for (const part of pw.split(/[/@?#]/).filter((x) => x.length > 1)) assert.ok(!redact(url).includes(part), redact(url));
    }
    assert.equal(redact("mariadb://u:p/ss@h/db"), "mariadb://****@h/db");
    assert.equal(redact("mysql://app:pw/x"), "mysql://****", "unreadable: scheme and ****");
  });

  test("a control character in a query key or value is a TypeError up front (the driver would quote the whole URL)", async () => {
    for (const bad of ["a\nb=1", "a\rb=1", "a\u2028b=1", "initSql=x\ny"]) {
      const url = `mariadb://app:S3cretPassw0rd@127.0.0.1:1/db?${bad}`;
      await assert.rejects(readServerTimeouts(url), (e: unknown) => {
        assert.ok(e instanceof TypeError, `${(e as Error)?.name} (${(e as any)?.reason}): ${inspect(e).slice(0, 200)}`);
        assert.match((e as Error).message, /control character/);
        assert.ok(!inspect(e).includes("S3cretPassw0rd"));
        return true;
      });
    }
  });

  test("scrub: query passwords and short passwords are masked too", () => {
    assert.deepEqual(secretsIn("mysql://u:pw@h/db?password=TopSecret99&x=1"), ["pw", "TopSecret99"]);
    const text = "failed for 'u:pw@h' with TopSecret99 (pwd)";
    assert.equal(scrub(text, secretsIn("mysql://u:pw@h/db?password=TopSecret99")), "failed for 'u:****@h' with **** (pwd)");
  });

  test("the DEBUG log masks a query password up to the next & or line end, and a password holding a line break", () => {
    assert.equal(redactUrlsIn("x mysql://app@db/shop?password=Top Secret&x=1 y"), "x mysql://app@db/shop?password=****&x=1 y");
    assert.equal(redactUrlsIn("retry with password=Top Secret9\nnext"), "retry with password=****\nnext");
    const out = redactUrlsIn("pool: mysql://app:first\nSecondHalf@db:3306/shop (x)");
    assert.ok(!out.includes("SecondHalf") && !out.includes("first"), out);
  });
});

describe("nasty passwords against a live server", () => {
  let db: TestDatabase;
  const users = NASTY.map((n, i) => ({ ...n, user: `nasty${i}` }));
  const urlOf = (u: (typeof users)[number]) => `mysql://${u.user}:${u.raw}@127.0.0.1:${db.port}/${db.database}`;
  before(async () => {
    db = await startDatabase();
    for (const u of users) {
      await db.admin(`CREATE USER '${u.user}'@'%' IDENTIFIED BY ?`, [password(u.raw)]);
      await db.admin(`GRANT ALL ON \`${db.database}\`.* TO '${u.user}'@'%'`);
    }
  });
  after(async () => {
    await db?.stop();
  });

  for (const u of users) {
    test(`${u.name}: the doctor connects with it, prints none of it; the recommended URL works with PrismaMariaDb`, async () => {
      const url = urlOf(u);
      for (const json of [false, true]) {
        const r = await runDoctor({ url, json });
        assert.equal(r.exitCode, 1, `defaults are unsafe, not "cannot connect": ${r.output.slice(0, 200)}`);
        assertHidden(r.output, u.raw, `doctor json=${json}`);
        assert.ok(r.output.includes(`${u.user}:****@127.0.0.1:${db.port}`));
      }
      const tuned = (await tunePool(url)).url!;
      const prisma = new PrismaClient({ adapter: new PrismaMariaDb(tuned) });
      try {
        assert.equal(typeof (await prisma.user.count()), "number");
      } finally {
        await prisma.$disconnect();
      }
    });
  }

  test("raw #, ? or / in the password: the doctor warns that PrismaMariaDb misreads the URL", async () => {
    const byName = (name: string) => users.find((u) => u.name === name)!;
    const misread = await runDoctor({ url: urlOf(byName("@ ? # all at once")), json: true });
    assert.ok(JSON.parse(misread.output).warnings.some((w: string) => /PrismaMariaDb misreads/.test(w)));
    const fine = await runDoctor({ url: urlOf(byName("percent-encoded @ / ? #")), json: true });
    assert.ok(!JSON.parse(fine.output).warnings.some((w: string) => /PrismaMariaDb misreads/.test(w)));
  });

  test("the CLI: text and --json, wrong password included", () => {
    const cli = (...args: string[]) =>
      spawnSync(process.execPath, ["--import", "tsx", "src/tuning/cli.ts", "doctor", ...args], { encoding: "utf8", env: { ...process.env, DATABASE_URL: "" }, timeout: 30_000 });
    const u = users[1];
    const slash = `mysql://${u.user}:${RAW_SLASH[1].raw}@127.0.0.1:${db.port}/${db.database}`;
    for (const args of [["--url", urlOf(u)], ["--url", urlOf(u), "--json"], ["--url", urlOf(u).replace("@127", "x@127"), "--json"], ["--url", slash, "--json"]]) {
      const r = cli(...args);
      assert.ok(r.status === 1 || r.status === 2, `exit ${r.status}: ${r.stderr.slice(0, 200)}`);
      assertHidden(r.stdout + r.stderr, u.raw, `CLI ${args.slice(2).join(" ")}`);
      assertHidden(r.stdout + r.stderr, RAW_SLASH[1].raw, `CLI ${args.slice(2).join(" ")}`);
    }
  });
});
