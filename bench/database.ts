// The demos' database: DATABASE_URL when set (a server the demo did not start: no kill -9 or
// restart there), else a throwaway MariaDB; or a throwaway PostgreSQL. Says which, with the password as ****.
import { redact } from "../src/index.ts";
import { connectDatabase, startDatabase, type TestDatabase } from "../test/support/mariadb.ts";
import { startPostgres, type PostgresServer } from "../test/support/postgres.ts";

export async function demoDatabase(): Promise<{ db: TestDatabase; external: string | undefined }> {
  const external = process.env.DATABASE_URL;
  console.log(external ? `using DATABASE_URL ${redact(external)} (no kill -9 / restart on a server this demo did not start)` : "starting a throwaway MariaDB …");
  return { db: external ? await connectDatabase(external) : await startDatabase(), external };
}

/** `--db postgres`: a throwaway PostgreSQL (the demo's faults need a server it started). */
export async function demoPostgres(): Promise<{ db: PostgresServer; external: undefined }> {
  console.log("starting a throwaway PostgreSQL …");
  return { db: await startPostgres(), external: undefined };
}
