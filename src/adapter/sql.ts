// What a statement does, judged from its text: only its first keyword counts, after comments.

const LEADING_NOISE = /^(?:\s+|\/\*[\s\S]*?\*\/|--[^\n]*(?:\n|$)|#[^\n]*(?:\n|$)|\()+/;
const READ_KEYWORDS = new Set(["SELECT", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "VALUES", "TABLE", "WITH"]);
// Reads that still leave something behind.
const SIDE_EFFECT = /\bINTO\s+(?:OUTFILE|DUMPFILE)\b|\bNEXTVAL\s*\(|\bSETVAL\s*\(/i;
const WRITE_IN_WITH = /\b(?:INSERT|UPDATE|DELETE|REPLACE)\b/i;

/** The statement's first keyword, upper-cased ("SELECT", "INSERT", "COMMIT" ...). */
export function firstKeyword(sql: string): string {
  const rest = sql.replace(LEADING_NOISE, "");
  const m = /^[A-Za-z]+/.exec(rest);
  return m ? m[0].toUpperCase() : "";
}

/**
 * True when re-running the statement cannot change data: SELECT, SHOW, DESCRIBE, EXPLAIN, VALUES,
 * TABLE, and WITH ... SELECT. A SELECT that writes a file or advances a sequence is not read-only.
 * (A SELECT calling a stored function that writes cannot be seen from here: see the README caveats.)
 */
export function isReadOnlySql(sql: string): boolean {
  const keyword = firstKeyword(sql);
  if (!READ_KEYWORDS.has(keyword)) return false;
  if (SIDE_EFFECT.test(sql)) return false;
  if (keyword === "WITH" && WRITE_IN_WITH.test(sql)) return false;
  return true;
}
