// The wrapped transaction: records what had reached the server when one of its calls fails, makes
// a rollback on a connection that is already dead resolve instead of throwing, notices a transaction
// the server ended without saying so, and (exactly-once) sends a mark with its COMMIT.
import { classify, errorFacts, provesNotSent, serverAnswered } from "../mysql/classify.ts";
import { log } from "../core/log.ts";
import { firstKeyword, isReadOnlySql, mayCommitImplicitly, NEEDS_SCAN } from "../mysql/sql.ts";
import { canGoInOneFlight } from "./one-flight.ts";
import { afterRefusedBegin, type Opening, type Reply } from "./pipelined-begin.ts";
import { tagged } from "./record.ts";
import type { SqlQueryLike, TransactionLike } from "../core/driver-adapter.ts";

export { tagged } from "./record.ts";
import { countedMarkSql, countOf, markSql, markTableUnusable, refusedMarkRolledBack, TokenSource } from "../mysql/marks.ts";
import { asAdapterError, transactionEnded } from "../mysql/adapter-errors.ts";
import type { FailureHandler } from "./failure-handler.ts";
export type { FailureHandler } from "./failure-handler.ts";

// What Prisma sends inside a transaction: one DML statement, no `;`, no comment, no literal. Only
// other text (raw SQL) is scanned for statements that commit implicitly.
const PLAIN_DML = /^\s*(?:SELECT|INSERT|UPDATE|DELETE)\b/i;
function mayEndTransaction(sql: string): boolean {
  if (PLAIN_DML.test(sql) && !NEEDS_SCAN.test(sql)) return false;
  return mayCommitImplicitly(sql);
}

// Connections whose server has no @@in_transaction (it answered 1193 ER_UNKNOWN_SYSTEM_VARIABLE).
const NO_GUARD = new WeakSet<object>();
// Each connection's mark tokens (keyed by its `info`: the pool hands out a new wrapper for every transaction).
const TOKENS = new WeakMap<object, TokenSource>();
function tokensOf(conn: any): TokenSource {
  const at = conn.info ?? conn;
  let tokens = TOKENS.get(at);
  if (!tokens) TOKENS.set(at, (tokens = new TokenSource()));
  return tokens;
}
const UNKNOWN_SYSTEM_VARIABLE = 1193;

// The server status flag of an open transaction (MySQL protocol SERVER_STATUS_IN_TRANS).
const IN_TRANS = 1;

const SOCKET_TIMEOUT = 45026;

/** A COMMIT failed without a server answer, and the error does not prove it unsent: it may have committed. */
function inDoubt(error: unknown): boolean {
  if (serverAnswered(error) || errorFacts(error).verdict !== undefined) return false;
  return classify(error) === "connection-lost" || !provesNotSent(error);
}

export class ResilientTransaction implements TransactionLike {
  /** The connection died under this transaction: the server has rolled it back. */
  private lost = false;
  /**
   * A statement that may commit implicitly was sent: from then on part of the transaction may be
   * committed, and no failure is taken as "the server rolled it all back".
   */
  private committedEarlier = false;
  /** A statement that can change data was sent: a lost COMMIT reply is worth verifying. */
  private wrote = false;
  /** Writes sent and not yet answered (Prisma may run a transaction's queries concurrently). */
  private writesInFlight = 0;
  /** The server was seen to have ended the transaction: nothing more is sent in it. */
  private ended?: unknown;
  readonly createSavepoint?: (name: string) => Promise<void>;
  readonly rollbackToSavepoint?: (name: string) => Promise<void>;
  readonly releaseSavepoint?: (name: string) => Promise<void>;

  constructor(
    private readonly inner: TransactionLike,
    private readonly handler: FailureHandler,
  ) {
    if (inner.createSavepoint) {
      this.createSavepoint = (name) => inner.createSavepoint!(name).catch((e) => this.onStatementError(e, "SAVEPOINT"));
    }
    if (inner.rollbackToSavepoint) {
      this.rollbackToSavepoint = (name) =>
        inner.rollbackToSavepoint!(name).catch((e) => this.onStatementError(e, "ROLLBACK TO"));
    }
    if (inner.releaseSavepoint) {
      this.releaseSavepoint = (name) =>
        inner.releaseSavepoint!(name).catch((e) => this.onStatementError(e, "RELEASE SAVEPOINT"));
    }
  }

  get provider() {
    return this.inner.provider;
  }
  get adapterName() {
    return this.inner.adapterName;
  }
  get options() {
    return this.inner.options;
  }
  /** Server thread id of the transaction's connection (mariadb driver), when it can be read. */
  get threadId(): number | undefined {
    const conn = (this.inner as any).conn ?? (this.inner as any).client;
    const id = conn?.threadId ?? conn?.info?.threadId;
    return typeof id === "number" ? id : undefined;
  }

  private async onStatementError(error: unknown, sql: string, write = false): Promise<never> {
    if (write) this.writesInFlight--;
    if (this.ended !== undefined) throw this.ended;
    const threadId = this.threadId;
    const errorClass = classify(error);
    if (errorClass === "connection-lost") {
      this.lost = true;
      // A socket timeout is a silent drop: the server still holds this session, its open
      // transaction and its row locks. End it, so the re-run does not wait on its own ghost.
      if (threadId !== undefined && errorFacts(error).errno === SOCKET_TIMEOUT) await this.handler.killGhost(threadId, this.connection);
    }
    // Lost, or a server that cannot take it now (read-only, Galera node not ready): the handler decides.
    if (errorClass === "connection-lost" || errorClass === "unavailable") await this.handler.suspect(error);
    throw tagged("statement", error, sql, { threadId, committedEarlier: this.committedEarlier, duringOutage: this.handler.serverDown });
  }

  /**
   * After a statement: is the transaction still open? A Galera node can abort a transaction (a
   * conflicting write set from another node) and, measured on MariaDB 10.11, answer the next
   * statement as if nothing happened, outside any transaction. The server status flag says so at no
   * cost. A read that ran outside the transaction changed nothing: the transaction is re-run. A write
   * that ran outside it committed on its own: nothing is re-run.
   */
  private stillOpen<T>(result: T, sql: string, write: boolean): T {
    if (write) this.writesInFlight--;
    if (this.committedEarlier && this.ended === undefined) return result;
    if (this.ended !== undefined) throw this.ended;
    const status = this.connection?.info?.status;
    if (typeof status !== "number" || (status & IN_TRANS) !== 0) return result;
    // A write of this transaction that ran (or is running) outside it committed on its own.
    const wroteAlone = write || this.writesInFlight > 0;
    if (wroteAlone) this.committedEarlier = true;
    log(`the server ended the transaction behind a ${firstKeyword(sql)}${wroteAlone ? "; a write ran on its own" : ""}`);
    this.ended = tagged("statement", transactionEnded(), sql, { threadId: this.threadId, committedEarlier: wroteAlone, transactionEnded: true });
    throw this.ended;
  }

  /** What a statement means for the transaction, noted before it is sent. Returns whether it writes. */
  private note(sql: string): boolean {
    if (this.ended !== undefined) throw this.ended;
    if (!this.committedEarlier && mayEndTransaction(sql)) this.committedEarlier = true;
    const write = !isReadOnlySql(sql);
    if (write) {
      this.wrote = true;
      this.writesInFlight++;
    }
    return write;
  }

  queryRaw(params: SqlQueryLike) {
    return this.statement(params, (p) => this.inner.queryRaw(p));
  }
  executeRaw(params: SqlQueryLike) {
    return this.statement(params, (p) => this.inner.executeRaw(p));
  }

  /** One statement of the transaction: noted before it is sent, checked after its answer. */
  private statement<T>(params: SqlQueryLike, send: (params: SqlQueryLike) => Promise<T>): Promise<T> {
    let write: boolean;
    try {
      write = this.note(params.sql);
    } catch (ended) {
      return Promise.reject(ended);
    }
    return send(params).then(
      (r) => this.stillOpen(r, params.sql, write),
      (e) => this.onStatementError(e, params.sql, write),
    );
  }

  /** The driver connection of this transaction (mariadb: the pool connection). */
  private get connection(): any {
    return (this.inner as any).conn ?? (this.inner as any).client;
  }

  commit() {
    const conn = this.connection;
    const key = this.wrote && !this.committedEarlier && typeof conn?.query === "function" ? this.handler.markKeyOf?.(conn) : undefined;
    if (this.ended !== undefined) return Promise.reject(this.ended);
    if (key === undefined) {
      // A server without @@in_transaction (MySQL) answered the guard with an error once: on that
      // connection the status flag after each statement (stillOpen) and the COMMIT's own answer
      // decide from then on. (Not judged from the handshake: a proxy may announce MySQL in front of
      // a MariaDB Galera node, where the guard matters.)
      // Only a Galera node ends a transaction silently (a brute-force abort): a connection known to
      // be on another server sends no guard (its identity, read when it was opened, names no cluster).
      if (!this.wrote || this.committedEarlier || typeof conn?.query !== "function" || NO_GUARD.has(conn.info ?? conn) || this.handler.galeraOf?.(conn) === false) {
        return this.inner.commit().catch((e) => this.onCommitError(e));
      }
      // No mark: a guard in the same flight still tells whether the transaction is open (MariaDB's
      // @@in_transaction; a server without it answers an error and the COMMIT decides alone).
      const guard: Promise<number | { error: unknown } | undefined> = conn.query("SELECT @@in_transaction AS t").then(
        (rows: any) => Number(rows?.[0]?.t),
        (e: any) => {
          // Keyed by the connection's `info`: the pool hands out a new wrapper for every transaction.
          if (e?.errno === UNKNOWN_SYSTEM_VARIABLE) NO_GUARD.add(conn.info ?? conn);
          return { error: asAdapterError(e) };
        },
      );
      const committed = this.inner.commit().then(
        () => true,
        (e: unknown) => e,
      );
      return Promise.all([guard, committed]).then(([open, commit]) => {
        if (open === 0) throw tagged("commit", transactionEnded(), "COMMIT", { threadId: this.threadId });
        // A Galera brute-force abort is answered to the next command, here the guard (1213): the
        // transaction was rolled back, and the COMMIT behind it, outside any, answers OK.
        if (typeof open === "object" && serverAnswered(open.error) && classify(open.error) === "conflict" && errorFacts(open.error).errno !== 1205) {
          throw tagged("commit", open.error, "COMMIT", { threadId: this.threadId });
        }
        if (commit === true) return;
        return this.onCommitError(commit);
      });
    }
    // The mark and the COMMIT go out together, in this order, as two text commands on the
    // transaction's own connection (the driver pipelines them): no extra round trip. Guarded by
    // @@in_transaction where the server has it, the mark writes nothing in a transaction that is gone.
    const token = tokensOf(conn).next();
    const guarded = this.handler.guardedMarks === true;
    const marked: Promise<{ affectedRows?: number } | { error: unknown }> = conn.query(markSql(key, token, guarded)).then(
      (r: any) => r ?? {},
      (e: unknown) => ({ error: asAdapterError(e) }),
    );
    const committed: Promise<true | unknown> = this.inner.commit().then(
      () => true,
      (e: unknown) => e,
    );
    return Promise.all([marked, committed]).then(async ([mark, commit]) => {
      if ("error" in mark && serverAnswered(mark.error)) {
        this.markRefused(mark.error);
        if (commit === true) return;
        return this.onCommitError(commit);
      }
      if (guarded && "affectedRows" in mark && mark.affectedRows === 0) {
        // The mark found no open transaction: the server had ended it (a Galera brute-force abort
        // after the last statement), so the COMMIT committed nothing.
        throw tagged("commit", transactionEnded(), "COMMIT", { threadId: this.threadId });
      }
      if (commit === true) return;
      // Only a COMMIT that got no answer is in doubt: a lost connection, or any other error the
      // server did not send (a TLS or protocol error) that does not prove the COMMIT unsent.
      if (!inDoubt(commit) || !this.handler.verifyCommit) return this.onCommitError(commit);
      const verdict = await this.handler.verifyCommit(conn, key, token).catch(() => "unknown" as const);
      log(`lost COMMIT reply verified: ${verdict}`);
      if (verdict === "committed") return;
      await this.handler.suspect(commit);
      throw tagged("commit", commit, "COMMIT", { threadId: this.threadId, verification: verdict, duringOutage: this.handler.serverDown });
    });
  }

  /**
   * The mark key when this transaction's first statement can go in one flight with its mark and
   * the COMMIT (countedMarkSql): on a guarded server, before anything was sent in the transaction,
   * where the driver queues every command in call order (src/adapter/one-flight.ts).
   */
  oneFlightKey(sql: string): string | undefined {
    const conn = this.connection;
    if (this.handler.guardedMarks !== true || this.wrote || this.ended !== undefined || typeof conn?.query !== "function") return undefined;
    return canGoInOneFlight(conn, sql, this.handler.pipelining !== false) ? this.handler.markKeyOf?.(conn) : undefined;
  }

  /**
   * A write outside a transaction of the app's, its BEGIN answered: the statement, its counted mark
   * and the COMMIT in one flight, in that order (each call below queues its command on the
   * connection before it returns). The mark is written only if the statement succeeded inside the
   * open transaction, with its row count, so the COMMIT commits the mark exactly when it commits the
   * statement. Every reply answered: as in commit(). The statement's reply lost (so every reply
   * after it): the mark, read once the session is gone, tells whether it committed and its count.
   */
  executeAndCommit(params: SqlQueryLike, key: string, opening?: Opening): Promise<number> {
    const conn = this.connection;
    const write = this.note(params.sql);
    const opened = opening && Promise.all([opening.begun, opening.fenced]);
    const prefix = tokensOf(conn).next(8);
    const ran: Promise<{ n: number } | { error: unknown }> = this.inner.executeRaw(params).then((n) => ({ n }), (error: unknown) => ({ error }));
    const marked: Promise<{ affectedRows?: number } | { error: unknown }> = conn.query(countedMarkSql(key, prefix)).then((r: any) => r ?? {}, (e: unknown) => ({ error: asAdapterError(e) }));
    const committed: Promise<true | unknown> = this.inner.commit().then(() => true, (e: unknown) => e);
    return Promise.all([opened, ran, marked, committed]).then(async ([open, statement, mark, commit]) => {
      const refused = open && this.afterRefusedBegin(open, statement, mark, commit, params.sql, write);
      if (refused) return refused;
      if ("error" in statement) {
        // Answered (or provably unsent): nothing of it committed, and its mark was not written.
        // Only a lost connection is verified: any other error (one raised before sending) is not the session's.
        if (!inDoubt(statement.error) || classify(statement.error) !== "connection-lost" || !this.handler.verifyCommit) return this.onStatementError(statement.error, params.sql, write);
        this.writesInFlight--;
        return this.verifyLost(statement.error, key, prefix);
      }
      this.writesInFlight--;
      if ("error" in mark && serverAnswered(mark.error)) {
        this.markRefused(mark.error);
        if (commit === true) return statement.n;
        return this.onCommitError(commit);
      }
      if ("affectedRows" in mark && mark.affectedRows === 0) {
        // The statement succeeded but the mark found no open transaction: either it was ended after
        // the statement (rolled back) or before it (the statement committed alone). No status flag
        // of the statement's own reply is read in one flight, so neither is claimed.
        throw tagged("commit", transactionEnded(), "COMMIT", { threadId: this.threadId, verification: "unknown", answered: false });
      }
      if (commit === true) return statement.n;
      if (!inDoubt(commit) || !this.handler.verifyCommit) return this.onCommitError(commit);
      const verdict = await this.handler.verifyCommit(conn, key, prefix).catch(() => "unknown" as const);
      log(`lost COMMIT reply verified: ${verdict}`);
      if (verdict === "committed") return statement.n;
      await this.handler.suspect(commit);
      throw tagged("commit", commit, "COMMIT", { threadId: this.threadId, verification: verdict, duringOutage: this.handler.serverDown });
    });
  }

  /** The flight opened with BEGIN and the fence unawaited, and BEGIN was refused: see pipelined-begin.ts afterRefusedBegin. */
  private afterRefusedBegin(
    opening: [Reply, Reply],
    statement: { n: number } | { error: unknown },
    mark: { affectedRows?: number } | { error: unknown },
    commit: true | unknown,
    sql: string,
    write: boolean,
  ): Promise<number> | undefined {
    const silentAbortPossible = this.handler.galeraOf?.(this.connection) !== false;
    const outcome = afterRefusedBegin(opening, statement, mark, commit, { fenceFailed: (e) => this.handler.fenceFailed?.(e), silentAbortPossible, rollbackOnTimeout: this.handler.rollbackOnTimeout });
    if (!outcome) return undefined;
    if (write) this.writesInFlight--;
    // As after any refused mark (markRefused).
    if ("error" in mark && serverAnswered(mark.error)) this.noteMarkTable(mark.error);
    const threadId = this.threadId;
    // A read-only or not-ready answer (Galera) renews the pool, as for an awaited BEGIN.
    return this.handler.suspect(outcome.begin).then(() => {
      if ("n" in outcome) {
        log(`BEGIN and its fence were both refused: the ${firstKeyword(sql)} ran and committed on its own`);
        return outcome.n;
      }
      if ("refused" in outcome) throw tagged("begin", asAdapterError(outcome.refused), "BEGIN", { threadId });
      if ("answered" in outcome) throw tagged("statement", outcome.answered, sql, { threadId });
      throw tagged("commit", outcome.unknown, sql, { threadId, verification: "unknown", answered: false });
    });
  }

  /** The one-flight statement's reply was lost: its counted mark says whether it committed, and its row count. */
  private async verifyLost(error: unknown, key: string, prefix: string): Promise<number> {
    const found: { token?: string } = {};
    const verdict = await this.handler.verifyCommit!(this.connection, key, prefix, found).catch(() => "unknown" as const);
    const count = verdict === "committed" && found.token !== undefined ? countOf(found.token, prefix) : undefined;
    log(`lost reply of a one-flight write verified: ${verdict}${count === undefined ? "" : ` (${count} rows)`}`);
    if (count !== undefined) return count;
    await this.handler.suspect(error);
    throw tagged("commit", error, "COMMIT", { threadId: this.threadId, verification: verdict === "committed" ? "unknown" : verdict, duringOutage: this.handler.serverDown });
  }

  /** The server refused the mark: throws when that rolled the transaction back (or may have); returns when it failed the mark alone. */
  private markRefused(error: unknown): void {
    // A deadlock answered to the mark (or a Galera brute-force abort) rolled the whole
    // transaction back: the COMMIT behind it committed nothing, whatever it answered.
    const rolledBack = refusedMarkRolledBack(error, this.handler.rollbackOnTimeout);
    if (rolledBack === "transaction") throw tagged("commit", error, "COMMIT", { threadId: this.threadId });
    // 1205 where it is not known whether it rolled back the statement or the transaction.
    if (rolledBack === "maybe") throw tagged("commit", error, "COMMIT", { threadId: this.threadId, verification: "unknown", answered: false });
    // It failed the mark alone: the COMMIT's own answer decides, unverified.
    this.noteMarkTable(error);
  }

  /** A mark table that is missing or not writable: verification goes off. */
  private noteMarkTable(error: unknown): void {
    if (markTableUnusable(error)) this.handler.markFailed?.(error);
  }

  private async onCommitError(e: unknown): Promise<never> {
    const threadId = this.threadId;
    if (classify(e) !== "fatal") await this.handler.suspect(e);
    // A transaction that only read has nothing to lose: its lost COMMIT is like a lost read.
    throw tagged("commit", e, "COMMIT", {
      threadId,
      committedEarlier: this.committedEarlier,
      duringOutage: this.handler.serverDown,
      readOnly: !this.wrote && !this.committedEarlier,
    });
  }
  rollback() {
    return this.inner.rollback().catch((e) => {
      // The server rolls back an open transaction when its connection dies, so a rollback that
      // cannot reach it has nothing left to do: it is not a new failure.
      if (this.lost || classify(e) === "connection-lost") return;
      throw tagged("rollback", e, "ROLLBACK", { threadId: this.threadId, committedEarlier: this.committedEarlier });
    });
  }
}
