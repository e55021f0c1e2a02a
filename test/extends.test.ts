// `prisma.$extends(resilience)` (Prisma calls the extension with the client; defaults apply) works
// like `prisma.$extends(resilience({ … }))`: both typed as the client (tsc checks the
// expect-error lines below), both re-run a read whose connection was killed under it.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { PrismaMariaDb } from "@prisma/adapter-mariadb";
import { PrismaClient } from "../generated/prisma/client.ts";
import { resilience, withResilience, type RetryContext } from "../src/index.ts";
import { startDatabase, type TestDatabase } from "./support/mariadb.ts";
import { killedRead } from "./support/faults.ts";

describe("both forms of $extends", () => {
  let db: TestDatabase;
  before(async () => {
    db = await startDatabase();
  });
  after(async () => {
    await db?.stop();
  });

  const base = () => new PrismaClient({ adapter: withResilience(new PrismaMariaDb(db.url)) });


  test("prisma.$extends(resilience): defaults, typed, retries", async () => {
    const prisma = base().$extends(resilience);
    try {
      const n: number = await prisma.user.count();
      assert.equal(n, 0);
      // @ts-expect-error the extended client is typed: no such model
      assert.equal(prisma.noSuchModel, undefined);
      const rows = await killedRead(db, () => prisma.$queryRaw<Array<{ s: unknown }>>`SELECT SLEEP(0.5) AS s`);
      assert.equal(rows.length, 1, "the killed read was re-run");
    } finally {
      await prisma.$disconnect();
    }
  });

  test("prisma.$extends(resilience({ … })): options apply, typed, retries", async () => {
    const retries: RetryContext[] = [];
    const prisma = base().$extends(resilience({ retries: 2, onRetry: (ctx) => retries.push(ctx) }));
    try {
      const n: number = await prisma.user.count();
      assert.equal(n, 0);
      // @ts-expect-error the extended client is typed: no such model
      assert.equal(prisma.noSuchModel, undefined);
      const rows = await killedRead(db, () => prisma.$queryRaw<Array<{ s: unknown }>>`SELECT SLEEP(0.5) AS s`);
      assert.equal(rows.length, 1);
      assert.equal(retries.length, 1, "onRetry saw the retry");
      assert.equal(retries[0].operation, "$queryRaw");
    } finally {
      await prisma.$disconnect();
    }
  });

  test("without the extension the same kill reaches the caller (the test can fail)", async () => {
    const prisma = base();
    try {
      await assert.rejects(killedRead(db, () => prisma.$queryRaw`SELECT SLEEP(0.5) AS s`));
    } finally {
      await prisma.$disconnect();
    }
  });

  test("a client is told apart from options; anything else is still a TypeError", () => {
    assert.equal(typeof resilience(), "function");
    assert.throws(() => resilience({ _originalClient: {} } as any), /unknown option `_originalClient`/);
    assert.throws(() => resilience(42 as any), TypeError);
  });
});
