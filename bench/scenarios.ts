/**
 * The bench scenarios. Owns: which workers each load needs, the warm-up and measurement
 * windows, and turning counter deltas into the reported figures. Must not: start or stop
 * brokers (run.ts does) or touch sockets (workers do).
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import type { BrokerProcess } from './brokers.js';
import { Fleet, type Member } from './fleet.js';
import { clientIdTemplate, encodeConnect, encodePublish, encodeSubscribe, type MqttVersion } from './packets.js';
import { Counter, type Role, type Target } from './worker-api.js';

export type Transport = 'tcp' | 'tls';

export interface ScenarioContext {
  broker: BrokerProcess;
  transport: Transport;
  target: Target;
  version: MqttVersion;
  warmupMs: number;
  durationMs: number;
  idleConns: number;
}

export interface MetricDef {
  key: string;
  label: string;
  unit: string;
  lowerIsBetter: boolean;
}

export type Details = Record<string, number | string | null>;

export interface Measured {
  metrics: Record<string, number>;
  details: Details;
}

export interface Scenario {
  n: number;
  id: string;
  title: string;
  metrics: MetricDef[];
  /** Bastion's persistence.enabled for this scenario. */
  persistence: boolean;
  run(ctx: ScenarioContext): Promise<Measured>;
}

const SETUP_TIMEOUT_MS = 30_000;
const CPUS = availableParallelism();
const KEEPALIVE_S = 60;
const PAYLOAD_BYTES = 64;

// ---------------------------------------------------------------- sampling

interface Snapshot {
  t: number;
  c: number[];
  brokerCpuMs: number | null;
  genCpuUs: number;
  host: HostCpu | null;
}

interface HostCpu {
  busy: number;
  total: number;
}

function hostCpu(): HostCpu | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    const total = v.reduce((a, b) => a + b, 0);
    const idle = (v[3] ?? 0) + (v[4] ?? 0);
    return { busy: total - idle, total };
  } catch {
    return null;
  }
}

/** Busy CPU of the whole machine over `ms`, in % of one core (200 = both cores of two). */
async function machineLoad(ms: number): Promise<number | null> {
  const a = hostCpu();
  await sleep(ms);
  const b = hostCpu();
  if (a === null || b === null || b.total <= a.total) return null;
  return (100 * CPUS * (b.busy - a.busy)) / (b.total - a.total);
}

/**
 * Before a run (no broker, no generator yet): waits while other work keeps more than
 * `thresholdPct` of a core busy, sampling every 500 ms, for at most `maxMs`. Returns the
 * last load seen and how long it waited, so a report can show which runs shared the machine.
 */
export async function waitForQuietMachine(thresholdPct: number, maxMs: number): Promise<{ loadPct: number | null; waitedMs: number }> {
  const start = performance.now();
  let load = await machineLoad(500);
  while (load !== null && load > thresholdPct && performance.now() - start + 500 <= maxMs) load = await machineLoad(500);
  return { loadPct: round(load, 0), waitedMs: Math.round(performance.now() - start) };
}

function snapshot(fleet: Fleet, broker: BrokerProcess): Snapshot {
  const u = process.cpuUsage();
  return { t: performance.now(), c: Array.from(fleet.c), brokerCpuMs: broker.cpuMs(), genCpuUs: u.user + u.system, host: hostCpu() };
}

/** Figures between two snapshots: per-second rates of every counter and CPU shares (100 = one core). */
class Window {
  readonly seconds: number;
  constructor(
    readonly a: Snapshot,
    readonly b: Snapshot,
    /** Longest time the scenario's progress counter stood still, ms (sampled every 100 ms). */
    readonly longestStallMs: number,
  ) {
    this.seconds = (b.t - a.t) / 1000;
  }
  delta(i: number): number {
    return (this.b.c[i] ?? 0) - (this.a.c[i] ?? 0);
  }
  rate(i: number): number {
    return this.delta(i) / this.seconds;
  }
  brokerCpuPct(): number | null {
    if (this.a.brokerCpuMs === null || this.b.brokerCpuMs === null) return null;
    return (this.b.brokerCpuMs - this.a.brokerCpuMs) / (this.seconds * 10);
  }
  genCpuPct(): number {
    return (this.b.genCpuUs - this.a.genCpuUs) / (this.seconds * 1e4);
  }
  hostBusyPct(): number | null {
    if (this.a.host === null || this.b.host === null) return null;
    const total = this.b.host.total - this.a.host.total;
    return total > 0 ? (100 * (this.b.host.busy - this.a.host.busy)) / total : null;
  }
  /** Broker CPU time per unit of `counter`, in µs. */
  brokerUsPer(counter: number): number | null {
    const pct = this.brokerCpuPct();
    const n = this.delta(counter);
    return pct === null || n <= 0 ? null : (pct * this.seconds * 1e4) / n;
  }
  /**
   * CPU used by neither the broker nor the generator, in % of one core: the kernel's
   * loopback work that no process is charged for, plus whatever else runs on the machine.
   * A high figure means the run competed with other work and its numbers are suspect.
   */
  otherCpuPct(): number | null {
    const host = this.hostBusyPct();
    const broker = this.brokerCpuPct();
    return host === null || broker === null ? null : Math.max(0, host * CPUS - broker - this.genCpuPct());
  }
  cpuDetails(): Details {
    return {
      seconds: round(this.seconds, 2),
      longestStallMs: round(this.longestStallMs),
      brokerCpuPct: round(this.brokerCpuPct(), 1),
      generatorCpuPct: round(this.genCpuPct(), 1),
      otherCpuPct: round(this.otherCpuPct(), 1),
    };
  }
}

export function round(v: number | null, digits = 0): number | null {
  if (v === null || !Number.isFinite(v)) return null;
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Sleeps, but fails at once if the broker dies or a worker fails. */
async function hold(ctx: ScenarioContext, fleet: Fleet, ms: number): Promise<void> {
  const died = ctx.broker.exited.then((d) => {
    throw new Error(`${d}: ${ctx.broker.log()}`);
  });
  died.catch(() => undefined);
  await Promise.race([sleep(ms), died, fleet.failed]);
}

async function ready(ctx: ScenarioContext, fleet: Fleet, members: Member[], what: string, timeoutMs = SETUP_TIMEOUT_MS): Promise<void> {
  const died = ctx.broker.exited.then((d) => {
    throw new Error(`${d}: ${ctx.broker.log()}`);
  });
  died.catch(() => undefined);
  await Promise.race([fleet.ready(members, timeoutMs, what), died]);
}

/** Warm-up, then one measured window; the fleet is stopped whatever happens. */
const PROGRESS_SAMPLE_MS = 100;
/** A run whose counter stood still this long (share of the window) measured a stalled broker, not a rate. */
const MAX_STALL_SHARE = 0.5;

/**
 * Warm-up, then one measured window, watching `progress` every 100 ms: the longest time
 * it stood still is reported, and a broker that stalls for half the window fails the run.
 */
async function measure(ctx: ScenarioContext, fleet: Fleet, start: Member[], progress: number, onMeasure?: (on: boolean) => void): Promise<Window> {
  fleet.start(start);
  await hold(ctx, fleet, ctx.warmupMs);
  onMeasure?.(true);
  const a = snapshot(fleet, ctx.broker);
  let last = fleet.c[progress] ?? 0;
  let lastChange = a.t;
  let longestStall = 0;
  for (;;) {
    const left = a.t + ctx.durationMs - performance.now();
    if (left <= 0) break;
    await hold(ctx, fleet, Math.min(PROGRESS_SAMPLE_MS, left));
    const now = performance.now();
    const value = fleet.c[progress] ?? 0;
    if (value !== last) {
      last = value;
      lastChange = now;
    }
    longestStall = Math.max(longestStall, now - lastChange);
  }
  const b = snapshot(fleet, ctx.broker);
  onMeasure?.(false);
  if (longestStall > ctx.durationMs * MAX_STALL_SHARE) {
    throw new Error(`no progress for ${Math.round(longestStall)} ms of the ${ctx.durationMs} ms window: the broker stalled (${ctx.broker.alive ? 'still running' : 'exited'})`);
  }
  return new Window(a, b, longestStall);
}

const SETTLE_MAX_MS = 2000;
const SETTLE_QUIET_MS = 250;

/** After publishers stop: waits until every expected delivery arrived, or deliveries stop. */
async function settle(fleet: Fleet, expected: () => number): Promise<void> {
  const deadline = performance.now() + SETTLE_MAX_MS;
  let last = -1;
  let quietSince = performance.now();
  while (performance.now() < deadline) {
    const received = fleet.c[Counter.Received] ?? 0;
    if (received >= expected()) return;
    if (received !== last) {
      last = received;
      quietSince = performance.now();
    } else if (performance.now() - quietSince >= SETTLE_QUIET_MS) return;
    await sleep(20);
  }
}

// ---------------------------------------------------------------- roles

let runSerial = 0;

function connects(ctx: ScenarioContext, prefix: string, count: number, durable = false): Uint8Array[] {
  return Array.from({ length: count }, (_, i) =>
    encodeConnect({
      clientId: durable ? `${prefix}${i}` : `${prefix}${runSerial}-${i}`,
      version: ctx.version,
      clean: !durable,
      keepalive: KEEPALIVE_S,
      ...(durable ? { sessionExpiry: 3600 } : {}),
    }),
  );
}

function connectTemplate(ctx: ScenarioContext, prefix: string, keepalive: number): { connectTemplate: Uint8Array; clientIdOffset: number } {
  const buf = encodeConnect({ clientId: clientIdTemplate(prefix), version: ctx.version, clean: true, keepalive });
  return { connectTemplate: buf, clientIdOffset: buf.indexOf(prefix, 0, 'latin1') + prefix.length };
}

interface PubSubShape {
  publishers: number;
  publisherWorkers: number;
  subscribers: number;
  subscriberWorkers: number;
  qos: 0 | 1;
  /** Fan-in: each publisher has its own topic under the filter; fan-out: one topic. */
  topics: 'per-publisher' | 'shared';
  batch: number;
  window: number;
  e2eWindow: number;
  durableSubscriber: boolean;
}

function split(total: number, parts: number): number[] {
  return Array.from({ length: parts }, (_, i) => Math.floor(total / parts) + (i < total % parts ? 1 : 0)).filter((n) => n > 0);
}

async function pubSub(ctx: ScenarioContext, shape: PubSubShape): Promise<Measured> {
  runSerial++;
  const fleet = new Fleet();
  try {
    const base = `bench/${runSerial}`;
    const filter = shape.topics === 'per-publisher' ? `${base}/#` : base;
    const subscribe = encodeSubscribe(filter, shape.qos, ctx.version);
    const subMembers: Member[] = [];
    let s = 0;
    const all = connects(ctx, shape.durableSubscriber ? 'bench-durable-' : 'bs', shape.subscribers, shape.durableSubscriber);
    for (const n of split(shape.subscribers, shape.subscriberWorkers)) {
      subMembers.push(fleet.spawn({ kind: 'subscriber', target: ctx.target, version: ctx.version, connects: all.slice(s, s + n), subscribe, coalesceReads: shape.qos === 0 }));
      s += n;
    }
    await ready(ctx, fleet, subMembers, 'subscribers connecting');

    const pubMembers: Member[] = [];
    let p = 0;
    const pubConnects = connects(ctx, 'bp', shape.publishers);
    for (const n of split(shape.publishers, shape.publisherWorkers)) {
      const publishes = Array.from({ length: n }, (_, i) => encodePublish(shape.topics === 'per-publisher' ? `${base}/${p + i}` : base, PAYLOAD_BYTES, shape.qos, ctx.version));
      const role: Role = {
        kind: 'publisher',
        target: ctx.target,
        version: ctx.version,
        connects: pubConnects.slice(p, p + n),
        publishes,
        qos: shape.qos,
        batch: shape.batch,
        window: shape.window,
        fanout: shape.subscribers,
        e2eWindow: shape.e2eWindow,
      };
      pubMembers.push(fleet.spawn(role));
      p += n;
    }
    await ready(ctx, fleet, pubMembers, 'publishers connecting');

    const w = await measure(ctx, fleet, pubMembers, Counter.Received);
    const expected = (): number => (fleet.c[Counter.Sent] ?? 0) * shape.subscribers;
    const done = await fleet.stop(() => settle(fleet, expected));
    const errors = [...new Set(done.flatMap((d) => d.errors))];
    return {
      metrics: { rate: w.rate(Counter.Received) },
      details: {
        receivedPerSec: round(w.rate(Counter.Received)),
        sentPerSec: round(w.rate(Counter.Sent)),
        pubackPerSec: shape.qos === 1 ? round(w.rate(Counter.Puback)) : null,
        brokerUsPerDelivery: round(w.brokerUsPer(Counter.Received), 2),
        ...w.cpuDetails(),
        // After publishers stopped and deliveries settled: messages never delivered.
        undelivered: expected() - (fleet.c[Counter.Received] ?? 0),
        windowForgiven: fleet.c[Counter.Forgiven] ?? 0,
        windowWaits: w.delta(Counter.GateWaits),
        connectionsLost: w.b.c[Counter.SocketErrors] ?? 0,
        errors: errors.length > 0 ? errors.join('; ') : null,
      },
    };
  } finally {
    await fleet.terminate();
  }
}

// ---------------------------------------------------------------- scenarios

async function latency(ctx: ScenarioContext): Promise<Measured> {
  runSerial++;
  const rate = 10_000;
  const fleet = new Fleet();
  try {
    const topic = `bench/${runSerial}/latency`;
    const sub = fleet.spawn({
      kind: 'latency-subscriber',
      target: ctx.target,
      version: ctx.version,
      connect: connects(ctx, 'bls', 1)[0]!,
      subscribe: encodeSubscribe(topic, 0, ctx.version),
      capacity: Math.ceil((rate * (ctx.durationMs + 1000)) / 1000),
    });
    await ready(ctx, fleet, [sub], 'latency subscriber connecting');
    const pub = fleet.spawn({
      kind: 'latency-publisher',
      target: ctx.target,
      version: ctx.version,
      connect: connects(ctx, 'blp', 1)[0]!,
      publish: encodePublish(topic, PAYLOAD_BYTES, 0, ctx.version),
      rate,
    });
    await ready(ctx, fleet, [pub], 'latency publisher connecting');
    const w = await measure(ctx, fleet, [pub], Counter.Received, (on) => Atomics.store(fleet.c, Counter.Measuring, on ? 1 : 0));
    const done = await fleet.stop();
    const lat = done.find((d) => d.latency !== null)?.latency ?? null;
    if (lat === null || lat.count === 0) throw new Error('no latency samples received');
    const behind = done.reduce((a, d) => a + d.behind, 0);
    return {
      metrics: { p50: lat.p50, p99: lat.p99 },
      details: {
        sentPerSec: round(w.rate(Counter.Sent)),
        receivedPerSec: round(w.rate(Counter.Received)),
        samples: lat.count,
        p90: round(lat.p90),
        p999: round(lat.p999),
        max: round(lat.max),
        mean: round(lat.mean),
        publisherBehind: behind,
        ...w.cpuDetails(),
      },
    };
  } finally {
    await fleet.terminate();
  }
}

async function connectRate(ctx: ScenarioContext): Promise<Measured> {
  const fleet = new Fleet();
  try {
    const tpl = connectTemplate(ctx, 'bench-c-', KEEPALIVE_S);
    const members = [0, 1].map(() =>
      fleet.spawn({ kind: 'connector', target: ctx.target, version: ctx.version, ...tpl, concurrency: ctx.transport === 'tls' ? 6 : 4, maxConnects: 25_000 }),
    );
    await ready(ctx, fleet, members, 'connectors starting');
    const w = await measure(ctx, fleet, members, Counter.Connects);
    const done = await fleet.stop();
    const errors = [...new Set(done.flatMap((d) => d.errors))];
    const brokerUs = w.brokerUsPer(Counter.Connects);
    return {
      metrics: { rate: w.rate(Counter.Connects), ...(brokerUs !== null ? { brokerMsPerConn: brokerUs / 1000 } : {}) },
      details: {
        connects: w.delta(Counter.Connects),
        failures: w.delta(Counter.ConnectFails),
        ...w.cpuDetails(),
        errors: errors.length > 0 ? errors.join('; ') : null,
      },
    };
  } finally {
    await fleet.terminate();
  }
}

async function idleMemory(ctx: ScenarioContext): Promise<Measured> {
  const fleet = new Fleet();
  const warm = new Fleet();
  try {
    const tpl = connectTemplate(ctx, 'bench-i-', 600);
    const concurrency = ctx.transport === 'tls' ? 8 : 16;
    // Warm the broker's code paths and allocators first, so "before" is not a cold process.
    const warmer = warm.spawn({ kind: 'idle', target: ctx.target, version: ctx.version, ...tpl, count: 100, concurrency });
    await ready(ctx, warm, [warmer], 'warm-up connections');
    await warm.stop();
    await sleep(1000);
    const before = ctx.broker.rssKb();
    const t0 = performance.now();
    const members = split(ctx.idleConns, 2).map((count) => fleet.spawn({ kind: 'idle', target: ctx.target, version: ctx.version, ...tpl, count, concurrency }));
    // Full mTLS handshakes on a busy 2-core machine can run at ~100/s: allow for it.
    const openTimeoutMs = SETUP_TIMEOUT_MS + ctx.idleConns * 10;
    const readies = await ready(ctx, fleet, members, `opening ${ctx.idleConns} idle connections`, openTimeoutMs).then(() => Promise.all(members.map((m) => m.ready.promise)));
    const openSeconds = (performance.now() - t0) / 1000;
    const opened = readies.reduce((a, r) => a + r.opened, 0);
    await hold(ctx, fleet, 2000);
    const after = ctx.broker.rssKb();
    const lost = fleet.c[Counter.SocketErrors] ?? 0;
    await fleet.stop();
    if (before === null || after === null) throw new Error('could not read the broker RSS from /proc');
    if (opened === 0) throw new Error('no idle connection could be opened');
    const held = opened - lost;
    return {
      metrics: { kbPerConn: (after - before) / held },
      details: { rssBeforeKb: before, rssAfterKb: after, opened, failed: readies.reduce((a, r) => a + r.failed, 0), droppedWhileIdle: lost, openSeconds: round(openSeconds, 2) },
    };
  } finally {
    await warm.terminate();
    await fleet.terminate();
  }
}

const fanIn = (qos: 0 | 1, durable: boolean): PubSubShape => ({
  publishers: 4,
  publisherWorkers: 2,
  subscribers: 1,
  subscriberWorkers: 1,
  qos,
  topics: 'per-publisher',
  batch: qos === 0 ? 32 : 16,
  window: 64,
  e2eWindow: qos === 0 ? 10_000 : 5_000,
  durableSubscriber: durable,
});

export const SCENARIOS: Scenario[] = [
  {
    n: 1,
    id: 'qos0-fanin',
    title: 'QoS 0 fan-in 4→1',
    metrics: [{ key: 'rate', label: 'received', unit: 'msg/s', lowerIsBetter: false }],
    persistence: false,
    run: (ctx) => pubSub(ctx, fanIn(0, false)),
  },
  {
    n: 2,
    id: 'qos1-fanin',
    title: 'QoS 1 fan-in 4→1',
    metrics: [{ key: 'rate', label: 'received+acked', unit: 'msg/s', lowerIsBetter: false }],
    persistence: false,
    run: (ctx) => pubSub(ctx, fanIn(1, false)),
  },
  {
    n: 3,
    id: 'fanout',
    title: 'QoS 0 fan-out 1→50',
    metrics: [{ key: 'rate', label: 'deliveries', unit: 'msg/s', lowerIsBetter: false }],
    persistence: false,
    run: (ctx) =>
      pubSub(ctx, {
        publishers: 1,
        publisherWorkers: 1,
        subscribers: 50,
        subscriberWorkers: 2,
        qos: 0,
        topics: 'shared',
        batch: 8,
        window: 64,
        e2eWindow: 50 * 400,
        durableSubscriber: false,
      }),
  },
  {
    n: 4,
    id: 'latency',
    title: 'latency @10k msg/s QoS 0',
    metrics: [
      { key: 'p50', label: 'p50', unit: 'µs', lowerIsBetter: true },
      { key: 'p99', label: 'p99', unit: 'µs', lowerIsBetter: true },
    ],
    persistence: false,
    run: latency,
  },
  {
    n: 5,
    id: 'connect-rate',
    title: 'connection setup',
    metrics: [
      { key: 'rate', label: 'CONNECT→CONNACK', unit: 'conn/s', lowerIsBetter: false },
      { key: 'brokerMsPerConn', label: 'broker CPU per connection', unit: 'ms', lowerIsBetter: true },
    ],
    persistence: false,
    run: connectRate,
  },
  {
    n: 6,
    id: 'idle-memory',
    title: 'memory per idle connection',
    metrics: [{ key: 'kbPerConn', label: 'RSS', unit: 'KB/conn', lowerIsBetter: true }],
    persistence: false,
    run: idleMemory,
  },
  {
    n: 7,
    id: 'durable-qos1',
    title: 'durable QoS 1 fan-in 4→1',
    metrics: [{ key: 'rate', label: 'received+acked', unit: 'msg/s', lowerIsBetter: false }],
    persistence: true,
    run: (ctx) => pubSub(ctx, fanIn(1, true)),
  },
];
