// The commit mark's SQL (see src/adapter/verify.ts): its table, its row key and the statement that
// sets it inside the transaction, sent together with the COMMIT.
import { createHash, randomBytes } from "node:crypto";
import type { SessionIdentity } from "./identity.ts";
import { classify, errorFacts } from "./classify.ts";

export const COMMIT_TABLE = "_resilience_commits";

export const CREATE_COMMIT_TABLE =
  `CREATE TABLE IF NOT EXISTS \`${COMMIT_TABLE}\` (\`conn\` VARCHAR(100) NOT NULL, \`token\` CHAR(32) NOT NULL, ` +
  "`at` DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3), PRIMARY KEY (`conn`)) DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci";

/** What to add to schema.prisma so that `prisma migrate dev` sees no drift. */
export const COMMIT_MODEL = `model ResilienceCommit {
  conn  String   @id @db.VarChar(100)
  token String   @db.Char(32)
  at    DateTime @default(now()) @db.DateTime(3)

  @@map("${COMMIT_TABLE}")
}`;

export type CommitVerdict = "committed" | "not-committed" | "unknown";

const SAFE = /^[A-Za-z0-9:.@_-]{1,100}$/;

/**
 * The connection's row key: its session identity — thread id, and the server's host name (hashed),
 * port and start time — unique per physical connection, also across the nodes of a cluster.
 */
export function markKey(session: SessionIdentity): string | undefined {
  // Computed once per identity (one per connection): every commit on it asks.
  if (keys.has(session)) return keys.get(session);
  const key = keyOf(session);
  keys.set(session, key);
  return key;
}
const keys = new WeakMap<SessionIdentity, string | undefined>();

function keyOf(session: SessionIdentity): string | undefined {
  const host = createHash("sha1").update(session.server.hostname).digest("hex").slice(0, 12);
  const key = `${session.threadId}@${host}:${session.server.port}:${session.server.started}`;
  return SAFE.test(key) ? key : undefined;
}

export function newToken(): string {
  return randomBytes(16).toString("hex");
}

/**
 * Tokens for one connection: 8 random bytes drawn once, then a counter (no SHA-1, no random draw
 * per commit). `next(16)` gives a 32-character token; `next(8)` a 24-character prefix for
 * `countedMarkSql`, which adds 8 more.
 */
export class TokenSource {
  private readonly prefix = randomBytes(8).toString("hex");
  private n = 0;
  next(counterDigits: 8 | 16 = 16): string {
    this.n = (this.n + 1) % 0xffffffff;
    return this.prefix + this.n.toString(16).padStart(counterDigits, "0");
  }
}

/**
 * The mark: this connection's row set to the token, inside the transaction. `guarded` (MariaDB's
 * `@@in_transaction`): it writes nothing when the transaction is gone. Only safe characters are inlined.
 */
export function markSql(key: string, token: string, guarded = false): string {
  if (!SAFE.test(key) || !/^[0-9a-f]{32}$/.test(token)) throw new Error("unsafe commit mark");
  const values = guarded ? `SELECT '${key}', '${token}', NOW(3) FROM DUAL WHERE @@in_transaction = 1` : `VALUES ('${key}', '${token}', NOW(3))`;
  return `INSERT INTO \`${COMMIT_TABLE}\` (\`conn\`, \`token\`, \`at\`) ${values} ON DUPLICATE KEY UPDATE \`token\` = VALUES(\`token\`), \`at\` = VALUES(\`at\`)`;
}

/** The largest statement row count a counted mark records; more reads as "count unknown". */
export const COUNT_CAP = 0xffffffff;

/**
 * The mark sent in one flight right behind its statement (no reply awaited in between; MariaDB's
 * guard only). It writes only when the transaction is open AND the statement before it succeeded
 * (`ROW_COUNT()` is -1 after an error, measured on MariaDB 10.11 for duplicate keys, an unknown
 * table, a value too long), and it records that statement's row count in the token's last 8 hex
 * digits: after a lost reply, the mark alone tells both whether it committed and what it returned.
 */
export function countedMarkSql(key: string, prefix: string): string {
  if (!SAFE.test(key) || !/^[0-9a-f]{24}$/.test(prefix)) throw new Error("unsafe commit mark");
  return (
    `INSERT INTO \`${COMMIT_TABLE}\` (\`conn\`, \`token\`, \`at\`) SELECT '${key}', CONCAT('${prefix}', LPAD(HEX(LEAST(ROW_COUNT(), ${COUNT_CAP})), 8, '0')), NOW(3) ` +
    "FROM DUAL WHERE @@in_transaction = 1 AND ROW_COUNT() >= 0 ON DUPLICATE KEY UPDATE `token` = VALUES(`token`), `at` = VALUES(`at`)"
  );
}

/** The statement row count a counted mark's token records (undefined: not that mark's, or capped). */
export function countOf(token: string, prefix: string): number | undefined {
  if (token.length !== 32 || !token.startsWith(prefix)) return undefined;
  const n = Number.parseInt(token.slice(24), 16);
  return Number.isInteger(n) && n < COUNT_CAP ? n : undefined;
}

// Mark errors that say the table is unusable (missing, no privilege, wrong columns): verification goes off.
const TABLE_ERRORS = new Set([1146, 1142, 1054, 1143, 1044]);

/** The server's answer to the mark says its table is unusable. */
export function markTableUnusable(error: unknown): boolean {
  return TABLE_ERRORS.has(errorFacts(error).errno ?? -1);
}

/**
 * What an error the server answered to the mark rolled back: the whole transaction (a deadlock, a
 * Galera brute-force abort, 1206 lock table full; 1205 where innodb_rollback_on_timeout is on), maybe
 * the whole transaction (1205 where that setting is not known), or the mark alone (anything else).
 */
export function refusedMarkRolledBack(error: unknown, rollbackOnTimeout: boolean | undefined): "transaction" | "maybe" | "mark" {
  const errno = errorFacts(error).errno;
  if (errno === 1205) return rollbackOnTimeout === true ? "transaction" : rollbackOnTimeout === false ? "mark" : "maybe";
  if (classify(error) === "conflict" || errno === 1206) return "transaction";
  return "mark";
}
