// node-postgres, loaded on first use: an app on MySQL alone has no `pg` installed, and importing
// this package must not need it. It is the `pg` that @prisma/adapter-pg itself uses (resolved from
// there first), so the Query class and the value mapper are the ones its clients run.
import { createRequire } from "node:module";
import type pg from "pg";

export interface PgDriver {
  Client: typeof pg.Client;
  /** pg's Query (a Submittable), subclassed by wire.ts. */
  Query: any;
  /** pg's own value mapper, the one Query.prepare uses (pg/lib/utils.js). */
  prepareValue: (v: unknown) => unknown;
}

let driver: PgDriver | undefined;

export function pgDriver(): PgDriver {
  if (driver) return driver;
  const own = createRequire(import.meta.url);
  let from = own;
  try {
    from = createRequire(own.resolve("@prisma/adapter-pg"));
  } catch {
    // no adapter-pg beside us: pg from here
  }
  const pgModule = from("pg");
  driver = { Client: pgModule.Client, Query: pgModule.Query, prepareValue: from("pg/lib/utils.js").prepareValue };
  return driver;
}
