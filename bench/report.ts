// Renders the demo's results as one self-contained HTML file: a side-by-side table and an SVG chart
// of throughput and failures over time, with the faults marked. No scripts, no external assets.
import type { ChaosResult } from "../test/support/chaos.ts";

const COLORS: Record<string, string> = { bare: "#c0392b", resilient: "#1f6fb2", "resilient-unwrapped": "#2e8b57" };
const LABELS: Record<string, string> = {
  bare: "bare Prisma 7",
  resilient: "with prisma-extension-resilience",
  "resilient-unwrapped": "extension without withResilience",
};

export const esc = (s: unknown) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!);

export interface TableRow {
  label: string;
  values: string[];
}

/** The side-by-side figures, shared by the terminal table and the HTML report. */
export function tableRows(results: ChaosResult[]): TableRow[] {
  const f = (fn: (r: ChaosResult) => unknown) => results.map((r) => String(fn(r)));
  const classes = (r: ChaosResult) =>
    Object.entries(r.failuresByClass)
      .map(([k, v]) => `${k} ${v}`)
      .join(", ") || "—";
  return [
    { label: "operations", values: f((r) => r.operations) },
    { label: "failed operations", values: f((r) => `${r.failures} (${((100 * r.failures) / Math.max(1, r.operations)).toFixed(2)} %)`) },
    { label: "failures by class", values: f(classes) },
    { label: "failed after losing the connection on every attempt", values: f((r) => (r.mode === "bare" ? "—" : r.lostOnEveryAttempt)) },
    { label: "unknown-outcome writes (typed)", values: f((r) => r.unknownOutcome) },
    { label: "writes reported failed that had committed", values: f((r) => r.failedButCommitted) },
    { label: "duplicate rows (keys with 2 rows)", values: f((r) => r.duplicateKeys) },
    { label: "lost acknowledged writes", values: f((r) => r.lostWrites) },
    { label: "retries", values: f((r) => r.retries) },
    { label: "latency p50 / p99 (ms)", values: f((r) => `${r.p50Ms} / ${r.p99Ms}`) },
    { label: "first success after restart (ms)", values: f((r) => (r.recoveryMs === null ? "—" : r.recoveryMs)) },
    { label: "connections killed", values: f((r) => r.killed) },
  ];
}

function chart(results: ChaosResult[]): string {
  const W = 980;
  const H = 470;
  const left = 60;
  const right = 20;
  const plotW = W - left - right;
  const top1 = 40;
  const h1 = 220;
  const top2 = top1 + h1 + 50;
  const h2 = 110;
  const bucketMs = 500;
  const duration = Math.max(...results.map((r) => r.durationMs));
  const buckets = Math.ceil(duration / bucketMs);
  const x = (t: number) => left + (t / duration) * plotW;

  const series = results.map((r) => {
    const ok = new Array(buckets).fill(0);
    const failed = new Array(buckets).fill(0);
    for (const s of r.samples) {
      const b = Math.min(buckets - 1, Math.floor(s.t / bucketMs));
      if (s.outcome === "ok") ok[b]++;
      else failed[b]++;
    }
    return { r, ok: ok.map((n) => (n * 1000) / bucketMs), failed };
  });
  const maxOps = Math.max(1, ...series.flatMap((s) => s.ok));
  const maxFail = Math.max(1, ...series.flatMap((s) => s.failed));
  const y1 = (v: number) => top1 + h1 - (v / maxOps) * h1;
  const y2 = (v: number) => top2 + h2 - (v / maxFail) * h2;

  const parts: string[] = [];
  parts.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="#fff"/>`);
  // Faults: the server down window, and a tick per killed connection (first run's schedule).
  const ev = results[0].events;
  const down = ev.find((e) => e.what === "server-down");
  const up = ev.find((e) => e.what === "server-up");
  if (down && up) {
    for (const [top, h] of [[top1, h1], [top2, h2]]) {
      parts.push(`<rect x="${x(down.t)}" y="${top}" width="${Math.max(2, x(up.t) - x(down.t))}" height="${h}" fill="#f3d3d0"/>`);
    }
    parts.push(`<text x="${x(down.t) + 4}" y="${top1 + 14}" font-size="12" fill="#8e2a20">kill -9, server down</text>`);
  }
  for (const e of ev.filter((e) => e.what === "kill")) {
    parts.push(`<line x1="${x(e.t)}" x2="${x(e.t)}" y1="${top1 - 10}" y2="${top1 - 2}" stroke="#555" stroke-width="1"/>`);
  }
  parts.push(`<text x="${left}" y="${top1 - 14}" font-size="12" fill="#333">ticks: a connection killed · throughput (successful operations per second)</text>`);
  // Axes and grid.
  for (let i = 0; i <= 4; i++) {
    const v = (maxOps * i) / 4;
    parts.push(`<line x1="${left}" x2="${W - right}" y1="${y1(v)}" y2="${y1(v)}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${left - 6}" y="${y1(v) + 4}" font-size="11" text-anchor="end" fill="#555">${Math.round(v)}</text>`);
  }
  for (let i = 0; i <= 2; i++) {
    const v = Math.round((maxFail * i) / 2);
    parts.push(`<line x1="${left}" x2="${W - right}" y1="${y2(v)}" y2="${y2(v)}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${left - 6}" y="${y2(v) + 4}" font-size="11" text-anchor="end" fill="#555">${v}</text>`);
  }
  for (let s = 0; s <= duration / 1000; s += duration > 30_000 ? 5 : 2) {
    parts.push(`<text x="${x(s * 1000)}" y="${top2 + h2 + 16}" font-size="11" text-anchor="middle" fill="#555">${s} s</text>`);
  }
  parts.push(`<text x="${left}" y="${top2 - 10}" font-size="12" fill="#333">failed operations per ${bucketMs} ms (unknown-outcome writes included)</text>`);
  parts.push(`<rect x="${left}" y="${top1}" width="${plotW}" height="${h1}" fill="none" stroke="#999"/>`);
  parts.push(`<rect x="${left}" y="${top2}" width="${plotW}" height="${h2}" fill="none" stroke="#999"/>`);
  // Lines and bars.
  const bw = plotW / buckets / (series.length + 0.5);
  series.forEach((s, k) => {
    const color = COLORS[s.r.mode] ?? "#666";
    const pts = s.ok.map((v, b) => `${(x((b + 0.5) * bucketMs)).toFixed(1)},${y1(v).toFixed(1)}`).join(" ");
    parts.push(`<polyline points="${pts}" fill="none" stroke="${color}" stroke-width="2"/>`);
    s.failed.forEach((n, b) => {
      if (n === 0) return;
      const bx = x(b * bucketMs) + k * bw + bw * 0.25;
      parts.push(`<rect x="${bx.toFixed(1)}" y="${y2(n).toFixed(1)}" width="${bw.toFixed(1)}" height="${(top2 + h2 - y2(n)).toFixed(1)}" fill="${color}"/>`);
    });
    parts.push(`<rect x="${left + 10 + k * 300}" y="${H - 18}" width="14" height="4" fill="${color}"/>`);
    parts.push(`<text x="${left + 30 + k * 300}" y="${H - 13}" font-size="12" fill="#333">${esc(LABELS[s.r.mode] ?? s.r.mode)}</text>`);
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" font-family="system-ui, sans-serif">${parts.join("")}</svg>`;
}

export function renderReport(results: ChaosResult[], meta: Record<string, string>): string {
  const rows = tableRows(results);
  const head = results.map((r) => `<th style="color:${COLORS[r.mode] ?? "#333"}">${esc(LABELS[r.mode] ?? r.mode)}</th>`).join("");
  const body = rows.map((row) => `<tr><td>${esc(row.label)}</td>${row.values.map((v) => `<td>${esc(v)}</td>`).join("")}</tr>`).join("\n");
  const metaRows = Object.entries(meta).map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(v)}</td></tr>`).join("");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>prisma-extension-resilience: chaos demo</title>
<style>
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1020px; color: #222; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; }
table { border-collapse: collapse; margin: 8px 0; } td, th { border: 1px solid #ddd; padding: 5px 10px; text-align: left; font-size: 14px; }
th { background: #f6f6f6; } td:not(:first-child) { font-variant-numeric: tabular-nums; }
.note { color: #555; font-size: 13px; }
</style></head><body>
<h1>Chaos demo: bare Prisma 7 vs prisma-extension-resilience</h1>
<p class="note">The same workload and fault schedule twice: concurrent workers doing reads, single writes and interactive
transactions while connections are killed, <code>wait_timeout</code> is tiny and the server is <code>kill -9</code>ed
and restarted. Every write uses its own key, so a duplicated write shows as two rows.</p>
<h2>Results</h2>
<table><tr><th></th>${head}</tr>
${body}</table>
<h2>Over time</h2>
${chart(results)}
<h2>Run</h2>
<table>${metaRows}</table>
</body></html>
`;
}
