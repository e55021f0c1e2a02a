// The package as users install it: `npm pack`, the tarball installed into a fresh app with its own
// schema.prisma and generated client, both `$extends(resilience)` and `$extends(resilience({…}))`
// type-checked under `strict`, and a query whose connection is KILLed mid-flight re-run by the
// installed code. Nothing of this repository's source is imported by the app: only the tarball.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { startDatabase, type TestDatabase } from "./support/mariadb.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const PINNED = JSON.parse(spawnSync("node", ["-p", "JSON.stringify(require('./package.json').devDependencies)"], { cwd: ROOT, encoding: "utf8" }).stdout);

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}, timeoutMs = 240_000) {
  const res = spawnSync(cmd, args, { cwd, encoding: "utf8", env: { ...process.env, ...env }, timeout: timeoutMs });
  if (res.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${res.status ?? res.signal}):\n${res.stdout}\n${res.stderr}`);
  return res.stdout;
}

const SCHEMA = `generator client {
  provider = "prisma-client"
  output   = "../generated/prisma"
}

datasource db {
  provider = "mysql"
}

model Item {
  id   Int    @id @default(autoincrement())
  name String
}
`;

// The app: its connection string only from the environment (Prisma prints source lines around a
// failing call; no URL is written here).
const APP = `import { PrismaMariaDb } from "@prisma/adapter-mariadb";
import { PrismaClient } from "./generated/prisma/client.ts";
import { resilience, withResilience, isOutcomeUnknown, type RetryContext } from "prisma-extension-resilience";

const connection = process.env.APP_DATABASE_URL!;
const retries: RetryContext[] = [];
const base = new PrismaClient({ adapter: withResilience(new PrismaMariaDb(connection)) });
const plain = base.$extends(resilience);
const tuned = base.$extends(resilience({ retries: 1, deadline: 10_000, onRetry: (c) => retries.push(c) }));

// Both forms keep the client's types.
const n: number = await plain.item.count();
const item: { id: number; name: string } = await tuned.item.create({ data: { name: "first" } });
// @ts-expect-error no such model on the extended client
void plain.noSuchModel;
// @ts-expect-error options are checked (by tsc here; at run time it would throw a TypeError)
if (n < 0) resilience({ retriez: 1 });
void isOutcomeUnknown;

process.stdout.write("READY\\n");
const rows = await tuned.$queryRaw<Array<{ s: unknown }>>\`SELECT SLEEP(1.5) AS s\`;
const count: number = await tuned.item.count();
process.stdout.write(JSON.stringify({ n, item: item.name, rows: rows.length, count, retries: retries.map((r) => r.errorClass) }) + "\\n");
await base.$disconnect();
`;

describe("the packed package in a fresh app", () => {
  let db: TestDatabase;
  let dir: string;
  before(async () => {
    db = await startDatabase();
    await db.admin(`CREATE TABLE \`${db.database}\`.Item (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, name VARCHAR(191) NOT NULL)`);
    dir = mkdtempSync(join(tmpdir(), "resilience-packed-"));
  });
  after(async () => {
    await db?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("npm pack, install, generate, tsc --strict, and a killed query re-run by the installed code", { timeout: 300_000 }, async () => {
    run("npm", ["pack", "--silent", "--pack-destination", dir], ROOT);
    const tarball = readdirSync(dir).find((f) => f.endsWith(".tgz"));
    assert.ok(tarball, "npm pack made a tarball");
    const app = join(dir, "app");
    mkdirSync(join(app, "prisma"), { recursive: true });
    const pin = (name: string) => PINNED[name] as string;
    writeFileSync(
      join(app, "package.json"),
      JSON.stringify({
        name: "fresh-app",
        private: true,
        type: "module",
        dependencies: {
          "prisma-extension-resilience": `file:../${tarball}`,
          "@prisma/client": pin("@prisma/client"),
          "@prisma/adapter-mariadb": pin("@prisma/adapter-mariadb"),
          mariadb: pin("mariadb"),
        },
        devDependencies: { prisma: pin("prisma"), typescript: pin("typescript"), tsx: pin("tsx"), "@types/node": pin("@types/node") },
      }),
    );
    writeFileSync(join(app, "prisma", "schema.prisma"), SCHEMA);
    writeFileSync(join(app, "prisma.config.ts"), `import { defineConfig } from "prisma/config";\nexport default defineConfig({ schema: "prisma/schema.prisma" });\n`);
    writeFileSync(
      join(app, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: { target: "ES2022", module: "NodeNext", moduleResolution: "NodeNext", strict: true, noEmit: true, allowImportingTsExtensions: true, skipLibCheck: true, types: ["node"] },
        include: ["app.ts", "generated"],
      }),
    );
    writeFileSync(join(app, "app.ts"), APP);
    run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"], app);
    run("npx", ["prisma", "generate"], app, { PRISMA_SCHEMA_ENGINE_BINARY: "/bin/true" });
    run("npx", ["tsc", "-p", "tsconfig.json"], app);

    // Run it; KILL the connection while its SELECT SLEEP(1.5) runs (once: the re-run is left alone).
    const child = spawn("npx", ["tsx", "app.ts"], { cwd: app, env: { ...process.env, APP_DATABASE_URL: db.url }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    try {
      await Promise.race([
        db.waitForStatement("SLEEP(1.5)", 30_000),
        exited.then((code) => assert.fail(`the app exited (${code}) before its query ran:\n${out}\n${err}`)),
      ]);
      assert.equal((await db.killConnections({ running: "SLEEP(1.5)" })).length, 1, "one connection killed mid-query");
      assert.equal(await exited, 0, `the app exited cleanly:\n${out}\n${err}`);
    } finally {
      clearTimeout(timer);
      child.kill("SIGKILL");
    }
    const result = JSON.parse(out.trim().split("\n").at(-1)!);
    assert.deepEqual(result, { n: 0, item: "first", rows: 1, count: 1, retries: ["connection-lost"] });
    assert.equal(Number((await db.admin<any[]>(`SELECT COUNT(*) AS c FROM \`${db.database}\`.Item`))[0].c), 1, "one row, no duplicate");
  });
});
