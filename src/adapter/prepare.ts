// mariadb 3.4's prepareExecute() (node_modules/mariadb/lib/connection.js) sends a statement the
// connection has not prepared yet as a PREPARE pipelined with an EXECUTE of statement id -1 ("the
// statement just prepared"), on MariaDB 10.2.4+ with `pipelining` on (the default). When that
// PREPARE fails before the server registers the statement, the EXECUTE runs the connection's
// previous prepared statement instead, with the new statement's parameters: a write nobody sent,
// outside the transaction, behind an error. Measured on MariaDB 10.11: after a Galera brute-force
// abort (the PREPARE gets 1213, test/cluster/prepare-ghost.test.ts) and on a plain server at
// max_prepared_stmt_count (1461). A previous statement is left open only by the driver's prepare
// cache (without one, each statement is closed after its EXECUTE, as on the pool
// @prisma/adapter-mariadb builds by default: prepareCacheLength=0). So on a connection with a cache
// an uncached statement's PREPARE goes alone, and the driver sends the EXECUTE with the statement's
// own id once the PREPARE has succeeded: one round trip more per prepare-cache miss. Cached
// statements are executed at once, as before.

/** Makes `conn` (mariadb's Connection) wait for a PREPARE's reply before its EXECUTE, when it has a prepare cache. */
export function serializePrepares(conn: any): void {
  const prepareExecute = conn?.prepareExecute;
  if (typeof prepareExecute !== "function") return;
  conn.prepareExecute = function (...args: unknown[]) {
    // conn.opts is the connection's own (its constructor copies the settings); a redirect replaces it.
    const opts = conn.opts;
    if (!conn.prepareCache || !opts?.pipelining) return prepareExecute.apply(conn, args);
    // prepareExecute reads the flag once, synchronously, to choose how to send; its commands never
    // read it. Nothing else runs before the finally puts it back.
    opts.pipelining = false;
    try {
      return prepareExecute.apply(conn, args);
    } finally {
      opts.pipelining = true;
    }
  };
}
