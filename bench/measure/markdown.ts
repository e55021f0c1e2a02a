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
const f = (c: any) => (c ? `${c.ratio.median.toFixed(3)} (${c.ratio.ci95[0].toFixed(3)}–${c.ratio.ci95[1].toFixed(3)})` : "—");
console.log("| case | callers | rtt ms | pass-through × bare | resilience × bare | unverified × bare | round trips/op bare → resilience | commands/op bare → resilience | client CPU µs/op bare → resilience |");
console.log("|---|---|---|---|---|---|---|---|---|");
const key = (c: any) => `${c.case}/${c.callers}/${c.rttMs}`;
for (const k of [...new Set(r.cases.map(key))]) {
  const of = (v: string) => r.cases.find((c: any) => key(c) === k && c.variant === v);
  const c = of("resilience") ?? of("passthrough");
  const res = of("resilience");
  const over = res && res.ratio.median > res.goal ? ` > ${res.goal}` : "";
  console.log(
    `| \`${c.case}\` | ${c.callers} | ${c.rttMs} | ${f(of("passthrough"))} | ${f(res)}${over} | ${f(of("unverified"))} | ` +
      `${c.roundTripsPerOp.bare ?? "—"} → ${res?.roundTripsPerOp.variant ?? "—"} | ${c.commandsPerOp.bare ?? "—"} → ${res?.commandsPerOp.variant ?? "—"} | ${c.cpuUsPerOp.bare} → ${res?.cpuUsPerOp.variant ?? "—"} |`,
  );
}
