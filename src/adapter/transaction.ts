// The wrapped transaction: records what had reached the server when one of its calls fails, and
// makes a rollback on a connection that is already dead resolve instead of throwing.
import { classify, errorFacts } from "../errors/classify.ts";
import { makeRecord, tag, type FlightPhase, type RecordContext } from "./flight.ts";
import { firstKeyword, isReadOnlySql, mayCommitImplicitly } from "./sql.ts";
import { markSql, newToken, type CommitVerdict } from "./verify.ts";
import { serverAnswered } from "../errors/classify.ts";
import { log } from "../log.ts";
import type { SqlQueryLike, TransactionLike } from "./types.ts";

export function tagged(phase: FlightPhase, error: unknown, sql: string, context: RecordContext = {}): unknown {
  tag(error, makeRecord(phase, error, sql, firstKeyword(sql), isReadOnlySql(sql), context));
  return error;
}

// What Prisma sends inside a transaction: one DML statement, no `;`, no comment. Only other text
// (raw SQL) is scanned for statements that commit implicitly.
const PLAIN_DML = /^\s*(?:SELECT|INSERT|UPDATE|DELETE)\b/i;
function mayEndTransaction(sql: string): boolean {
  if (PLAIN_DML.test(sql) && !sql.includes(";") && !sql.includes("/*")) return false;
  return mayCommitImplicitly(sql);
}

/** What the wrapped adapter does about a failure before it is rethrown. */
export interface FailureHandler {
  /** After a lost connection or an unavailable server: is the server still there? */
  suspect(error: unknown): Promise<void>;
  /** The server was found down (a probe after a lost connection was refused or unanswered). */
  readonly serverDown?: boolean;
  /** After a silent drop inside a transaction: end the session the server still holds (`connection`: the driver connection it was on, to match its identity). */
  killGhost(threadId: number, connection?: unknown): Promise<void>;
  /** Commit verification: the mark key of this driver connection, when verification is on and its identity is known. */
  markKeyOf?(connection: unknown): string | undefined;
  /** The mark failed with an answer other than a conflict: the table is unusable, verification goes off. */
  markFailed?(error: unknown): void;
  /** After a lost COMMIT reply: did it commit? (The old session is made sure to be gone first.) */
  verifyCommit?(connection: unknown, key: string, token: string): Promise<CommitVerdict>;
}

const SOCKET_TIMEOUT = 45026;

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

  private async onStatementError(error: unknown, sql: string): Promise<never> {
    const threadId = this.threadId;
    const errorClass = classify(error);
    if (errorClass === "connection-lost") {
      this.lost = true;
      // A socket timeout is a silent drop: the server still holds this session, its open
      // transaction and its row locks. End it, so the re-run does not wait on its own ghost.
      if (threadId !== undefined && errorFacts(error).errno === SOCKET_TIMEOUT) await this.handler.killGhost(threadId, (this.inner as any).conn ?? (this.inner as any).client);
      await this.handler.suspect(error);
    }
    throw tagged("statement", error, sql, { threadId, committedEarlier: this.committedEarlier, duringOutage: this.handler.serverDown });
  }

  /** What a statement means for the transaction, noted before it is sent. */
  private note(sql: string) {
    if (!this.committedEarlier && mayEndTransaction(sql)) this.committedEarlier = true;
    if (!this.wrote && !isReadOnlySql(sql)) this.wrote = true;
  }

  queryRaw(params: SqlQueryLike) {
    this.note(params.sql);
    return this.inner.queryRaw(params).catch((e) => this.onStatementError(e, params.sql));
  }
  executeRaw(params: SqlQueryLike) {
    this.note(params.sql);
    return this.inner.executeRaw(params).catch((e) => this.onStatementError(e, params.sql));
  }

  /** The driver connection of this transaction (mariadb: the pool connection). */
  private get connection(): any {
    return (this.inner as any).conn ?? (this.inner as any).client;
  }

  commit() {
    const conn = this.connection;
    const key = this.wrote && !this.committedEarlier && conn ? this.handler.markKeyOf?.(conn) : undefined;
    if (key === undefined) return this.inner.commit().catch((e) => this.onCommitError(e));
    // The mark and the COMMIT go out together (the driver pipelines them): no extra round trip.
    const token = newToken();
    const marked: Promise<true | unknown> = this.inner.executeRaw({ sql: markSql(key, token), args: [], argTypes: [] } as SqlQueryLike).then(
      () => true,
      (e: unknown) => e,
    );
    const committed: Promise<true | unknown> = this.inner.commit().then(
      () => true,
      (e: unknown) => e,
    );
    return Promise.all([marked, committed]).then(async ([mark, commit]) => {
      if (mark !== true && serverAnswered(mark)) {
        // A conflict answered to the mark (a deadlock, a Galera brute-force abort) rolled the whole
        // transaction back: the COMMIT behind it committed nothing, whatever it answered.
        if (classify(mark) === "conflict") throw tagged("commit", mark, "COMMIT", { threadId: this.threadId });
        // Any other answer failed the mark alone: the COMMIT's own answer decides, unverified.
        this.handler.markFailed?.(mark);
        if (commit === true) return;
        return this.onCommitError(commit);
      }
      if (commit === true) return;
      // Only a COMMIT that got no answer is in doubt.
      if (classify(commit) !== "connection-lost" || serverAnswered(commit) || !this.handler.verifyCommit) return this.onCommitError(commit);
      const verdict = await this.handler.verifyCommit(conn, key, token).catch(() => "unknown" as const);
      log(`lost COMMIT reply verified: ${verdict}`);
      if (verdict === "committed") return;
      await this.handler.suspect(commit);
      throw tagged("commit", commit, "COMMIT", { threadId: this.threadId, verification: verdict, duringOutage: this.handler.serverDown });
    });
  }

  private async onCommitError(e: unknown): Promise<never> {
    const threadId = this.threadId;
    if (classify(e) !== "fatal") await this.handler.suspect(e);
    throw tagged("commit", e, "COMMIT", { threadId, committedEarlier: this.committedEarlier, duringOutage: this.handler.serverDown });
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
