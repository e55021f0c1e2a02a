// The wrapped transaction: records what had reached the server when one of its calls fails, and
// makes a rollback on a connection that is already dead resolve instead of throwing.
import { classify, errorFacts } from "../errors/classify.ts";
import { makeRecord, tag, type FlightPhase } from "./flight.ts";
import { firstKeyword, isReadOnlySql } from "./sql.ts";
import type { SqlQueryLike, TransactionLike } from "./types.ts";

export function tagged(phase: FlightPhase, error: unknown, sql: string, threadId?: number, heldBack?: boolean): unknown {
  tag(error, makeRecord(phase, error, firstKeyword(sql), isReadOnlySql(sql), threadId, heldBack));
  return error;
}

/** What the wrapped adapter does about a failure before it is rethrown. */
export interface FailureHandler {
  /** After a lost connection or an unavailable server: is the server still there? */
  suspect(error: unknown): Promise<void>;
  /** After a silent drop inside a transaction: end the session the server still holds. */
  killGhost(threadId: number): Promise<void>;
}

const SOCKET_TIMEOUT = 45026;

export class ResilientTransaction implements TransactionLike {
  /** The connection died under this transaction: the server has rolled it back. */
  private lost = false;
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
      if (threadId !== undefined && errorFacts(error).errno === SOCKET_TIMEOUT) await this.handler.killGhost(threadId);
      await this.handler.suspect(error);
    }
    throw tagged("statement", error, sql, threadId);
  }

  queryRaw(params: SqlQueryLike) {
    return this.inner.queryRaw(params).catch((e) => this.onStatementError(e, params.sql));
  }
  executeRaw(params: SqlQueryLike) {
    return this.inner.executeRaw(params).catch((e) => this.onStatementError(e, params.sql));
  }
  commit() {
    return this.inner.commit().catch(async (e) => {
      const threadId = this.threadId;
      if (classify(e) !== "fatal") await this.handler.suspect(e);
      throw tagged("commit", e, "COMMIT", threadId);
    });
  }
  rollback() {
    return this.inner.rollback().catch((e) => {
      // The server rolls back an open transaction when its connection dies, so a rollback that
      // cannot reach it has nothing left to do: it is not a new failure.
      if (this.lost || classify(e) === "connection-lost") return;
      throw tagged("rollback", e, "ROLLBACK", this.threadId);
    });
  }
}
