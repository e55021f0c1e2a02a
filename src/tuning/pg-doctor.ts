// The doctor's PostgreSQL report (src/tuning/doctor.ts runs it): the server, its idle limits and
// connection limits, whether a pooler shows, the verdict for each pg-pool setting, and the
// recommended PrismaPg config with the password redacted.
import { redact } from "../core/redact.ts";
import type { PgPoolReview, PgServerSettings } from "./pg-pool.ts";

const MARK = { ok: "ok     ", improve: "improve", unsafe: "UNSAFE " } as const;

function ms(value: number | undefined): string {
  if (value === undefined) return "n/a";
  return value === 0 ? "0 (off)" : `${value} ms`;
}

function limit(value: number | undefined): string {
  return value === undefined ? "?" : value < 0 ? "none" : String(value);
}

function keepalives(s: PgServerSettings): string {
  if (s.tcpKeepalivesIdle === undefined) return "n/a";
  if (s.tcpKeepalivesIdle === 0 && s.tcpKeepalivesInterval === 0) return "OS defaults (or a unix socket)";
  return `idle ${s.tcpKeepalivesIdle || "OS"} s, interval ${s.tcpKeepalivesInterval || "OS"} s, count ${s.tcpKeepalivesCount || "OS"}`;
}

export function pgText(review: PgPoolReview & { server: PgServerSettings }, url: string): string {
  const s = review.server;
  const lines = [
    `server      postgresql ${s.version ?? "?"}`,
    `timeouts    idle_session_timeout ${ms(s.idleSessionTimeout)}, idle_in_transaction_session_timeout ${ms(s.idleInTransactionSessionTimeout)}, statement_timeout ${ms(s.statementTimeout)}` +
      (s.transactionTimeout !== undefined ? `, transaction_timeout ${ms(s.transactionTimeout)}` : ""),
    `keepalives  server side: ${keepalives(s)}`,
    `limits      max_connections ${limit(s.maxConnections)} (${s.reservedConnections ?? 0} reserved), role ${limit(s.roleConnLimit)}, database ${limit(s.databaseConnLimit)}`,
    `connection  ${redact(url)}`,
    `tls         ${s.tls ? `yes (${s.tls})` : s.tls === false ? "no: plaintext" : "unknown"}`,
    `pooler      ${s.pooler ? (s.pooler.detected ? `yes: ${s.pooler.reason}` : `none seen: ${s.pooler.reason}`) : "cannot be told (a unix socket, or the server reports no port)"}`,
    review.retireAfter === undefined
      ? "retire idle connections: no idle limit known (idle_session_timeout off; pass --network-idle-timeout for a pooler's or load balancer's)"
      : `retire idle connections by ${review.retireAfter} s (limit − ${review.margin} s margin)`,
    "",
    "setting                      now      recommended  verdict",
  ];
  for (const r of review.settings) {
    lines.push(`${r.setting.padEnd(27)}  ${String(r.current).padEnd(8)} ${String(r.recommended).padEnd(12)} ${MARK[r.verdict]}  ${r.reason}`);
  }
  lines.push("", `verdict     ${review.verdict === "unsafe" ? "UNSAFE" : review.verdict === "improve" ? "safe, can be improved" : "safe"}`);
  lines.push(`recommended new PrismaPg(${JSON.stringify(review.redactedConfig)})`);
  lines.push("            (password shown as ****: put yours back)");
  for (const n of review.notes) lines.push(`note        ${n}`);
  for (const w of review.warnings) lines.push(`warning     ${w}`);
  return lines.join("\n");
}

export function pgJson(review: PgPoolReview & { server: PgServerSettings }, url: string, exitCode: number): string {
  return JSON.stringify({
    ok: exitCode === 0,
    dialect: "postgres",
    verdict: review.verdict,
    server: review.server,
    connection: redact(url),
    retireAfter: review.retireAfter ?? null,
    margin: review.margin ?? null,
    settings: review.settings,
    recommended: { settings: review.recommended, config: review.redactedConfig },
    notes: review.notes,
    warnings: review.warnings,
  });
}
