// One transaction on PostgreSQL, wrapped: every failure carries a flight record; until the
// transaction's id is known each statement also reads it, in the same round trip (wire.ts); Prisma's
// COMMIT (sent as a statement, then commit() only releases the client: node_modules/@prisma/adapter-pg)
// is verified when its reply is lost (verify.ts); a ROLLBACK on a dead connection resolves.
import { classify, provesNotSent, serverAnswered } from "../postgres/classify.ts";
import { firstKeyword, isMultiStatement, isReadOnlySql, mayCommitImplicitly } from "../postgres/sql.ts";
import { flightOf } from "../core/flight.ts";
import { log } from "../core/log.ts";
import { tagged } from "./record.ts";
import type { PgCommitVerdict, XactIdentity } from "./verify.ts";
import { queryWithId, type QueryConfig } from "./wire.ts";
import type { PgClientLike, PgTransactionLike, SqlQueryLike } from "./types.ts";

/** What the wrapped adapter does for a transaction (coordinator.ts). */
export interface PgTxHandler {
  /** After a lost connection or an unavailable server: is the server still there? */
  suspect(error: unknown): Promise<void>;
  readonly serverDown: boolean;
  /** Exactly-once is on: statements read the transaction's id, a lost COMMIT reply is verified. */
  readonly verifying: boolean;
  /** ms without a reply to a COMMIT before its backend is looked at (0: never). */
  readonly silentAfter: number;
  /** After a lost COMMIT reply: did it commit? */
  verifyCommit(who: XactIdentity): Promise<PgCommitVerdict>;
  /** While a COMMIT gets no reply: what its backend is doing ("active", "idle in transaction" …; undefined: gone or not ours). */
  backendState(who: XactIdentity): Promise<string | undefined | "unreachable">;
}

const COMMIT_WORDS = new Set(["COMMIT", "END"]);

let tagUnreadLogged = false;
/** Once per process: the adapter in use does not let the COMMIT's tag be read. */
function logTagUnread() {
  if (tagUnreadLogged) return;
  tagUnreadLogged = true;
  log("the COMMIT's command tag could not be read: a failed transaction is seen only by its status byte");
}

let idUnreadLogged = false;
/** Once per process: the adapter in use did not send a statement as expected, so the transaction id was not read with it. */
function logIdUnread() {
  if (idUnreadLogged) return;
  idUnreadLogged = true;
  log("a statement went out without the transaction id read (the adapter sent it in another form): its transaction is not verified (and where a BEGIN was to go with it, it ran on its own)");
}

/** A COMMIT the server turned into a ROLLBACK: the transaction had failed. Final, never re-run. */
function abortedAtCommit(committedEarlier: boolean): Error {
  const error = new Error(
    committedEarlier
      ? "COMMIT rolled the transaction back: a statement of it had failed (its error was caught inside the transaction), so nothing after its last raw COMMIT was committed"
      : "COMMIT rolled the transaction back: a statement of it had failed (its error was caught inside the transaction), so nothing of it was committed",
  );
  (error as Error & { code: string }).code = "RESILIENCE_TRANSACTION_FAILED";
  return error;
}

export class PgResilientTransaction implements PgTransactionLike {
  /** The connection died under this transaction: the server rolls it back. */
  private lost = false;
  private committedEarlier = false;
  private wrote = false;
  /** A COMMIT or ROLLBACK statement has run: anything sent after it was the app's, outside this transaction. */
  private ended = false;
  /** The transaction's id once it has one (xid8 as text), and the server's start when it was read. */
  private xactId?: string;
  private serverStart?: string;
  /** The next query on the client goes out with the id read (set and cleared synchronously around the call). */
  private withIdNext = false;
  /** A statement that was to read the id went out without it: "no id" proves nothing written. */
  private idMissed = false;
  /** The wrapper's own transaction: BEGIN has not been sent yet; it goes in the first statement's flight. */
  private beginPending: boolean;
  /** The next query on the client is the COMMIT: its command tag is kept (set and cleared synchronously around the call). */
  private tagNext = false;
  /** The COMMIT's command tag: "ROLLBACK" when the server rolled a failed transaction back. */
  private commitTag?: string;
  private readonly client?: PgClientLike;
  readonly createSavepoint?: (name: string) => Promise<void>;
  readonly rollbackToSavepoint?: (name: string) => Promise<void>;
  readonly releaseSavepoint?: (name: string) => Promise<void>;

  constructor(
    private readonly inner: PgTransactionLike,
    private readonly handler: PgTxHandler,
    options: { beginPending?: boolean } = {},
  ) {
    this.beginPending = options.beginPending === true;
    const client = (inner as any).client as PgClientLike | undefined;
    if (client && typeof client.query === "function") this.client = client;
    if (inner.createSavepoint) this.createSavepoint = (name) => inner.createSavepoint!(name).catch((e) => this.onStatementError(e, "SAVEPOINT"));
    if (inner.rollbackToSavepoint) this.rollbackToSavepoint = (name) => inner.rollbackToSavepoint!(name).catch((e) => this.onStatementError(e, "ROLLBACK TO"));
    if (inner.releaseSavepoint) this.releaseSavepoint = (name) => inner.releaseSavepoint!(name).catch((e) => this.onStatementError(e, "RELEASE SAVEPOINT"));
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
  /** The backend's pid (BackendKeyData), when the driver has it. */
  get pid(): number | undefined {
    const pid = this.client?.processID ?? (this.inner as any).client?.processID;
    return typeof pid === "number" ? pid : undefined;
  }
  /** The connection is lost (the server has rolled back, or will). */
  get isLost(): boolean {
    return this.lost;
  }
  /** The transaction's id, once it wrote (tests and the wrapper's own transaction). */
  get id(): string | undefined {
    return this.xactId;
  }

  /**
   * Runs `send` (which calls the client's query at once, as adapter-pg does) with the client's query
   * changed for the next statement only: with the id read (withIdNext), or the COMMIT's tag kept
   * (tagNext). Only a query of `sql`'s text is changed (not one the adapter or a callback sends
   * before it). Put back as it was (an own property or the prototype's) before this returns, so no
   * other query of the client ever sees the change.
   */
  private sendChanged<T>(sql: string, send: () => T): T {
    const client = this.client!;
    const original = client.query;
    const own = Object.prototype.hasOwnProperty.call(client, "query");
    const self = this;
    const changed = function (this: unknown, config: unknown, values?: unknown, callback?: unknown) {
      const text = typeof config === "string" ? config : typeof config === "object" && config !== null ? (config as { text?: unknown }).text : undefined;
      if (text !== sql) return original.call(client, config, values, callback);
      if (self.tagNext && callback === undefined && typeof values !== "function") {
        self.tagNext = false;
        const sent = original.call(client, config, values);
        if (typeof sent?.then === "function") return sent.then((result: { command?: string } | undefined) => ((self.commitTag = result?.command), result));
        logTagUnread();
        return sent;
      }
      if (!self.withIdNext || typeof config !== "object" || config === null || typeof (config as any).submit === "function") {
        return original.call(client, config, values, callback);
      }
      self.withIdNext = false;
      const begin = self.beginPending;
      self.beginPending = false;
      return queryWithId({ query: (q) => original.call(client, q) }, config as QueryConfig, begin).then(({ result, xactId, serverStart }) => {
        if (xactId !== null) {
          self.xactId = xactId;
          self.serverStart = serverStart ?? undefined;
        }
        return result;
      });
    };
    try {
      client.query = changed;
      return send();
    } finally {
      if (own) client.query = original;
      else delete (client as { query?: unknown }).query;
      if (this.withIdNext) {
        // The statement did not go through the changed query (an adapter that sends another text,
        // or later): no id was read, and no BEGIN went with it, so it ran on its own and may
        // have committed; from now on the transaction is treated as one that committed part of itself.
        this.idMissed = true;
        if (this.beginPending) {
          this.beginPending = false;
          this.committedEarlier = true;
        }
        logIdUnread();
      }
      this.withIdNext = false;
      this.tagNext = false;
    }
  }

  queryRaw(params: SqlQueryLike) {
    return this.statement(params, (p) => this.inner.queryRaw(p));
  }
  executeRaw(params: SqlQueryLike): Promise<number> {
    const word = isMultiStatement(params.sql) ? "" : firstKeyword(params.sql);
    if (COMMIT_WORDS.has(word)) return this.commitStatement(params);
    if ((word === "ROLLBACK" && !/^\s*ROLLBACK\s+TO\b/i.test(params.sql)) || word === "ABORT") return this.rollbackStatement(params);
    return this.statement(params, (p) => this.inner.executeRaw(p));
  }

  private statement<T>(params: SqlQueryLike, send: (params: SqlQueryLike) => Promise<T>): Promise<T> {
    // After a raw COMMIT/ROLLBACK of the app's (Prisma's own comes last), statements run on their own.
    if (!this.committedEarlier && (this.ended || mayCommitImplicitly(params.sql))) this.committedEarlier = true;
    if (!isReadOnlySql(params.sql)) this.wrote = true;
    // Until the id is known every statement reads it (a read can write too: a function, nextval …).
    // Not a multi-statement text: the read goes in the extended protocol, where that is refused.
    this.withIdNext =
      this.client !== undefined && (this.beginPending || (this.handler.verifying && this.xactId === undefined && !isMultiStatement(params.sql)));
    const sent = this.withIdNext ? this.sendChanged(params.sql, () => send(params)) : send(params);
    return sent.catch((e) => this.onStatementError(e, params.sql));
  }

  private async onStatementError(error: unknown, sql: string): Promise<never> {
    const errorClass = classify(error);
    if (errorClass === "connection-lost") this.lost = true;
    if (errorClass === "connection-lost" || errorClass === "unavailable") await this.handler.suspect(error);
    throw tagged("statement", error, sql, { committedEarlier: this.committedEarlier, duringOutage: this.handler.serverDown, pid: this.pid });
  }

  /** The transaction's COMMIT, sent as a statement. */
  private async commitStatement(params: SqlQueryLike): Promise<number> {
    const who: XactIdentity | undefined = this.handler.verifying && this.xactId !== undefined ? { xactId: this.xactId, pid: this.pid, serverStart: this.serverStart } : undefined;
    // A transaction in which a statement failed (its error caught inside the callback) is rolled back
    // by its COMMIT, which the server answers with the tag ROLLBACK and no error: never acknowledged.
    // The tag decides: the status byte ("E") comes with the failed statement's ReadyForQuery, which
    // can arrive after its error, and so after the COMMIT was sent.
    // Trusted only with nothing in flight: a query still unanswered (a ROLLBACK TO not awaited) can turn it back.
    const client = this.client;
    const settled = client !== undefined && client.readyForQuery === true && client.pipeline !== true && Array.isArray(client._queryQueue) && client._queryQueue.length === 0;
    const failedBefore = settled && client.getTransactionStatus?.() === "E";
    const watch = who ? this.watchCommit(who) : undefined;
    let error: unknown;
    let rolledBack = false;
    try {
      this.commitTag = undefined;
      this.tagNext = this.client !== undefined;
      const sent = this.client
        ? this.sendChanged(params.sql, () => {
            const sending = this.inner.executeRaw(params);
            // The adapter did not call the client's query at once (another adapter-pg): the tag is not read.
            if (this.tagNext) logTagUnread();
            return sending;
          })
        : this.inner.executeRaw(params);
      const result = await sent;
      rolledBack = this.commitTag !== undefined ? this.commitTag === "ROLLBACK" : failedBefore;
      if (rolledBack) throw this.rolledBackAtCommit();
      return result;
    } catch (e) {
      if (rolledBack && flightOf(e)) throw e;
      error = e;
    } finally {
      this.ended = true;
      watch?.stop();
    }
    // Failed before its COMMIT was sent: that COMMIT cannot commit, whatever became of its reply. As
    // final as when answered (no cause: the lost connection would make it look retryable).
    if (failedBefore && this.commitTag === undefined) {
      if (classify(error) === "connection-lost") this.lost = true;
      if (classify(error) !== "fatal") await this.handler.suspect(error);
      throw this.rolledBackAtCommit();
    }
    if (classify(error) === "connection-lost") this.lost = true;
    const context = { committedEarlier: this.committedEarlier, pid: this.pid };
    // Nothing of the transaction wrote (by its text, and by the server: no id) : its lost COMMIT is like
    // a lost read. A transaction that wrote without an id (NOTIFY gets one only at COMMIT) is not.
    const readOnly = !this.committedEarlier && !this.wrote && (!this.handler.verifying || !this.client || (this.xactId === undefined && !this.idMissed));
    // An error the server answered (40001 at COMMIT …) is "not applied"; one that proves it unsent too.
    if (!who || this.committedEarlier || serverAnswered(error) || provesNotSent(error)) {
      if (classify(error) !== "fatal") await this.handler.suspect(error);
      throw tagged("commit", error, "COMMIT", { ...context, readOnly, duringOutage: this.handler.serverDown });
    }
    const verdict = await this.handler.verifyCommit(who).catch(() => "unknown" as const);
    log(`lost COMMIT reply verified: ${verdict}`);
    if (verdict === "committed") return 0;
    await this.handler.suspect(error);
    throw tagged("commit", error, "COMMIT", { ...context, readOnly: false, verification: verdict, duringOutage: this.handler.serverDown });
  }

  /** The COMMIT of a failed transaction: it rolled back, an answer as final as any. */
  private rolledBackAtCommit(): unknown {
    return tagged("commit", abortedAtCommit(this.committedEarlier), "COMMIT", { answered: true, committedEarlier: this.committedEarlier, pid: this.pid });
  }

  /**
   * While a COMMIT of a transaction with an id waits for its reply: every `silentAfter` ms, a look
   * at its backend from a side connection. Still idle in the transaction (the COMMIT never arrived:
   * a silent drop), or gone: this connection is dead, and is destroyed so that the COMMIT fails and
   * is verified. Executing: the server is working on it; keep waiting.
   */
  private watchCommit(who: XactIdentity): { stop(): void } {
    const every = this.handler.silentAfter;
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    const look = async () => {
      if (stopped) return;
      const state = await this.handler.backendState(who).catch(() => "unreachable" as const);
      if (stopped) return;
      // Idle, or idle in the transaction (the COMMIT never arrived): the connection is dead. Busy with
      // it, not told (track_activities off), or no such backend (gone, or a pooler's pid that names
      // none: the watchdog, watchdog.ts, judges those): keep waiting.
      if (state === undefined || !state.startsWith("idle")) return void (timer = setTimeout(look, every));
      log(`no reply to COMMIT after ${every} ms and its backend is ${state ?? "gone"}: the connection is dead`);
      this.lost = true;
      this.client?.connection?.stream?.destroy(new Error("no reply to COMMIT: the connection was dropped silently"));
    };
    if (every > 0 && this.client) timer = setTimeout(look, every);
    return {
      stop() {
        stopped = true;
        clearTimeout(timer);
      },
    };
  }

  private rollbackStatement(params: SqlQueryLike): Promise<number> {
    this.ended = true;
    if (this.lost) return Promise.resolve(0);
    return this.inner.executeRaw(params).catch((e) => {
      // The server rolls back an open transaction when its connection dies: nothing is left to do.
      if (this.lost || classify(e) === "connection-lost" || provesNotSent(e)) {
        this.lost = true;
        return 0;
      }
      throw tagged("rollback", e, "ROLLBACK", { committedEarlier: this.committedEarlier, pid: this.pid });
    });
  }

  commit() {
    return this.inner.commit();
  }
  rollback() {
    return this.inner.rollback().catch((e) => {
      if (this.lost || classify(e) === "connection-lost") return;
      throw tagged("rollback", e, "ROLLBACK", { committedEarlier: this.committedEarlier, pid: this.pid });
    });
  }
}
