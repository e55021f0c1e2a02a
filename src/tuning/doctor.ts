// The doctor: connects to a live server (with every option of the URL, TLS included), reads its
// timeouts, reviews the pool settings a connection string would produce and prints a verdict for
// each, with the recommended connection string (password redacted), the installed mariadb driver
// and its known bugs; on PostgreSQL the pg-pool settings and the PrismaPg config (src/tuning/pg-doctor.ts). Exit codes: 0 safe, 1 unsafe, 2 cannot connect or bad input.
import { ConnectFailedError } from "../core/errors.ts";
import { driverInfo, type DriverInfo } from "./driver.ts";
import { describeGaleraState } from "../mysql/galera.ts";
import { checkOptionKeys, type PoolReview, type ServerTimeouts, type TuneOptions } from "./pool.ts";
import { tunePool } from "./server.ts";
import { redact, redactUrlsIn, scrub, secretsIn } from "../mysql/url.ts";
import { dialectOf, pgSecretsOf } from "./pg-input.ts";
import { pgJson, pgText } from "./pg-doctor.ts";
import { tunePgPool } from "./pg-server.ts";

export interface DoctorOptions extends TuneOptions {
  url: string;
  json?: boolean;
  connectTimeout?: number;
}

export interface DoctorResult {
  exitCode: 0 | 1 | 2;
  output: string;
}

const KNOWN = ["url", "json", "connectTimeout", "margin", "networkIdleTimeout", "maxQueryMs", "acquireTimeout", "optimistic"];
const MARK = { ok: "ok     ", improve: "improve", unsafe: "UNSAFE " } as const;

function text(review: PoolReview & { server: ServerTimeouts }, url: string, driver: DriverInfo): string {
  const s = review.server;
  const lines = [
    `server      ${s.flavor} ${s.version}`,
    `timeouts    wait_timeout ${s.waitTimeout} s (this user's sessions: ${s.sessionWaitTimeout} s), interactive_timeout ${s.interactiveTimeout} s, max_connections ${s.maxConnections}`,
    `connection  ${redact(url)}`,
    `tls         ${s.tls ? `yes (${s.tls})` : s.tls === false ? "no: plaintext" : "unknown"}`,
    `driver      mariadb ${driver.version ?? "(not found)"}`,
    `commits     ${s.commitTable === "present" ? "_resilience_commits present: lost COMMIT replies can be verified (exactly-once)" : s.commitTable === "missing" ? "_resilience_commits missing: withResilience() creates it when this user may (CREATE), or add the ResilienceCommit model (README, Exactly-once)" : "_resilience_commits not readable by this user: commit verification will be off"}`,
    ...(s.galera ? [`galera      ${describeGaleraState(s.galera)}`, ...s.galera.notes.map((n) => `            ${n}`)] : []),
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
  for (const w of [...review.warnings, ...driver.warnings]) lines.push(`warning     ${w}`);
  return lines.join("\n");
}

async function diagnose(options: DoctorOptions): Promise<DoctorResult> {
  const { url, json, connectTimeout, ...tune } = options;
  const failed = (reason: string, message: string): DoctorResult => ({
    exitCode: 2,
    output: json ? JSON.stringify({ ok: false, error: { reason, message } }) : message,
  });
  let review: PoolReview & { server: ServerTimeouts };
  try {
    checkOptionKeys("runDoctor()", options, KNOWN);
    if (typeof url === "string" && dialectOf(url) === "postgres") {
      // PostgreSQL: src/tuning/pg-doctor.ts prints it.
      const pg = await tunePgPool(url, { ...tune, connectTimeout });
      const exitCode = pg.verdict === "unsafe" ? 1 : 0;
      return { exitCode, output: json ? pgJson(pg, url, exitCode) : pgText(pg, url) };
    }
    review = await tunePool(url, { ...tune, connectTimeout });
  } catch (error) {
    if (error instanceof ConnectFailedError) return failed(error.reason, error.message);
    if (error instanceof TypeError) return failed("invalid-input", error.message);
    // Anything else (a query failing after connecting): exit 2 in the chosen format, URLs redacted.
    return failed("other", redactUrlsIn(error instanceof Error ? error.message : String(error)));
  }
  const driver = driverInfo();
  const exitCode = review.verdict === "unsafe" ? 1 : 0;
  if (!json) return { exitCode, output: text(review, url, driver) };
  return {
    exitCode,
    output: JSON.stringify({
      ok: exitCode === 0,
      verdict: review.verdict,
      server: review.server,
      connection: redact(url),
      driver,
      retireAfter: review.retireAfter,
      margin: review.margin,
      settings: review.settings,
      recommended: { settings: review.recommended, url: review.redactedUrl },
      warnings: [...review.warnings, ...driver.warnings],
    }),
  };
}

export async function runDoctor(options: DoctorOptions): Promise<DoctorResult> {
  const result = await diagnose(options);
  // Everything printed is built from redacted parts; this is the last guard (driver texts included).
  const secrets = typeof options?.url === "string" ? [...secretsIn(options.url), ...pgSecretsOf(options.url)] : [];
  return { ...result, output: scrub(result.output, secrets) };
}
