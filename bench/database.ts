// The demos' database: DATABASE_URL when set (a server the demo did not start: no kill -9 or
// restart there), else a throwaway MariaDB. Says which, with the password as ****.
import { redact } from "../src/index.ts";
import { connectDatabase, startDatabase, type TestDatabase } from "../test/support/mariadb.ts";

export async function demoDatabase(): Promise<{ db: TestDatabase; external: string | undefined }> {
  const external = process.env.DATABASE_URL;
  console.log(external ? `using DATABASE_URL ${redact(external)} (no kill -9 / restart on a server this demo did not start)` : "starting a throwaway MariaDB …");
  return { db: external ? await connectDatabase(external) : await startDatabase(), external };
}
