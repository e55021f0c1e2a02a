// The frame every fault-test file shares: one throwaway server for the file, clients that are
// disconnected after each test, and (optionally) the duplicate-key check after each test.
import assert from "node:assert/strict";
import { after, afterEach, before } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { resilientClient, type ResilientHandle } from "./clients.ts";
import { duplicateKeys } from "./data.ts";
import { startDatabase, type TestDatabase } from "./mariadb.ts";

export function faultSuite(onStarted: (db: TestDatabase) => void, options: { checkDuplicates?: boolean } = {}) {
  let db: TestDatabase | undefined;
  const handles: ResilientHandle[] = [];
  before(async () => {
    db = await startDatabase();
    onStarted(db);
  });
  afterEach(async () => {
    // Bounded: a $disconnect that hangs (a black-holed link, a pool that never ends) fails the test.
    for (const h of handles.splice(0)) {
      const done = h.prisma.$disconnect().then(
        () => true,
        () => true,
      );
      assert.ok(await Promise.race([done, sleep(10_000, false, { ref: false })]), "$disconnect() ended within 10 s");
    }
    if (options.checkDuplicates && db) assert.deepEqual(await duplicateKeys(db), [], "no key has two rows");
  });
  after(async () => {
    await db?.stop();
  });
  /** A client with resilience(), disconnected after the test. */
  return function client(url = db!.url, clientOptions: Parameters<typeof resilientClient>[1] = {}) {
    const h = resilientClient(url, clientOptions);
    handles.push(h);
    return h;
  };
}
