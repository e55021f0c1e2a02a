// STUB (pg-adapter branch): PostgreSQL SQL text rules, until the pg-rules branch's file replaces it.
const LEADING = /^(?:\s+|--[^\n]*\n?|\/\*[\s\S]*?\*\/|\()*/;

export function firstKeyword(sql: string): string {
  const m = /^[A-Za-z]+/.exec(sql.replace(LEADING, ""));
  return m ? m[0].toUpperCase() : "";
}
const READ = new Set(["SELECT", "SHOW", "VALUES", "TABLE", "FETCH"]);
const DML = /\b(INSERT|UPDATE|DELETE|MERGE)\b/i;

export function isMultiStatement(sql: string): boolean {
  const body = sql.replace(/'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*|\/\*[\s\S]*?\*\//g, "");
  return /;\s*\S/.test(body);
}
export function isReadOnlySql(sql: string): boolean {
  if (isMultiStatement(sql)) return false;
  const k = firstKeyword(sql);
  if (READ.has(k)) return !/\bINTO\b/i.test(sql) || k !== "SELECT";
  if (k === "WITH") return !DML.test(sql);
  if (k === "EXPLAIN") return !/\bANALY[SZ]E\b/i.test(sql);
  return false;
}
export function mayCommitImplicitly(sql: string): boolean {
  return /^(COMMIT|END|ROLLBACK|ABORT|PREPARE|VACUUM)$/.test(firstKeyword(sql)) || isMultiStatement(sql);
}
export function isAutocommitDml(sql: string): boolean {
  const k = firstKeyword(sql);
  return k === "INSERT" || k === "UPDATE" || k === "DELETE" || k === "MERGE" || (k === "WITH" && DML.test(sql));
}
