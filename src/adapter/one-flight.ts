// When a write outside a transaction can go in one flight with its counted mark and the COMMIT
// (transaction.ts executeAndCommit): only where every command is queued on the wire in call order.
// The mariadb driver pipelines a PREPARE and its EXECUTE only with `pipelining` on and a MariaDB
// 10.2.4+ handshake (node_modules/mariadb/lib/connection.js prepareExecute); otherwise the EXECUTE
// waits for the PREPARE's reply, and would go after the COMMIT. A prepare cache does the same
// (src/adapter/prepare.ts). A statement with RETURNING answers rows, after which ROW_COUNT() is -1:
// its counted mark would never be written.

interface ConnInfo {
  isMariaDB?(): boolean;
  hasMinVersion?(major: number, minor: number, patch: number): boolean;
}

export function canGoInOneFlight(conn: { info?: unknown; prepareCache?: unknown } | undefined, sql: string, pipelining: boolean): boolean {
  if (!pipelining || !conn || conn.prepareCache) return false;
  const info = conn.info as ConnInfo | undefined;
  if (info?.isMariaDB?.() !== true || info.hasMinVersion?.(10, 2, 4) !== true) return false;
  return !/\bRETURNING\b/i.test(sql);
}
