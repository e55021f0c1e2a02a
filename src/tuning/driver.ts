// The installed mariadb driver, as PrismaMariaDb loads it, and its known bugs that affect resilience.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

export interface DriverInfo {
  /** The mariadb driver's version, or undefined when it cannot be found. */
  version?: string;
  /** Known bugs of that version that matter when connections die, with the fix. */
  warnings: string[];
}

/** `a < b` for dotted versions ("3.4.5" < "3.5.1"). */
function older(a: string, b: string): boolean {
  const x = a.split(/[.-]/).map((n) => parseInt(n, 10) || 0);
  const y = b.split(/[.-]/).map((n) => parseInt(n, 10) || 0);
  for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return x[i] < y[i];
  return false;
}

/** Known bugs by version (checked in the driver's source: 3.3.2, 3.4.0, 3.4.5, 3.4.7 have it, 3.5.1 not). */
export function driverWarnings(version: string): string[] {
  const warnings: string[] = [];
  if (older(version, "3.5.1")) {
    warnings.push(
      `mariadb ${version} leaves a promise rejection unhandled when a new connection is reset during its set-up ` +
        `(around a server restart); under Node's default --unhandled-rejections=throw that ends the process. ` +
        `Fixed in 3.5.1: add "overrides": { "mariadb": "^3.5.1" } to your package.json (yarn: "resolutions"), ` +
        `then reinstall (@prisma/adapter-mariadb 7.10 pins 3.4.5; this package is tested with 3.4.5)`,
    );
  }
  return warnings;
}

function versionFrom(base: string): string | undefined {
  const req = createRequire(base);
  // The copy PrismaMariaDb loads first (it pins its own), else the one next to `base`.
  const attempts = [
    () => createRequire(req.resolve("@prisma/adapter-mariadb")).resolve("mariadb/package.json"),
    () => req.resolve("mariadb/package.json"),
  ];
  for (const attempt of attempts) {
    try {
      return JSON.parse(readFileSync(attempt(), "utf8")).version;
    } catch {}
  }
  return undefined;
}

/** The driver version the app (resolved from the current directory) or this package would load. */
export function driverInfo(): DriverInfo {
  const version = versionFrom(join(process.cwd(), "package.json")) ?? versionFrom(import.meta.url);
  return { version, warnings: version ? driverWarnings(version) : [] };
}
