#!/usr/bin/env node
// prisma-extension-resilience doctor [--url URL] [--json] [--margin s] [--network-idle-timeout s]
//   [--max-query-ms ms] [--no-optimistic]. DATABASE_URL is used when --url is not given.
import { parseArgs } from "node:util";
import { runDoctor } from "./doctor.ts";

const USAGE = `usage: prisma-extension-resilience doctor [--url URL] [--json] [--margin SECONDS]
         [--network-idle-timeout SECONDS] [--max-query-ms MS] [--no-optimistic]

Connects to DATABASE_URL (or --url) with every option of the URL (ssl=true included: never
plaintext instead), reads the server's timeouts, reviews the pool settings the URL produces, names
the installed mariadb driver and its known bugs, and prints the recommended connection string
(password shown as ****). A postgres:// or postgresql:// URL gets the PostgreSQL report: the
server's idle limits, the pg-pool settings and the recommended PrismaPg config (--max-query-ms and
--no-optimistic are MySQL/MariaDB only).
Exit codes: 0 safe, 1 unsafe, 2 cannot connect or bad input.`;

function numberOption(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new TypeError(`--${name} must be a non-negative number, got ${value}`);
  return n;
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      url: { type: "string" },
      json: { type: "boolean", default: false },
      margin: { type: "string" },
      "network-idle-timeout": { type: "string" },
      "max-query-ms": { type: "string" },
      "no-optimistic": { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help || positionals[0] !== "doctor") {
    console.log(USAGE);
    return values.help ? 0 : 2;
  }
  const url = values.url ?? process.env.DATABASE_URL;
  if (!url) {
    console.error("no connection string: set DATABASE_URL or pass --url\n\n" + USAGE);
    return 2;
  }
  let result: { exitCode: number; output: string };
  try {
    result = await runDoctor({
      url,
      json: values.json,
      margin: numberOption("margin", values.margin),
      networkIdleTimeout: numberOption("network-idle-timeout", values["network-idle-timeout"]),
      maxQueryMs: numberOption("max-query-ms", values["max-query-ms"]),
      optimistic: !values["no-optimistic"],
    });
  } catch (error) {
    // A bad flag value: said in the chosen format too.
    const message = error instanceof Error ? error.message : String(error);
    result = { exitCode: 2, output: values.json ? JSON.stringify({ ok: false, error: { reason: "invalid-input", message } }) : message };
  }
  console.log(result.output);
  return result.exitCode;
}

// exitCode, not exit(): exit() can cut off output still on its way to a pipe.
main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error) => {
    console.error(error instanceof Error ? error.message : String(error));
    process.exitCode = 2;
  },
);
