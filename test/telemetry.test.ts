// OpenTelemetry: with a tracer provider, a context manager and a meter provider registered (the SDK's
// in-memory exporters here), a re-run, a commit verification, an unknown outcome and an outage show
// as events on the app's active span and in metrics. Without a registered provider nothing throws.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { context, metrics, trace, type Attributes } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from "@opentelemetry/sdk-trace-base";
import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader } from "@opentelemetry/sdk-metrics";
import { isOutcomeUnknown } from "../src/index.ts";
import { apiFrom, recordGiveUp, recordOutageWait, recordRetry, recordStateChange, recordVerification } from "../src/core/telemetry.ts";
import { ledgerRows, rejectionOf, uniqueKey } from "./support/data.ts";
import type { TestDatabase } from "./support/mariadb.ts";
import { faultSuite } from "./support/suite.ts";
import { happened, killedRead, withProxy } from "./support/faults.ts";

let db: TestDatabase;
const client = faultSuite((started) => (db = started), { checkDuplicates: true });


describe("telemetry: no provider registered", () => {
  test("@opentelemetry/api not installed (or not the api): no api, so every record call is a no-op", () => {
    const notFound = Object.assign(new Error("Cannot find module '@opentelemetry/api'"), { code: "MODULE_NOT_FOUND" });
    assert.equal(
      apiFrom(() => {
        throw notFound;
      }),
      undefined,
    );
    assert.equal(apiFrom(() => ({})), undefined);
    assert.ok(apiFrom(() => ({ trace: { getActiveSpan: () => undefined }, metrics: { getMeterProvider: () => ({}) } })));
  });

  test("the api installed, no provider registered: every record call returns, nothing throws", async () => {
    recordRetry({ attempt: 1, retriesLeft: 0, error: new Error("x"), errorClass: "connection-lost", operation: "findMany", model: "User", delayMs: 0, counted: true }, "mariadb");
    recordVerification("committed", 3, "mariadb");
    recordStateChange({ state: "up", reason: "server accepts connections", downForMs: 10, generation: 1 }, undefined);
    recordGiveUp(Object.assign(new Error("x"), { name: "OutcomeUnknownError", inFlight: "commit", operation: "create", attempts: 1 }), "mysql");
    assert.equal(await recordOutageWait(Promise.resolve(7), "mariadb"), 7);
    await assert.rejects(recordOutageWait(Promise.reject(new Error("held")), "mariadb"), /held/);
  });

  test("a killed read is re-run, nothing throws", async () => {
    const { prisma, retries } = client(db.url);
    await prisma.user.count();
    const rows = await killedRead(db, () => prisma.$queryRaw<Array<{ s: unknown }>>`SELECT SLEEP(0.5) AS s`);
    assert.equal(rows.length, 1, "one row");
    assert.equal(retries.length, 1);
  });
});

describe("telemetry: with the SDK's in-memory exporters", () => {
  const spans = new InMemorySpanExporter();
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] });
  const metricExporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  const reader = new PeriodicExportingMetricReader({ exporter: metricExporter, exportIntervalMillis: 3_600_000 });
  const meterProvider = new MeterProvider({ readers: [reader] });
  const tracer = () => trace.getTracer("telemetry-test");

  before(() => {
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    trace.setGlobalTracerProvider(tracerProvider);
    metrics.setGlobalMeterProvider(meterProvider);
  });
  after(async () => {
    await meterProvider.shutdown();
    await tracerProvider.shutdown();
    metrics.disable();
    trace.disable();
    context.disable();
  });

  /** Runs `work` inside an active span named `name`; returns its result and the ended span. */
  async function inSpan<T>(name: string, work: () => Promise<T>): Promise<{ result: T; span: ReadableSpan }> {
    const result = await tracer().startActiveSpan(name, async (span) => {
      try {
        return await work();
      } finally {
        span.end();
      }
    });
    const span = spans.getFinishedSpans().find((s) => s.name === name);
    assert.ok(span, `span ${name} was exported`);
    return { result, span };
  }

  /** The metric's current (cumulative) value for the data points whose attributes include `attrs`: a sum, or a histogram's count and sum. */
  async function metric(name: string, attrs: Attributes = {}): Promise<{ value: number; count: number; points: Attributes[] }> {
    await reader.forceFlush();
    const last = metricExporter.getMetrics().at(-1);
    const found = last?.scopeMetrics.flatMap((s) => s.metrics).find((m) => m.descriptor.name === name);
    let value = 0;
    let count = 0;
    const points: Attributes[] = [];
    for (const p of found?.dataPoints ?? []) {
      if (!Object.entries(attrs).every(([k, v]) => p.attributes[k] === v)) continue;
      points.push(p.attributes);
      const v: any = p.value;
      if (typeof v === "number") value += v;
      else {
        value += v.sum;
        count += v.count;
      }
    }
    return { value, count, points };
  }

  const eventsOf = (span: ReadableSpan, name: string) => span.events.filter((e) => e.name === name);

  test("a read KILLed mid-query: a resilience.retry event on the active span, resilience.retries counts 1 connection-lost", async () => {
    const { prisma, retries } = client(db.url);
    await prisma.user.count();
    const before = await metric("resilience.retries", { "resilience.error_class": "connection-lost" });
    const { result: rows, span } = await inSpan("killed read", () => killedRead(db, () => prisma.$queryRaw<Array<{ s: unknown }>>`SELECT SLEEP(0.5) AS s`));
    assert.equal(rows.length, 1, "one row");
    assert.equal(retries.length, 1);
    const events = eventsOf(span, "resilience.retry");
    assert.equal(events.length, 1, `events: ${span.events.map((e) => e.name).join(", ") || "none"}`);
    const a = events[0].attributes!;
    assert.equal(a["db.system.name"], "mariadb");
    assert.equal(a["resilience.error_class"], "connection-lost");
    assert.equal(typeof a["error.type"], "string");
    assert.equal(a["resilience.attempt"], 1);
    assert.equal(a["resilience.delay_ms"], retries[0].delayMs);
    assert.equal(a["resilience.counted"], retries[0].counted);
    assert.equal(a["db.operation.name"], "$queryRaw");
    assert.equal(a["db.collection.name"], undefined, "a raw query names no model");
    const after = await metric("resilience.retries", { "resilience.error_class": "connection-lost" });
    assert.equal(after.value - before.value, 1, "one re-run counted");
    assert.ok(after.points.every((p) => p["db.system.name"] === "mariadb" && typeof p["error.type"] === "string"));
    // Nothing secret: no URL, no SQL text, no password in any attribute.
    const text = JSON.stringify(span.events);
    assert.ok(!text.includes("SLEEP") && !text.includes("mysql://") && !text.includes(db.url), text);
  });

  test("COMMIT delivered, its reply lost: resolution committed, on the span and counted by verdict; one row", async () => {
    await withProxy(db, async (proxy, url) => {
      const { prisma, retries } = client(url);
      const key = uniqueKey("otel-lost");
      await prisma.ledger.count();
      await sleep(200);
      const before = await metric("resilience.commit.verifications", { "resilience.verdict": "committed" });
      const lost = proxy.loseReplyTo("COMMIT");
      const { result, span } = await inSpan("lost commit", () => prisma.ledger.create({ data: { key, amount: 1 } }));
      await happened(lost, "a COMMIT");
      assert.equal(result.key, key);
      assert.equal(retries.length, 0, "nothing was re-run");
      assert.equal(await ledgerRows(db, key), 1);
      const events = eventsOf(span, "resilience.commit_verified");
      assert.equal(events.length, 1, `events: ${span.events.map((e) => e.name).join(", ") || "none"}`);
      assert.equal(events[0].attributes!["resilience.verdict"], "committed");
      assert.equal(events[0].attributes!["db.system.name"], "mariadb");
      assert.equal(typeof events[0].attributes!["resilience.verify_ms"], "number");
      const after = await metric("resilience.commit.verifications", { "resilience.verdict": "committed" });
      assert.equal(after.value - before.value, 1);
    });
  });

  test("COMMIT swallowed before the server: verdict not-committed, re-run once with the model named; one row", async () => {
    await withProxy(db, async (proxy, url) => {
      const { prisma, retries } = client(url);
      const key = uniqueKey("otel-swallow");
      await prisma.ledger.count();
      await sleep(200);
      const before = await metric("resilience.commit.verifications", { "resilience.verdict": "not-committed" });
      const swallowed = proxy.swallow("COMMIT");
      const { span } = await inSpan("swallowed commit", () => prisma.ledger.create({ data: { key, amount: 1 } }));
      await happened(swallowed, "a COMMIT");
      assert.equal(retries.length, 1);
      assert.equal(await ledgerRows(db, key), 1);
      assert.deepEqual(
        span.events.map((e) => e.name),
        ["resilience.commit_verified", "resilience.retry"],
      );
      assert.equal(span.events[0].attributes!["resilience.verdict"], "not-committed");
      const retry = span.events[1].attributes!;
      assert.equal(retry["db.operation.name"], "create");
      assert.equal(retry["db.collection.name"], "Ledger");
      assert.equal(retry["resilience.error_class"], "connection-lost");
      const after = await metric("resilience.commit.verifications", { "resilience.verdict": "not-committed" });
      assert.equal(after.value - before.value, 1);
    });
  });

  test("COMMIT reply lost with verification off: OutcomeUnknownError, a resilience.outcome_unknown event, counted once; one row", async () => {
    await withProxy(db, async (proxy, url) => {
      const { prisma, retries } = client(url, { adapter: { verifyCommits: false } });
      const key = uniqueKey("otel-unknown");
      await prisma.ledger.count();
      await sleep(200);
      const before = await metric("resilience.outcomes.unknown", { "resilience.in_flight": "commit" });
      const lost = proxy.loseReplyTo("COMMIT");
      const { result: error, span } = await inSpan("unknown outcome", () => rejectionOf(prisma.ledger.create({ data: { key, amount: 1 } })));
      await happened(lost, "a COMMIT");
      assert.ok(isOutcomeUnknown(error), String(error));
      assert.equal(retries.length, 0);
      assert.equal(await ledgerRows(db, key), 1, "the COMMIT reached the server: one row, not re-run");
      const events = eventsOf(span, "resilience.outcome_unknown");
      assert.equal(events.length, 1, `events: ${span.events.map((e) => e.name).join(", ") || "none"}`);
      const a = events[0].attributes!;
      assert.equal(a["resilience.in_flight"], "commit");
      assert.equal(a["db.operation.name"], "create");
      assert.equal(a["db.collection.name"], "Ledger");
      assert.equal(a["resilience.attempts"], 1);
      assert.equal(a["db.system.name"], "mariadb");
      const after = await metric("resilience.outcomes.unknown", { "resilience.in_flight": "commit" });
      assert.equal(after.value - before.value, 1);
    });
  });

  test("server down (kill -9) when the app starts, a read gives up, the server restarts: the outage, the held waits and the give-up on the span, its duration in the histogram", async () => {
    // No connection before the kill: the read that finds the server down is this span's own.
    const { prisma } = client(db.url, { deadline: 1500 });
    const before = await metric("resilience.outage.duration");
    const { result, span } = await inSpan("outage", async () => {
      await db.kill9();
      try {
        const error = await rejectionOf(prisma.user.count());
        assert.equal(error.name, "DatabaseUnavailableError", String(error));
      } finally {
        await db.start();
      }
      return await prisma.user.count();
    });
    assert.equal(typeof result, "number", "works again once the server is back");
    const names = span.events.map((e) => e.name).join(", ");
    const outages = eventsOf(span, "resilience.outage").map((e) => e.attributes!);
    assert.deepEqual(outages.map((a) => a["resilience.state"]), ["down", "up"], `events: ${names}`);
    assert.equal(outages[0]["resilience.reason"], "connection refused");
    assert.equal(typeof outages[1]["resilience.down_ms"], "number");
    const waits = eventsOf(span, "resilience.outage_wait").map((e) => e.attributes!);
    assert.ok(waits.length >= 1, `events: ${names}`);
    assert.ok(waits.every((a) => typeof a["resilience.waited_ms"] === "number" && typeof a["resilience.outcome"] === "string"));
    assert.ok(eventsOf(span, "resilience.retry").every((e) => e.attributes!["resilience.error_class"] === "unavailable"));
    const gaveUp = eventsOf(span, "resilience.unavailable");
    assert.equal(gaveUp.length, 1, `events: ${names}`);
    assert.equal(gaveUp[0].attributes!["resilience.reason"], "connection refused");
    assert.equal(gaveUp[0].attributes!["db.collection.name"], "User");
    const after = await metric("resilience.outage.duration");
    assert.equal(after.count - before.count, 1, "one outage");
    const seconds = after.value - before.value;
    assert.ok(seconds > 0 && seconds < 60, `down for ${seconds} s`);
  });
});
