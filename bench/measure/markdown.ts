// Renders a bench result (default bench/results/latest.json) as the Markdown table of
// docs/measurements.md: `npx tsx bench/measure/markdown.ts [file]`.
import { readFileSync } from "node:fs";

const file = process.argv[2] ?? new URL("../results/latest.json", import.meta.url).pathname;
const r = JSON.parse(readFileSync(file, "utf8"));
const m = r.machine;
const v = r.versions;
console.log(
  `${r.date.slice(0, 10)}; ${m.cpus} × ${m.cpu}, ${m.platform} ${m.release}; load average ${m.loadavg.start.join(" ")} → ${m.loadavg.end.join(" ")}; ` +
    `Node ${v.node}, Prisma ${v.prisma}, @prisma/adapter-mariadb ${v.adapter}, mariadb ${v.mariadbDriver}, MariaDB ${v.server}; ` +
    `${r.settings.blocks} measured rounds after ${r.settings.warmupRounds} warm-up, blocks ${r.settings.opsPerBlock}.\n`,
);
console.log("| case | callers | rtt ms | variant | × bare (median) | 95 % interval | round trips/op bare → variant | commands/op | client CPU µs/op |");
console.log("|---|---|---|---|---|---|---|---|---|");
for (const c of r.cases) {
  const over = c.variant === "resilience" && c.ratio.median > c.goal ? " (goal ≤ " + c.goal + ")" : "";
  console.log(
    `| \`${c.case}\` | ${c.callers} | ${c.rttMs} | ${c.variant} | ${c.ratio.median.toFixed(3)}${over} | ${c.ratio.ci95[0].toFixed(3)}–${c.ratio.ci95[1].toFixed(3)} | ` +
      `${c.roundTripsPerOp.bare ?? "—"} → ${c.roundTripsPerOp.variant ?? "—"} | ${c.commandsPerOp.bare ?? "—"} → ${c.commandsPerOp.variant ?? "—"} | ${c.cpuUsPerOp.bare} → ${c.cpuUsPerOp.variant} |`,
  );
}
