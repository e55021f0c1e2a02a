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
import { startDatabase, type TestDatabase } from "./support/mariadb.ts";

const SERVER: ServerTimeouts = { waitTimeout: 600, sessionWaitTimeout: 600, maxConnections: 151, version: "10.11", flavor: "mariadb" };

/** As written in the URL (`raw`), and the password the driver decodes from it. */
const NASTY: Array<{ raw: string; name: string }> = [
  { name: "a leading #", raw: "#hunter2" },
  { name: "# and /", raw: "#hunter2/x" },
  { name: "@ / ? # all at once", raw: "p@ss/w?rd#1" },
  { name: "a query-like password", raw: "a?b=c&d=e" },
  { name: "colons", raw: ":colon:s3c:" },
  { name: "@ at both ends", raw: "@edge-pw@" },
  { name: "spaces", raw: "pa ss wo rd" },
  { name: "quotes and a backslash", raw: `q"u'o\\te` },
  { name: "non-ASCII", raw: "pässwörd€" },
  { name: "percent-encoded @ / ? #", raw: "p%40ss%2Fw%3Frd%231x" },
  { name: "an encoded %", raw: "100%25sure" },
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
    assert.equal(redact("mysql://app:#hunter2/x@127.0.0.1:3306/app"), "mysql://app:****@127.0.0.1:3306/app");
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
    const raw = "#hunter2/x";
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
    for (const { raw } of NASTY) {
      const url = `mysql://app:${raw}@db:3306/shop`;
      const res = spawnSync(process.execPath, ["--import", "tsx", "-e", "import('./src/log.ts').then((m) => m.log('pool error: ' + process.env.SOME_URL + ' (x)'))"], {
        encoding: "utf8",
        env: { ...process.env, DEBUG: "prisma-extension-resilience", SOME_URL: url },
        timeout: 20_000,
      });
      assert.equal(res.status, 0, res.stderr.slice(0, 300));
      assert.match(res.stderr, /pool error: mysql:\/\/app:\*\*\*\*@db:3306\/shop \(x\)/);
      assertHidden(res.stderr, raw, "DEBUG log");
    }
  });

  test("the DEBUG log hides the password in the driver's own parse error, which quotes the whole URL", () => {
    const raw = "#hunter2/x";
    const script =
      "import('mariadb').then(async ({ default: mariadb }) => { const { log } = await import('./src/log.ts');" +
      " try { mariadb.createPool(process.env.SOME_URL); } catch (e) { log('pool: ' + e.message); } })";
    const res = spawnSync(process.execPath, ["--import", "tsx", "-e", script], {
      encoding: "utf8",
      env: { ...process.env, DEBUG: "prisma-extension-resilience", SOME_URL: `mariadb://app:${raw}@db:3306/shop` },
      timeout: 20_000,
    });
    assert.match(res.stderr, /pool: error parsing connection string 'mariadb:\/\/app:\*\*\*\*@db:3306\/shop'/);
    assertHidden(res.stderr, raw, "DEBUG log");
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
    const misread = await runDoctor({ url: urlOf(users[2]), json: true });
    assert.ok(JSON.parse(misread.output).warnings.some((w: string) => /PrismaMariaDb misreads/.test(w)));
    const fine = await runDoctor({ url: urlOf(users[9]), json: true });
    assert.ok(!JSON.parse(fine.output).warnings.some((w: string) => /PrismaMariaDb misreads/.test(w)));
  });

  test("the CLI: text and --json, wrong password included", () => {
    const cli = (...args: string[]) =>
      spawnSync(process.execPath, ["--import", "tsx", "src/tuning/cli.ts", "doctor", ...args], { encoding: "utf8", env: { ...process.env, DATABASE_URL: "" }, timeout: 30_000 });
    const u = users[2];
    for (const args of [["--url", urlOf(u)], ["--url", urlOf(u), "--json"], ["--url", urlOf(u).replace("@127", "x@127"), "--json"]]) {
      const r = cli(...args);
      assert.ok(r.status === 1 || r.status === 2, `exit ${r.status}: ${r.stderr.slice(0, 200)}`);
      assertHidden(r.stdout + r.stderr, u.raw, `CLI ${args.slice(2).join(" ")}`);
    }
  });
});
