// The HTTP demo's figures: the side-by-side rows shared by the terminal and the HTML report, and one
// self-contained HTML file with an SVG chart of 5xx answers over time beside the faults.
import { esc, type TableRow } from "../report.ts";
import type { HttpResult } from "./run.ts";

const COLORS: Record<string, string> = { bare: "#c0392b", package: "#1f6fb2" };
const LABELS: Record<string, string> = { bare: "bare Prisma 7", package: "with prisma-extension-resilience" };

export type { TableRow };

export function tableRows(results: HttpResult[]): TableRow[] {
  const f = (fn: (r: HttpResult) => unknown) => results.map((r) => String(fn(r)));
  const pct = (n: number, of: number) => `${n} (${((100 * n) / Math.max(1, of)).toFixed(2)} %)`;
  return [
    { label: "HTTP requests", values: f((r) => r.requests) },
    { label: "answered 2xx", values: f((r) => r.ok) },
    { label: "answered HTTP 5xx", values: f((r) => pct(r.http5xx, r.requests)) },
    { label: "answered 1xx/3xx/4xx", values: f((r) => r.otherStatus) },
    { label: "never answered (timeout, connection error)", values: f((r) => r.unanswered) },
    { label: "acknowledged writes missing (lost)", values: f((r) => r.lost) },
    { label: "writes answered 5xx that are in the database", values: f((r) => r.unackedApplied) },
    { label: "writes applied twice", values: f((r) => r.duplicated) },
    { label: "counters exact (value = 2xx increments)", values: f((r) => `${r.countersExact} of ${r.counters.length}`) },
    { label: "re-runs by the package", values: f((r) => (r.mode === "bare" ? "—" : r.retries)) },
    { label: "latency p50 / p99 (ms)", values: f((r) => `${r.p50Ms} / ${r.p99Ms}`) },
    { label: "connections KILLed mid-statement", values: f((r) => r.killed) },
    { label: "server kill -9 + restart", values: f((r) => r.restarts) },
    { label: "worker processes that died", values: f((r) => r.workerCrashes) },
    { label: "mariadb 3.4.5 set-up rejections tolerated", values: f((r) => r.driverInitRejections) },
  ];
}

/** 5xx by route and by error, and what the KILLs hit, one line each per side. */
export function breakdown(r: HttpResult): { routes: string; errors: string; kills: string } {
  const routes = Object.entries(r.byOp)
    .filter(([, v]) => v.http5xx > 0)
    .map(([k, v]) => `${k} ${v.http5xx}/${v.requests}`)
    .join(", ");
  const errors = Object.entries(r.http5xxByError)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ×${v}`)
    .join("; ");
  const kills = Object.entries(r.killedStatements)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ×${v}`)
    .join("; ");
  return { routes: routes || "—", errors: errors || "—", kills: kills || "—" };
}

function chart(results: HttpResult[]): string {
  const W = 980;
  const left = 60;
  const right = 20;
  const plotW = W - left - right;
  const top1 = 40;
  const h1 = 170;
  const top2 = top1 + h1 + 50;
  const h2 = 150;
  const strip = 14;
  const top3 = top2 + h2 + 30;
  const H = top3 + results.length * (strip + 6) + 50;
  const bucketMs = 250;
  const duration = Math.max(...results.map((r) => r.durationMs));
  const buckets = Math.ceil(duration / bucketMs);
  const x = (t: number) => left + (Math.max(0, t) / duration) * plotW;

  const series = results.map((r) => {
    const ok = new Array(buckets).fill(0);
    const failed = new Array(buckets).fill(0);
    for (const s of r.timeline) {
      const b = Math.min(buckets - 1, Math.floor(s.t / bucketMs));
      if (s.status >= 500) failed[b]++;
      else if (s.status >= 200 && s.status < 300) ok[b]++;
    }
    return { r, ok: ok.map((n) => (n * 1000) / bucketMs), failed };
  });
  const maxOk = Math.max(1, ...series.flatMap((s) => s.ok));
  const maxFail = Math.max(1, ...series.flatMap((s) => s.failed));
  const y1 = (v: number) => top1 + h1 - (v / maxOk) * h1;
  const y2 = (v: number) => top2 + h2 - (v / maxFail) * h2;

  const parts: string[] = [`<rect x="0" y="0" width="${W}" height="${H}" fill="#fff"/>`];
  // Load windows (first side's schedule; both sides run the same one) and the server down window.
  const ev = results[0].events;
  const loads = ev.filter((e) => e.what === "load-start");
  const ends = ev.filter((e) => e.what === "load-end");
  loads.forEach((s, i) => {
    const e = ends[i];
    if (!e) return;
    for (const [top, h] of [[top1, h1], [top2, h2]]) parts.push(`<rect x="${x(s.t)}" y="${top}" width="${x(e.t) - x(s.t)}" height="${h}" fill="#f2f2f2"/>`);
  });
  results.forEach((r) => {
    const down = r.events.find((e) => e.what === "server-down");
    const up = r.events.find((e) => e.what === "server-up");
    if (!down || !up) return;
    for (const [top, h] of [[top1, h1], [top2, h2]])
      parts.push(`<rect x="${x(down.t)}" y="${top}" width="${Math.max(2, x(up.t) - x(down.t))}" height="${h}" fill="#f3d3d0" fill-opacity="0.7"/>`);
  });
  const down0 = ev.find((e) => e.what === "server-down");
  if (down0) parts.push(`<text x="${x(down0.t) + 4}" y="${top1 + 14}" font-size="12" fill="#8e2a20">kill -9, server down</text>`);
  parts.push(`<text x="${left}" y="${top1 - 12}" font-size="12" fill="#333">answered 2xx per second (grey: load bursts, idle gaps between them; wait_timeout = 2)</text>`);
  parts.push(`<text x="${left}" y="${top2 - 10}" font-size="12" fill="#333">HTTP 5xx answers per ${bucketMs} ms</text>`);
  for (let i = 0; i <= 4; i++) {
    const v = (maxOk * i) / 4;
    parts.push(`<line x1="${left}" x2="${W - right}" y1="${y1(v)}" y2="${y1(v)}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${left - 6}" y="${y1(v) + 4}" font-size="11" text-anchor="end" fill="#555">${Math.round(v)}</text>`);
  }
  for (let i = 0; i <= 2; i++) {
    const v = Math.round((maxFail * i) / 2);
    parts.push(`<line x1="${left}" x2="${W - right}" y1="${y2(v)}" y2="${y2(v)}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${left - 6}" y="${y2(v) + 4}" font-size="11" text-anchor="end" fill="#555">${v}</text>`);
  }
  parts.push(`<rect x="${left}" y="${top1}" width="${plotW}" height="${h1}" fill="none" stroke="#999"/>`);
  parts.push(`<rect x="${left}" y="${top2}" width="${plotW}" height="${h2}" fill="none" stroke="#999"/>`);
  const bw = plotW / buckets / (series.length + 0.5);
  series.forEach((s, k) => {
    const color = COLORS[s.r.mode] ?? "#666";
    const pts = s.ok.map((v, b) => `${x((b + 0.5) * bucketMs).toFixed(1)},${y1(v).toFixed(1)}`).join(" ");
    parts.push(`<polyline points="${pts}" fill="none" stroke="${color}" stroke-width="1.5"/>`);
    s.failed.forEach((n, b) => {
      if (n === 0) return;
      const bx = x(b * bucketMs) + k * bw + bw * 0.25;
      parts.push(`<rect x="${bx.toFixed(1)}" y="${y2(n).toFixed(1)}" width="${bw.toFixed(1)}" height="${(top2 + h2 - y2(n)).toFixed(1)}" fill="${color}"/>`);
    });
    // The faults this side met: a tick per connection KILLed mid-statement, a red band while the server was down.
    const ty = top3 + k * (strip + 6);
    parts.push(`<rect x="${left}" y="${ty}" width="${plotW}" height="${strip}" fill="none" stroke="#ddd"/>`);
    for (const e of s.r.events) {
      if (e.what === "kill") parts.push(`<line x1="${x(e.t).toFixed(1)}" x2="${x(e.t).toFixed(1)}" y1="${ty + 2}" y2="${ty + strip - 2}" stroke="${color}" stroke-width="1"/>`);
      if (e.what === "worker-crash") parts.push(`<circle cx="${x(e.t).toFixed(1)}" cy="${ty + strip / 2}" r="4" fill="#000"/>`);
    }
    const down = s.r.events.find((e) => e.what === "server-down");
    const up = s.r.events.find((e) => e.what === "server-up");
    if (down && up) parts.push(`<rect x="${x(down.t)}" y="${ty}" width="${Math.max(2, x(up.t) - x(down.t))}" height="${strip}" fill="#c0392b" fill-opacity="0.35"/>`);
    parts.push(`<text x="${left - 6}" y="${ty + strip - 3}" font-size="11" text-anchor="end" fill="${color}">${esc(s.r.mode)}</text>`);
    parts.push(`<rect x="${left + 10 + k * 300}" y="${H - 18}" width="14" height="4" fill="${color}"/>`);
    parts.push(`<text x="${left + 30 + k * 300}" y="${H - 13}" font-size="12" fill="#333">${esc(LABELS[s.r.mode] ?? s.r.mode)}</text>`);
  });
  parts.push(`<text x="${left}" y="${top3 - 6}" font-size="12" fill="#333">faults: a tick per connection KILLed while running a statement, red: server down (kill -9 to restarted)</text>`);
  const lastStrip = top3 + results.length * (strip + 6);
  for (let s = 0; s <= duration / 1000; s += duration > 30_000 ? 5 : 2)
    parts.push(`<text x="${x(s * 1000)}" y="${lastStrip + 12}" font-size="11" text-anchor="middle" fill="#555">${s} s</text>`);
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" font-family="system-ui, sans-serif">${parts.join("")}</svg>`;
}

export function renderReport(results: HttpResult[], meta: Record<string, string>): string {
  const rows = tableRows(results);
  const head = results.map((r) => `<th style="color:${COLORS[r.mode] ?? "#333"}">${esc(LABELS[r.mode] ?? r.mode)}</th>`).join("");
  const body = rows.map((row) => `<tr><td>${esc(row.label)}</td>${row.values.map((v) => `<td>${esc(v)}</td>`).join("")}</tr>`).join("\n");
  const details = results
    .map((r) => {
      const b = breakdown(r);
      const list = r.http5xxDetails.map((d) => `<li><code>${esc(d)}</code></li>`).join("");
      return `<h3 style="color:${COLORS[r.mode]}">${esc(LABELS[r.mode] ?? r.mode)}</h3>
<p>5xx by route: ${esc(b.routes)}<br>5xx by error: ${esc(b.errors)}<br>the KILLed connections were running: ${esc(b.kills)}</p>${list ? `<ul class="note">${list}</ul>` : ""}`;
    })
    .join("\n");
  const metaRows = Object.entries(meta).map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(v)}</td></tr>`).join("");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>prisma-extension-resilience: HTTP demo</title>
<style>
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1020px; color: #222; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; } h3 { font-size: 15px; margin-bottom: 4px; }
table { border-collapse: collapse; margin: 8px 0; } td, th { border: 1px solid #ddd; padding: 5px 10px; text-align: left; font-size: 14px; }
th { background: #f6f6f6; } td:not(:first-child) { font-variant-numeric: tabular-nums; }
.note { color: #555; font-size: 13px; } code { font-size: 12px; }
</style></head><body>
<h1>HTTP demo: a REST API on bare Prisma 7 vs prisma-extension-resilience</h1>
<p class="note">An Express 5 API with the routes of Prisma's REST example, four worker processes under
<code>node:cluster</code>, each with its own PrismaClient, under autocannon bursts with idle gaps longer than
<code>wait_timeout</code>, while connections are KILLed in the middle of a statement and the server is
<code>kill -9</code>ed and restarted. The same seed and fault schedule twice. Every write carries a key chosen by the
client, so that each answer can be checked against the database afterwards: an acknowledged write that is missing is
lost; a write answered 5xx that is there anyway was reported failed although it happened.</p>
<h2>Results</h2>
<table><tr><th></th>${head}</tr>
${body}</table>
<h2>Over time</h2>
${chart(results)}
<h2>What the 5xx were</h2>
${details}
<h2>Run</h2>
<table>${metaRows}</table>
</body></html>
`;
}
