// What the chaos workload (chaos.ts) needs of a database: its clients, its faults and its data
// checks. One implementation per database, so that one workload and one set of checks run on both.
import { classify as mysqlClassify } from "../../src/index.ts";
import type { ResilienceOptions, ResilientAdapterOptions } from "../../src/index.ts";
import { bareClient, resilientClient, withParams } from "./clients.ts";
import type { TestDatabase } from "./mariadb.ts";

export type ChaosMode = "bare" | "resilient" | "resilient-unwrapped";

export interface ClientOptions extends ResilienceOptions {
  wrap: boolean;
  adapter?: ResilientAdapterOptions;
  /** Extra driver pool parameters for the app's URL (mariadb only). */
  urlParams?: Record<string, string | number>;
}

export interface ChaosDb {
  readonly kind: "mysql" | "postgres";
  /** The server was started here: it can be killed and restarted. */
  readonly embedded: boolean;
  /** A Prisma client of the app schema: bare, or with the package. */
  client(mode: ChaosMode, options: ClientOptions): any;
  /** The package's classifier for this database's errors. */
  classify(error: unknown): string;
  /** The server ends idle sessions after `seconds` (wait_timeout, idle_session_timeout); returns the old value. */
  setIdleTimeout(seconds: number): Promise<number>;
  /** The app's sessions that can be killed now. */
  victims(): Promise<number[]>;
  /** Ends one of the app's sessions from an admin session (KILL, pg_terminate_backend). */
  kill(session: number): Promise<void>;
  kill9(): Promise<void>;
  start(): Promise<void>;
  /** A read the workload runs as raw SQL (rows of this worker's keys). */
  rawRead(prisma: any, pattern: string): Promise<unknown>;
  /** A write the workload runs as raw SQL (one Ledger row). */
  rawInsert(prisma: any, key: string): Promise<unknown>;
  /** Creates the hot counters' users (balance 0). */
  insertHot(emails: string[]): Promise<void>;
  /** Rows per Ledger key starting with `prefix`. */
  ledgerCounts(prefix: string): Promise<Map<string, number>>;
  /** Balances of the hot counters. */
  hotBalances(emails: string[]): Promise<Map<string, number>>;
}

export function isChaosDb(value: unknown): value is ChaosDb {
  return typeof (value as ChaosDb)?.victims === "function";
}

/** MySQL/MariaDB: the harness of mariadb.ts (or a server of the user's). */
export function mysqlChaosDb(db: TestDatabase): ChaosDb {
  return {
    kind: "mysql",
    get embedded() {
      return db.embedded;
    },
    client(mode, { wrap, adapter, urlParams, ...resilience }) {
      const url = withParams(db.url, urlParams ?? {});
      return mode === "bare" ? bareClient(url) : resilientClient(url, { ...resilience, wrap, adapter }).prisma;
    },
    classify: (error) => mysqlClassify(error),
    async setIdleTimeout(seconds) {
      const old = Number(await db.getGlobal("wait_timeout"));
      await db.setGlobal("wait_timeout", seconds);
      return old;
    },
    async victims() {
      return (await db.appConnections()).filter((c) => c.command !== "Killed").map((c) => c.id);
    },
    async kill(id) {
      await db.admin(`KILL ${Math.trunc(id)}`);
    },
    kill9: () => db.kill9(),
    start: () => db.start(),
    rawRead: (prisma, pattern) => prisma.$queryRaw`SELECT COUNT(*) AS n FROM Ledger WHERE \`key\` LIKE ${pattern}`,
    rawInsert: (prisma, key) => prisma.$executeRaw`INSERT INTO Ledger (\`key\`, amount) VALUES (${key}, 1)`,
    async insertHot(emails) {
      for (const email of emails) await db.admin(`INSERT INTO \`${db.database}\`.User (email, balance) VALUES (?, 0)`, [email]);
    },
    async ledgerCounts(prefix) {
      const rows = await db.admin<any[]>(`SELECT \`key\`, COUNT(*) AS n FROM \`${db.database}\`.Ledger WHERE \`key\` LIKE ? GROUP BY \`key\``, [`${prefix}-%`]);
      return new Map(rows.map((r) => [r.key as string, Number(r.n)]));
    },
    async hotBalances(emails) {
      const rows = await db.admin<any[]>(`SELECT email, balance FROM \`${db.database}\`.User WHERE email IN (?)`, [emails]);
      return new Map(rows.map((r) => [r.email as string, Number(r.balance)]));
    },
  };
}
