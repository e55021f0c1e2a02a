// Exactly-once: when the reply to a COMMIT is lost, find out whether it committed instead of
// reporting "unknown". A transaction that wrote something leaves a mark inside itself, sent together
// with the COMMIT (pipelined: no extra round trip): its own connection's row of a small table, set
// to a fresh token. After a lost reply, over a side connection: the old session is made sure to be
// gone (it can neither commit nor roll back any more), then the row tells. Token there: committed.
// Not there: nothing committed.
import { setTimeout as sleep } from "node:timers/promises";
import { isReadOnlyAnswer, isWsrepNotReady } from "../mysql/classify.ts";
import { describeError, log } from "../core/log.ts";
import { readGaleraState } from "../mysql/galera.ts";
import { COMMIT_MODEL, COMMIT_TABLE, CREATE_COMMIT_TABLE, markSql, newToken, type CommitVerdict } from "../mysql/marks.ts";
import type { ClusterNodes } from "./nodes.ts";
import { flavorOf, processlist, restartOf, sameServer, SideConnections, type NodeAddress, type ServerIdentity, type SessionIdentity, type SideConnection } from "./side.ts";

export type { CommitVerdict } from "../mysql/marks.ts";

const NO_SUCH_TABLE = 1146;

/**
 * Makes sure the table exists and this user can write its rows, over a side connection: creates it
 * when missing (when `create`), writes a row and reads it back. Returns false, with the reason, when
 * verification cannot work (then it stays off: the behaviour without it).
 */
export async function prepareCommitTable(
  side: SideConnections,
  create: boolean,
  timeoutMs: number,
): Promise<{
  ok: boolean;
  why?: string;
  /** The server answered (false: try again later). */
  reached: boolean;
  guarded?: boolean;
  /** `@@innodb_rollback_on_timeout`, when it could be read. */
  rollbackOnTimeout?: boolean;
}> {
  let { conn, result } = await side.connect(timeoutMs);
  // Answered, but no connection: the account has all it may have (failureOf), all of them the pool's.
  if (!conn && result.ok) conn = await side.borrowFromPool(timeoutMs);
  if (!conn) return { ok: false, why: `no side connection (${result.ok ? "the account's connection limit" : result.reason})`, reached: false };
  // Never held up for long (a table lock, a metadata lock): the side connection is destroyed.
  const timer = setTimeout(() => void side.release(conn, true), timeoutMs * 2);
  try {
    try {
      await conn.query(`SELECT 1 FROM \`${COMMIT_TABLE}\` LIMIT 0`);
    } catch (e: any) {
      if (e?.errno !== NO_SUCH_TABLE || !create) throw e;
      await conn.query(CREATE_COMMIT_TABLE);
      log(`created table ${COMMIT_TABLE} for commit verification; add this model to schema.prisma so that prisma migrate sees no drift:\n${COMMIT_MODEL}`);
    }
    const guarded = await conn.query("SELECT @@in_transaction AS t").then(
      () => true,
      () => false,
    );
    const galera = await conn.query("SELECT @@wsrep_on AS w").then(
      (r: any) => Number(r?.[0]?.w) === 1,
      () => false,
    );
    // On a Galera node a transaction can be aborted silently (a brute-force abort): an unguarded
    // mark would then commit on its own and vouch for a transaction that did not.
    if (galera && !guarded) return { ok: false, why: "a Galera node without @@in_transaction", reached: true };
    const rollbackOnTimeout = await conn.query("SELECT @@innodb_rollback_on_timeout AS r").then(
      (r: any) => Number(r?.[0]?.r) === 1,
      () => undefined,
    );
    const token = newToken();
    const key = `check-${token.slice(0, 12)}`;
    await conn.query(markSql(key, token));
    const rows = await conn.query(`SELECT \`token\` FROM \`${COMMIT_TABLE}\` WHERE \`conn\` = ?`, [key]);
    await conn.query(`DELETE FROM \`${COMMIT_TABLE}\` WHERE \`conn\` = ?`, [key]);
    if (rows?.[0]?.token !== token) return { ok: false, why: "the check row could not be read back", reached: true };
    // Rows of connections idle for a day are of no use any more: keep the table small.
    await conn.query(`DELETE FROM \`${COMMIT_TABLE}\` WHERE \`at\` < NOW(3) - INTERVAL 1 DAY`).catch(() => undefined);
    return { ok: true, reached: true, guarded, rollbackOnTimeout };
  } catch (e: any) {
    // A lost connection says nothing about the table: try again later.
    const errno = e?.errno;
    const lost = typeof errno !== "number" || errno < 1000 || (errno >= 2000 && errno < 3000) || errno >= 45000;
    // A read-only server (a replica, a demoted primary) or a Galera node not ready: try again once
    // the pool is renewed, not off for good.
    const forNow = isReadOnlyAnswer(e) || isWsrepNotReady(e);
    return { ok: false, why: describeError(e), reached: !lost && !forNow };
  } finally {
    clearTimeout(timer);
    await side.release(conn);
  }
}

/** Is the session still on the server, by identity (thread id, user, client host:port)? */
async function sessionPresent(conn: SideConnection, session: SessionIdentity): Promise<boolean> {
  const rows = await conn.query(
    `SELECT ID FROM ${processlist(flavorOf(conn))} WHERE ID = ? AND USER = ? AND HOST = ?`,
    [session.threadId, session.user, session.host],
  );
  return rows.length > 0;
}

/**
 * Reads the mark. On a Galera node only when it is Synced in the Primary component (undefined
 * otherwise: try another node or later), and only after it applied everything the cluster ordered
 * before the read (wsrep_sync_wait). `elsewhere`: `conn` is not on the session's server; then only
 * a node of the same Galera cluster will do (a replica elsewhere may lag: its "not there" proves nothing).
 */
async function readMark(conn: SideConnection, v: Verification, elsewhere: boolean): Promise<CommitVerdict | undefined> {
  const galera = await readGaleraState(conn);
  if (galera.galera) {
    if (elsewhere) {
      if (!galera.healthy || !v.cluster || galera.clusterUuid !== v.cluster) return undefined;
    } else {
      // Its own node: in the Primary component and ready; Synced, or a donor (it applies everything too).
      const applying = galera.localState === 4 || galera.localState === 2;
      if (galera.clusterStatus !== "Primary" || !galera.ready || !applying) return undefined;
      v.cluster ??= galera.clusterUuid;
    }
  } else if (elsewhere) return undefined;
  if (galera.galera) await conn.query("SET SESSION wsrep_sync_wait = 1");
  // FOR UPDATE: a proxy that splits reads sends it to the primary, and it waits for anyone still
  // holding the row (in autocommit the lock ends with the statement).
  const rows = await conn.query(`SELECT \`token\` FROM \`${COMMIT_TABLE}\` WHERE \`conn\` = ? FOR UPDATE`, [v.key]);
  const found = rows?.[0]?.token;
  // A 24-character token is a counted mark's prefix (src/mysql/marks.ts countedMarkSql): the found token is kept for its count.
  const matches = typeof found === "string" && (found === v.token || (v.token.length === 24 && found.startsWith(v.token)));
  if (matches && v.found) v.found.token = found;
  return matches ? "committed" : "not-committed";
}

/** What one verification has found out so far. */
interface Verification {
  session: SessionIdentity;
  key: string;
  token: string;
  deadlineAt: number;
  /** The old session can no longer commit: any Synced node of its cluster's Primary component may be read. */
  gone: boolean;
  /** The session's Galera cluster (wsrep_cluster_state_uuid), once known. */
  cluster?: string;
  /** The session's node as its cluster lists it (`host:port`), once known. */
  member?: string;
  /** A session still there may be ended with KILL (killGhostSessions); else it must end by itself. */
  kill: boolean;
  /** Where a committed mark's token is put (a counted mark's records its statement's row count). */
  found?: { token?: string };
}

/** On a Galera cluster: what is known about its nodes, and whether a refusal means "stopped". */
export interface ClusterView {
  nodes: ClusterNodes;
  refusedMeansStopped: boolean;
  /** false (killGhostSessions: false): no KILL is sent; the old session must be gone by itself. */
  killSessions?: boolean;
}

/**
 * After a lost COMMIT reply: makes sure the old session can no longer commit, then reads the mark.
 * The session is gone when it is no longer in its server's processlist (matched by identity, ended
 * with KILL first when needed and allowed), when that server restarted (no session survives a restart), or, on
 * a Galera node behind a proxy, when the node's own address refuses connections and the Primary
 * component no longer counts it (see `stoppedNode`). "unknown" when none of that can be shown by
 * `deadlineAt` (performance.now() ms): the server is unreachable, or only other servers are.
 */
export async function verifyCommit(
  side: SideConnections,
  session: SessionIdentity,
  key: string,
  token: string,
  deadlineAt: number,
  cluster?: ClusterView,
  found?: { token?: string },
): Promise<CommitVerdict> {
  const v: Verification = {
    found,
    session,
    key,
    token,
    deadlineAt,
    gone: false,
    cluster: session.cluster,
    member: session.member,
    kill: cluster?.killSessions !== false,
  };
  let pause = 25;
  while (performance.now() < deadlineAt && !side.isClosed) {
    try {
      const verdict = await withSide(side, v, undefined, (conn) => attempt(side, conn, v, cluster));
      if (verdict) return verdict;
    } catch (e) {
      log(`verifying a lost COMMIT failed once (${describeError(e)}); trying again`);
    }
    await sleep(Math.min(pause, Math.max(0, deadlineAt - performance.now())));
    pause = Math.min(500, pause * 2);
  }
  return "unknown";
}

/**
 * Runs `use` on a fresh side connection (to `at`, or the app's address), ended by the deadline:
 * past it the connection is destroyed, whatever it waits for. `refused`: the connection was refused.
 */
async function withSide<T>(
  side: SideConnections,
  v: Verification,
  at: NodeAddress | undefined,
  use: (conn: SideConnection) => Promise<T | undefined>,
  refused?: () => Promise<T | undefined>,
): Promise<T | undefined> {
  const wait = Math.max(50, Math.min(1000, v.deadlineAt - performance.now()));
  let { conn, result } = await side.connect(wait, at);
  // Answered, but no connection: the account has all it may have (failureOf), all of them the pool's.
  if (!conn && result.ok && !at) conn = await side.borrowFromPool(wait);
  if (!conn) return !result.ok && result.reason === "connection refused" && refused ? await refused() : undefined;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    void side.release(conn, true);
  }, Math.max(0, v.deadlineAt - performance.now()));
  try {
    return await use(conn);
  } catch (e) {
    if (timedOut) return undefined;
    throw e;
  } finally {
    clearTimeout(timer);
    if (!timedOut) await side.release(conn);
  }
}

/** One try over one side connection; undefined when the session could not be shown gone from here. */
async function attempt(side: SideConnections, conn: SideConnection, v: Verification, cluster?: ClusterView): Promise<CommitVerdict | undefined> {
  const here = await SideConnections.serverIdentity(conn);
  if (!here) return undefined;
  const verdict = await onServer(conn, here, v);
  if (verdict || v.gone) return verdict ?? (await readMark(conn, v, !sameServer(here, v.session.server)));
  // Another server (a proxy in front of a cluster): the old session is out of reach from here.
  // Its node may be reachable at its own address, or shown stopped.
  const node = cluster?.nodes.addressOf(v.session.server);
  if (!node) return undefined;
  const stopped = cluster?.refusedMeansStopped
    ? async () => ((await stoppedNode(conn, node, v)) ? await readMark(conn, v, true) : undefined)
    : undefined;
  return await withSide(
    side,
    v,
    node.address,
    async (direct) => {
      const there = await SideConnections.serverIdentity(direct);
      const found = there ? await onServer(direct, there, v) : undefined;
      // The session is gone but its node cannot be read (not Synced): here may be.
      return found ?? (v.gone ? await readMark(conn, v, true) : undefined);
    },
    stopped,
  );
}

/**
 * The connection is on the session's own server (or that server started again): the session is
 * made sure to be gone, then the mark is read here. undefined on another server.
 */
async function onServer(conn: SideConnection, here: ServerIdentity, v: Verification): Promise<CommitVerdict | undefined> {
  const { session } = v;
  if (sameServer(here, session.server)) {
    // The same server: the session must be gone before the mark can be trusted.
    // Without KILL (killGhostSessions: false) only a session that ended by itself will do.
    for (let first = true; await sessionPresent(conn, session); first = false) {
      if (v.kill) {
        log(`verifying a lost COMMIT: ending its old session ${session.threadId} first`);
        await conn.query(`KILL CONNECTION ${Math.trunc(session.threadId)}`).catch(() => undefined);
      } else if (first) log(`verifying a lost COMMIT: its old session ${session.threadId} is still there (killGhostSessions: false): waiting for it to end`);
      if (performance.now() > v.deadlineAt) return "unknown";
      await sleep(v.kill ? 20 : 100);
    }
    v.gone = true;
    return await readMark(conn, v, false);
  }
  // The same server, started again: no session from before the restart survives it.
  if (restartOf(here, session.server)) {
    // Its session still there: the same server after all (its clock stepped), not a restart.
    if (await sessionPresent(conn, session)) return undefined;
    // On a cluster: the same node (its own address), in the same cluster; not another node with the
    // same host name and port (containers).
    // A Galera session without its own entry cannot be matched: no restart is taken on trust.
    // A session that was on Galera, now back without it (a maintenance start with wsrep off): this
    // node's table may lack what the cluster committed, so it cannot tell either.
    const galera = await readGaleraState(conn);
    const wasOnGalera = v.member !== undefined || v.cluster !== undefined;
    if ((galera.galera || wasOnGalera) && (!galera.galera || !v.member || galera.self !== v.member || (v.cluster !== undefined && galera.clusterUuid !== v.cluster))) return undefined;
    v.gone = true;
    return await readMark(conn, v, false);
  }
  return undefined;
}

/**
 * The session's node refused a connection at its own address (checked reachable before: its
 * server is not running there now). `conn` is on another node: once that node's Primary component
 * no longer counts the stopped one as a member, the stopped node's last commits were either
 * delivered to the component before the membership changed or never will be (Galera delivers a
 * member's writesets before the view that drops it), and a stopped server's sessions can commit
 * nothing more. A node that is only cut off, still running, does not refuse: its session stays a
 * possible ghost (it can commit once it rejoins, measured), so it is not taken as gone.
 */
async function stoppedNode(conn: SideConnection, node: { member: string; cluster: string }, v: Verification): Promise<boolean> {
  const state = await readGaleraState(conn);
  if (!state.galera || !state.healthy || state.clusterUuid !== node.cluster || !state.members || state.members.includes(node.member)) return false;
  log(`verifying a lost COMMIT: its node (${node.member}) is stopped and out of the Primary component; reading the mark on another node`);
  v.gone = true;
  return true;
}
