// Data checks every fault test ends with: how many rows a key has (a duplicated write shows as 2).
import type { TestDatabase } from "./mariadb.ts";

export async function ledgerRows(db: TestDatabase, key: string): Promise<number> {
  const rows = await db.admin<any[]>(`SELECT COUNT(*) AS n FROM \`${db.database}\`.Ledger WHERE \`key\` = ?`, [key]);
  return Number(rows[0].n);
}

/** Keys with more than one row: any is a duplicated write. */
export async function duplicateKeys(db: TestDatabase): Promise<string[]> {
  const rows = await db.admin<any[]>(
    `SELECT \`key\` FROM \`${db.database}\`.Ledger GROUP BY \`key\` HAVING COUNT(*) > 1`,
  );
  return rows.map((r) => r.key);
}

/** Acknowledged keys that have no row: any is a lost write. */
export async function missingKeys(db: TestDatabase, acknowledged: Iterable<string>): Promise<string[]> {
  const keys = [...acknowledged];
  if (keys.length === 0) return [];
  const present = new Set<string>();
  for (let i = 0; i < keys.length; i += 1000) {
    const chunk = keys.slice(i, i + 1000);
    const rows = await db.admin<any[]>(
      `SELECT DISTINCT \`key\` FROM \`${db.database}\`.Ledger WHERE \`key\` IN (?)`,
      [chunk],
    );
    for (const r of rows) present.add(r.key);
  }
  return keys.filter((k) => !present.has(k));
}

let counter = 0;
/** A key no other test uses. */
export function uniqueKey(label: string): string {
  return `${label}-${process.pid}-${Date.now().toString(36)}-${counter++}`;
}

/**
 * Starts a Prisma operation now (PrismaPromises are lazy: nothing is sent until `then`) and returns
 * a promise to await later; a rejection before then is not reported as unhandled.
 */
export function inFlight<T>(operation: PromiseLike<T>): Promise<T> {
  const started = Promise.resolve(operation);
  started.catch(() => undefined);
  return started;
}

/** Starts an operation now and resolves with what it rejects with; fails the test if it succeeds. */
export function rejectionOf(operation: PromiseLike<unknown>, expected = "an error"): Promise<any> {
  return inFlight(
    Promise.resolve(operation).then(
      (value) => {
        throw new Error(`expected ${expected}, got a result: ${JSON.stringify(value)}`);
      },
      (error) => error,
    ),
  );
}
