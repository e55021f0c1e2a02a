// What a statement does, judged from its text. Everything here answers "provably so" or "no": a
// statement that cannot be read with certainty is taken as a write that may commit.

/** The text split into statements, with string literals emptied and plain comments removed. */
export interface ScannedSql {
  /** Each statement's code (strings emptied to '', comments dropped), trimmed, empty ones left out. */
  statements: string[];
  /**
   * The text cannot be read with certainty: it holds `/*! … *\/` or `/*M! … *\/` (comments the
   * server executes as code), a backslash inside a literal (an escape or not, depending on
   * sql_mode), an unterminated literal or comment, or `--` followed by a control character.
   */
  opaque: boolean;
}

/** Splits SQL text into statements, skipping string literals, quoted identifiers and comments. */
export function scanSql(sql: string): ScannedSql {
  const statements: string[] = [];
  let opaque = false;
  let current = "";
  let i = 0;
  const n = sql.length;
  while (i < n) {
    const c = sql[i];
    if (c === "'" || c === '"' || c === "`") {
      // A quoted string or identifier: doubled quotes and backslash escapes stay inside it.
      let j = i + 1;
      while (j < n) {
        if (sql[j] === "\\" && c !== "`") {
          opaque = true; // NO_BACKSLASH_ESCAPES decides whether it escapes the next character
          j += 2;
        } else if (sql[j] === c && sql[j + 1] === c) j += 2;
        else if (sql[j] === c) break;
        else j++;
      }
      if (j >= n) opaque = true; // unterminated
      current += c === "`" ? sql.slice(i, j + 1) : `${c}${c}`;
      i = j + 1;
    } else if (c === "/" && sql[i + 1] === "*") {
      if (sql[i + 2] === "!" || (sql[i + 2] === "M" && sql[i + 3] === "!")) opaque = true;
      const end = sql.indexOf("*/", i + 2);
      if (end === -1) opaque = true;
      i = end === -1 ? n : end + 2;
      current += " ";
    } else if ((c === "-" && sql[i + 1] === "-" && /[\s\x00-\x1f]/.test(sql[i + 2] ?? " ")) || c === "#") {
      const end = sql.indexOf("\n", i);
      i = end === -1 ? n : end + 1;
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

// Text without literals, comments or `;` (what Prisma generates) is one statement as it stands.
export const NEEDS_SCAN = /[;'"#\\]|\/\*|--/;
function scan(sql: string): ScannedSql {
  if (!NEEDS_SCAN.test(sql)) {
    const trimmed = sql.trim();
    return { statements: trimmed ? [trimmed] : [], opaque: false };
  }
  return scanSql(sql);
}

/** The statement's first keyword, upper-cased ("SELECT", "INSERT", "COMMIT" ...). */
export function firstKeyword(sql: string): string {
  const [first] = scan(sql).statements;
  return first ? leadingWords(first, 1)[0] ?? "" : "";
}

// A word, or one other non-blank character, after blanks (sticky: read from where the last one ended).
const WORD = /\s*([A-Za-z_]+|[^\sA-Za-z_])/y;

/** The first `count` words of a scanned statement, upper-cased, past opening parentheses: only those are read. */
function leadingWords(statement: string, count: number): string[] {
  const words: string[] = [];
  WORD.lastIndex = /^[\s(]*/.exec(statement)![0].length;
  for (let m: RegExpExecArray | null; words.length < count && (m = WORD.exec(statement)) !== null; ) words.push(m[1].toUpperCase());
  return words;
}

// The rules below are asked for every statement, and an app sends the same few texts again and
// again (Prisma's are generated): each answer is kept per text, in a bounded cache per rule.
const CACHE_TEXTS = 1000;
const CACHE_TEXT_LENGTH = 4096;
function cached(rule: (sql: string) => boolean): (sql: string) => boolean {
  const answers = new Map<string, boolean>();
  return (sql) => {
    if (sql.length > CACHE_TEXT_LENGTH) return rule(sql);
    let answer = answers.get(sql);
    if (answer === undefined) {
      if (answers.size >= CACHE_TEXTS) answers.clear();
      answers.set(sql, (answer = rule(sql)));
    }
    return answer;
  };
}

/**
 * More than one statement in one text (a later one can fail after an earlier one committed), or a
 * text that cannot be read with certainty.
 */
export const isMultiStatement = cached(function isMultiStatement(sql: string): boolean {
  const { statements, opaque } = scan(sql);
  return opaque || statements.length > 1;
});

// Constructs that change something even inside a SELECT.
const SIDE_EFFECT = /\bINTO\s+(?:OUTFILE|DUMPFILE)\b|\bNEXTVAL\s*\(|\bSETVAL\s*\(|\bNEXT\s+VALUE\s+FOR\b/i;
const WRITE_WORD = /\b(?:INSERT|UPDATE|DELETE|REPLACE|MERGE|CALL|DO|CREATE|DROP|ALTER|TRUNCATE|GRANT|REVOKE|LOAD|HANDLER)\b/i;
const EXPLAIN_WORDS = new Set(["EXPLAIN", "DESCRIBE", "DESC"]);
const STATEMENT_WORDS = new Set(["SELECT", "INSERT", "UPDATE", "DELETE", "REPLACE", "WITH", "TABLE", "VALUES", "ANALYZE", "EXPLAIN"]);

function statementIsReadOnly(statement: string): boolean {
  const [keyword] = leadingWords(statement, 1);
  if (SIDE_EFFECT.test(statement)) return false;
  switch (keyword) {
    case "SELECT":
    case "VALUES":
    case "TABLE":
    case "SHOW":
      return true;
    case "WITH":
      // MySQL allows WITH … UPDATE/DELETE: only a WITH without any write word is provably a read.
      return !WRITE_WORD.test(statement);
  }
  if (keyword && EXPLAIN_WORDS.has(keyword)) {
    // `EXPLAIN tbl` / `DESCRIBE tbl` read a table's columns; `EXPLAIN [options] <statement>` is read-only
    // only when the statement is (`EXPLAIN ANALYZE`, MariaDB's `ANALYZE`, runs it).
    const rest = statement.replace(/^[\s(]*\w+\s*/, "").replace(/^(?:EXTENDED|PARTITIONS|FORMAT\s*=\s*\w+)\s*/i, "");
    const [next] = leadingWords(rest, 1);
    if (next === undefined) return false;
    if (!STATEMENT_WORDS.has(next)) return /^[\w`.$]+(?:\s+[\w`%'.$]+)?$/.test(rest.trim());
    if (next === "ANALYZE" || next === "EXPLAIN") return false;
    return statementIsReadOnly(rest);
  }
  return false;
}

/**
 * True only when re-running the statement provably cannot change data: one statement (no `;`
 * followed by another), no executable comment, and a SELECT, SHOW, VALUES, TABLE, a WITH without a
 * write, or an EXPLAIN/DESCRIBE of one of those or of a table. A SELECT that writes a file or takes
 * a sequence's next value is not read-only. (A SELECT calling a stored function that writes cannot
 * be seen from here: see the README caveats.)
 */
export const isReadOnlySql = cached(function isReadOnlySql(sql: string): boolean {
  const { statements, opaque } = scan(sql);
  if (opaque || statements.length !== 1) return false;
  return statementIsReadOnly(statements[0]);
});

// Statements that never end the transaction they run in. Everything else may commit implicitly
// (DDL, TRUNCATE, LOCK/UNLOCK TABLES, a raw COMMIT/BEGIN/ROLLBACK, SET autocommit, account
// management, CALL of a procedure that commits, LOAD DATA ...), and is taken to.
const STAYS_IN_TRANSACTION = new Set(["SELECT", "INSERT", "UPDATE", "DELETE", "REPLACE", "WITH", "VALUES", "TABLE", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "SAVEPOINT", "RELEASE", "DO"]);

function statementStaysInTransaction(statement: string): boolean {
  const [w1, w2, w3] = leadingWords(statement, 3);
  if (w1 === undefined) return true;
  if (STAYS_IN_TRANSACTION.has(w1)) return true;
  // ROLLBACK TO [SAVEPOINT] x undoes part of the transaction; a plain ROLLBACK ends it.
  if (w1 === "ROLLBACK") return w2 === "TO" || (w2 === "WORK" && w3 === "TO");
  if (w1 === "SET") {
    // SET STATEMENT var = value [, …] FOR <statement>: what counts is the statement after FOR.
    if (w2 === "STATEMENT") {
      const m = /\bFOR\b/i.exec(statement);
      return m !== null && statementStaysInTransaction(statement.slice(m.index + 3));
    }
    // SET PASSWORD and SET DEFAULT ROLE commit (MySQL's list); SET autocommit = 1 commits.
    if (w2 === "PASSWORD" || w2 === "DEFAULT") return false;
    return !/\bAUTOCOMMIT\b|\bPASSWORD\b/i.test(statement);
  }
  // Temporary tables do not commit in MariaDB/MySQL.
  if ((w1 === "CREATE" || w1 === "DROP") && w2 === "TEMPORARY") return true;
  return false;
}

/**
 * True when the statement may end the open transaction, committing what it had done (an "implicit
 * commit"). Only statements provably inside the transaction return false.
 */
export const mayCommitImplicitly = cached(function mayCommitImplicitly(sql: string): boolean {
  const { statements, opaque } = scan(sql);
  if (opaque) return true;
  return !statements.every(statementStaysInTransaction);
});

const DML_START = /^\s*(?:INSERT|UPDATE|DELETE|REPLACE)\b/i;

/**
 * A single INSERT / UPDATE / DELETE / REPLACE: a write that can run inside a transaction of the
 * wrapper's (so that its COMMIT can be verified). Anything else (reads, DDL, several statements,
 * executable comments) runs as it is.
 */
export const isAutocommitDml = cached(function isAutocommitDml(sql: string): boolean {
  if (!DML_START.test(sql)) return false;
  const { statements, opaque } = scan(sql);
  return !opaque && statements.length === 1;
});
