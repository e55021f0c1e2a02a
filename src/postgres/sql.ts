// What a PostgreSQL statement does, judged from its text. Everything here answers "provably so" or
// "no": a statement that cannot be read with certainty is taken as a write that may commit.

/** The text split into statements, with literals emptied and comments removed. */
export interface ScannedSql {
  /** Each statement's code (literals emptied to '', comments dropped), trimmed, empty ones left out. */
  statements: string[];
  /**
   * The text cannot be read with certainty: an unterminated literal, quoted identifier, dollar quote
   * or comment, or a backslash in a plain '…' literal (an escape when standard_conforming_strings is
   * off).
   */
  opaque: boolean;
}

const IDENT_CHAR = /[A-Za-z0-9_$\u0080-\uffff]/;
const DOLLAR_TAG = /^\$(?:[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$/;

/** Splits SQL text into statements, skipping literals, quoted identifiers, dollar quotes and comments. */
export function scanSql(sql: string): ScannedSql {
  const statements: string[] = [];
  let opaque = false;
  let current = "";
  let i = 0;
  const n = sql.length;
  while (i < n) {
    const c = sql[i];
    const prev = i > 0 ? sql[i - 1] : "";
    if (c === "'") {
      // E'…' (escape string): backslash escapes the next character. Plain '…': doubled quotes only.
      const escape = (prev === "E" || prev === "e") && !(i > 1 && IDENT_CHAR.test(sql[i - 2]));
      let j = i + 1;
      while (j < n) {
        if (sql[j] === "\\") {
          if (!escape) opaque = true;
          j += 2;
        } else if (sql[j] === "'" && sql[j + 1] === "'") j += 2;
        else if (sql[j] === "'") break;
        else j++;
      }
      if (j >= n) opaque = true;
      current += "''";
      i = j + 1;
    } else if (c === '"') {
      // A quoted identifier ("User"): kept as it is, with its doubled quotes.
      let j = i + 1;
      while (j < n && !(sql[j] === '"' && sql[j + 1] !== '"')) j += sql[j] === '"' ? 2 : 1;
      if (j >= n) opaque = true;
      current += sql.slice(i, j + 1);
      i = j + 1;
    } else if (c === "$" && !IDENT_CHAR.test(prev) && DOLLAR_TAG.test(sql.slice(i, i + 64))) {
      // $tag$ … $tag$ (a function body, a literal). `$1` is a parameter: a digit cannot start a tag.
      const tag = DOLLAR_TAG.exec(sql.slice(i, i + 64))![0];
      const end = sql.indexOf(tag, i + tag.length);
      if (end === -1) opaque = true;
      current += "''";
      i = end === -1 ? n : end + tag.length;
    } else if (c === "-" && sql[i + 1] === "-") {
      const end = sql.indexOf("\n", i);
      i = end === -1 ? n : end + 1;
      current += " ";
    } else if (c === "/" && sql[i + 1] === "*") {
      // Block comments nest in PostgreSQL.
      let depth = 1;
      let j = i + 2;
      while (j < n && depth > 0) {
        if (sql[j] === "/" && sql[j + 1] === "*") {
          depth++;
          j += 2;
        } else if (sql[j] === "*" && sql[j + 1] === "/") {
          depth--;
          j += 2;
        } else j++;
      }
      if (depth > 0) opaque = true;
      i = j;
      current += " ";
    } else if (c === ";") {
      if (current.trim()) statements.push(current.trim());
      current = "";
      i++;
    } else {
      current += c;
      i++;
    }
  }
  if (current.trim()) statements.push(current.trim());
  return { statements, opaque };
}

// Text without literals, comments, dollar quotes or `;` is one statement as it stands. Prisma's own
// SQL has none ($1 parameters, "quoted" identifiers): it skips the scan.
export const NEEDS_SCAN = /[;'\\]|\/\*|--|\$(?!\d)/;
function scan(sql: string): ScannedSql {
  if (!NEEDS_SCAN.test(sql) && !sql.includes('"')) {
    const trimmed = sql.trim();
    return { statements: trimmed ? [trimmed] : [], opaque: false };
  }
  return scanSql(sql);
}

/** The first `count` words of a scanned statement, upper-cased, past opening parentheses. */
function leadingWords(statement: string, count: number): string[] {
  const words: string[] = [];
  const word = /[A-Za-z_]+|[^\sA-Za-z_]/g;
  word.lastIndex = statement.match(/^[\s(]*/)![0].length;
  for (let m: RegExpExecArray | null; words.length < count && (m = word.exec(statement)); ) words.push(m[0].toUpperCase());
  return words;
}

// Every call of the wrapper asks these about its text, and an app's texts repeat (Prisma's are one
// per query shape): each answer is kept per text, a bounded number of texts, short ones only.
const MEMO_TEXTS = 512;
const MEMO_MAX_LENGTH = 8192;
function memo<T>(answer: (sql: string) => T): (sql: string) => T {
  const known = new Map<string, T>();
  return (sql) => {
    const hit = known.get(sql);
    if (hit !== undefined) return hit;
    const value = answer(sql);
    if (sql.length <= MEMO_MAX_LENGTH) {
      if (known.size >= MEMO_TEXTS) known.clear();
      known.set(sql, value);
    }
    return value;
  };
}

/** The statement's first keyword, upper-cased ("SELECT", "INSERT", "COMMIT" ...). */
export const firstKeyword: (sql: string) => string = memo((sql) => {
  const [first] = scan(sql).statements;
  return first ? leadingWords(first, 1)[0] ?? "" : "";
});

/**
 * More than one statement in one text (a later one can fail after an earlier one committed), or a
 * text that cannot be read with certainty.
 */
export const isMultiStatement: (sql: string) => boolean = memo((sql) => {
  const { statements, opaque } = scan(sql);
  return opaque || statements.length > 1;
});

// Quoted identifiers out of the way before looking for words: a column named "update" is no write.
const unquoted = (statement: string) => statement.replace(/"(?:[^"]|"")*"/g, " x ");

// Functions that change something even inside a SELECT (sequences, large objects, other sessions).
const SIDE_EFFECT = /\b(?:NEXTVAL|SETVAL|LO_CREATE|LO_IMPORT|LO_UNLINK|LO_FROM_BYTEA|LO_PUT|DBLINK_EXEC|PG_TERMINATE_BACKEND|PG_CANCEL_BACKEND|PG_NOTIFY)\s*\(/i;
const WRITE_WORD = /\b(?:INSERT|UPDATE|DELETE|MERGE)\b/i;
// SELECT … FOR UPDATE / NO KEY UPDATE / SHARE / KEY SHARE takes row locks; SELECT … INTO creates a table.
const LOCKING = /\bFOR\s+(?:NO\s+KEY\s+)?UPDATE\b|\bFOR\s+(?:KEY\s+)?SHARE\b/i;
const INTO = /\bINTO\b/i;
const ANALYZE = /\bANALY[SZ]E\b/i;

function statementIsReadOnly(statement: string): boolean {
  const code = unquoted(statement);
  const [keyword] = leadingWords(code, 1);
  if (SIDE_EFFECT.test(code)) return false;
  switch (keyword) {
    case "SELECT":
    case "VALUES":
    case "TABLE":
      return !LOCKING.test(code) && !INTO.test(code);
    case "SHOW":
      return true;
    case "WITH":
      // A WITH can hold INSERT/UPDATE/DELETE/MERGE (data-modifying CTEs) or end in one.
      return !WRITE_WORD.test(code) && !LOCKING.test(code) && !INTO.test(code);
    case "EXPLAIN":
      // EXPLAIN plans without running; EXPLAIN ANALYZE (or ANALYSE, or (ANALYZE …)) runs the statement.
      return !ANALYZE.test(code);
  }
  return false;
}

/**
 * True only when re-running the statement provably cannot change data: one statement, and a
 * SELECT / VALUES / TABLE without row locks or INTO, SHOW, a WITH without a write, or an EXPLAIN
 * without ANALYZE. A SELECT that takes a sequence's next value is not read-only. (A SELECT calling a
 * function that writes cannot be seen from here: see the README caveats.)
 */
export const isReadOnlySql: (sql: string) => boolean = memo((sql) => {
  const { statements, opaque } = scan(sql);
  if (opaque || statements.length !== 1) return false;
  return statementIsReadOnly(statements[0]);
});

// Statements that never end the transaction they run in. PostgreSQL's DDL is transactional, and
// the statements that are not (CREATE DATABASE, VACUUM, CREATE INDEX CONCURRENTLY …) refuse to run
// in a transaction block; CALL and DO may COMMIT only outside one. Anything not listed is taken to
// end the transaction.
const STAYS_IN_TRANSACTION = new Set([
  "SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "WITH", "VALUES", "TABLE", "SHOW", "EXPLAIN",
  "SAVEPOINT", "RELEASE", "SET", "RESET", "CREATE", "ALTER", "DROP", "TRUNCATE", "LOCK", "COMMENT",
  "GRANT", "REVOKE", "DECLARE", "FETCH", "MOVE", "CLOSE", "COPY", "EXECUTE", "DEALLOCATE", "CALL", "DO",
  "NOTIFY", "LISTEN", "UNLISTEN", "ANALYZE", "ANALYSE", "REFRESH", "REINDEX", "CLUSTER", "DISCARD",
  "SECURITY", "IMPORT", "REASSIGN", "CHECKPOINT", "VACUUM", "LOAD",
  // BEGIN / START TRANSACTION in a block only warn "there is already a transaction in progress".
  "BEGIN", "START",
]);

function statementStaysInTransaction(statement: string): boolean {
  const [w1, w2, w3] = leadingWords(statement, 3);
  if (w1 === undefined) return true;
  // PREPARE name AS … prepares a statement; PREPARE TRANSACTION ends the transaction (it survives
  // the session, and COMMIT PREPARED commits it later).
  if (w1 === "PREPARE") return w2 !== "TRANSACTION";
  // ROLLBACK TO [SAVEPOINT] x undoes part of the transaction. A plain ROLLBACK / ABORT commits
  // nothing, but ends it: every statement after it runs on its own and commits alone, so the
  // transaction can no longer be re-run whole. ROLLBACK PREPARED ends another one.
  if (w1 === "ROLLBACK") return w2 === "TO" || ((w2 === "WORK" || w2 === "TRANSACTION") && w3 === "TO");
  // COMMIT, END, COMMIT AND CHAIN, COMMIT PREPARED, ABORT: not in the list.
  return STAYS_IN_TRANSACTION.has(w1);
}

/**
 * True when the statement may end the open transaction (COMMIT, END, COMMIT AND CHAIN, PREPARE
 * TRANSACTION, COMMIT/ROLLBACK PREPARED, ROLLBACK, ABORT), committing what it had done or leaving
 * what follows to commit on its own. Only statements provably inside the transaction return false.
 */
export const mayCommitImplicitly: (sql: string) => boolean = memo((sql) => {
  const { statements, opaque } = scan(sql);
  if (opaque) return true;
  return !statements.every(statementStaysInTransaction);
});

const DML_START = /^\s*\(?\s*(?:INSERT|UPDATE|DELETE|MERGE|WITH)\b/i;

/**
 * A single INSERT / UPDATE / DELETE / MERGE, or a WITH that holds one (a data-modifying CTE): a
 * write that can run inside a transaction of the wrapper's, so that its COMMIT can be verified.
 * Anything else (reads, DDL, several statements) runs as it is.
 */
export const isAutocommitDml: (sql: string) => boolean = memo((sql) => {
  if (!DML_START.test(sql)) return false;
  const { statements, opaque } = scan(sql);
  if (opaque || statements.length !== 1) return false;
  const [keyword] = leadingWords(statements[0], 1);
  return keyword !== "WITH" || WRITE_WORD.test(unquoted(statements[0]));
});
