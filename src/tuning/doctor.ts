// The doctor: connects to a live server, reads its timeouts, reviews the pool settings a connection
// string would produce and prints a verdict for each, with the recommended connection string
// (password redacted). Exit codes: 0 safe, 1 unsafe, 2 cannot connect.
import { ConnectFailedError } from "../errors/errors.ts";
import type { PoolReview, ServerTimeouts, TuneOptions } from "./pool.ts";
import { tunePool } from "./server.ts";
import { redact } from "./url.ts";

export interface DoctorOptions extends TuneOptions {
  url: string;
  json?: boolean;
  connectTimeout?: number;
}

export interface DoctorResult {
  exitCode: 0 | 1 | 2;
  output: string;
}

const MARK = { ok: "ok     ", improve: "improve", unsafe: "UNSAFE " } as const;

function text(review: PoolReview & { server: ServerTimeouts }, url: string): string {
  const s = review.server;
  const lines = [
    `server      ${s.flavor} ${s.version}`,
    `timeouts    wait_timeout ${s.waitTimeout} s (this user's sessions: ${s.sessionWaitTimeout} s), interactive_timeout ${s.interactiveTimeout} s, max_connections ${s.maxConnections}`,
    `connection  ${redact(url)}`,
    `retire idle connections by ${review.retireAfter} s (timeout − ${review.margin} s margin)`,
    "",
    "setting               now      recommended  verdict",
  ];
  for (const r of review.settings) {
    lines.push(
      `${r.setting.padEnd(20)}  ${String(r.current).padEnd(8)} ${String(r.recommended).padEnd(12)} ${MARK[r.verdict]}  ${r.reason}`,
    );
  }
  lines.push("", `verdict     ${review.verdict === "unsafe" ? "UNSAFE" : review.verdict === "improve" ? "safe, can be improved" : "safe"}`);
  lines.push(`recommended ${review.redactedUrl}`);
  lines.push("            (password shown as ****: put yours back)");
  return lines.join("\n");
}

export async function runDoctor(options: DoctorOptions): Promise<DoctorResult> {
  const { url, json, connectTimeout, ...tune } = options;
  let review: PoolReview & { server: ServerTimeouts };
  try {
    review = await tunePool(url, { ...tune, connectTimeout });
  } catch (error) {
    if (error instanceof ConnectFailedError) {
      const output = json
        ? JSON.stringify({ ok: false, error: { reason: error.reason, message: error.message } })
        : `cannot connect: ${error.message}`;
      return { exitCode: 2, output };
    }
    if (error instanceof TypeError) {
      return { exitCode: 2, output: json ? JSON.stringify({ ok: false, error: { reason: "invalid-input", message: error.message } }) : error.message };
    }
    throw error;
  }
  const exitCode = review.verdict === "unsafe" ? 1 : 0;
  if (json) {
    return {
      exitCode,
      output: JSON.stringify({
        ok: exitCode === 0,
        verdict: review.verdict,
        server: review.server,
        connection: redact(url),
        retireAfter: review.retireAfter,
        margin: review.margin,
        settings: review.settings,
        recommended: { settings: review.recommended, url: review.redactedUrl },
      }),
    };
  }
  return { exitCode, output: text(review, url) };
}
