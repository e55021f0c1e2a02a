// The commit mark's SQL (see src/adapter/verify.ts): its table, its row key and the statement that
// sets it inside the transaction, sent together with the COMMIT.
import { createHash, randomBytes } from "node:crypto";
import type { SessionIdentity } from "./identity.ts";

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
  const host = createHash("sha1").update(session.server.hostname).digest("hex").slice(0, 12);
  const key = `${session.threadId}@${host}:${session.server.port}:${session.server.started}`;
  return SAFE.test(key) ? key : undefined;
}

export function newToken(): string {
  return randomBytes(16).toString("hex");
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
