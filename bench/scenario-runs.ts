/**
 * The loads the bench scenarios run. Owns: which workers each load needs (publishers and
 * subscribers, latency, connection setup, idle connections) and turning counter deltas
 * into the reported figures. Must not: start or stop brokers (run.ts does) or touch
 * sockets (workers do).
 */
import { Fleet, type Member } from './fleet.js';
import { hold, measure, ready, settle, SETUP_TIMEOUT_MS } from './measure.js';
import { clientIdTemplate, encodeConnect, encodePublish, encodeSubscribe } from './packets.js';
import { round } from './round.js';
import type { Measured, ScenarioContext } from './scenario-api.js';
import { sleep } from './sleep.js';
import { Counter, type Role } from './worker-api.js';

const KEEPALIVE_S = 60;
const PAYLOAD_BYTES = 64;

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

export interface PubSubShape {
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

export async function pubSub(ctx: ScenarioContext, shape: PubSubShape): Promise<Measured> {
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
    const lost = w.b.c[Counter.SocketErrors] ?? 0;
    const undelivered = expected() - (fleet.c[Counter.Received] ?? 0);
    return {
      ...invalidWhen([
        [errors.length > 0, `the broker refused or failed messages: ${errors.join('; ')}`],
        [lost > 0, `${lost} connection(s) lost during the run`],
        // QoS 1 is acknowledged: a message the broker took and never delivered is a loss, not a rate.
        [shape.qos === 1 && undelivered > 0, `${undelivered} QoS 1 message(s) acknowledged and never delivered`],
      ]),
      metrics: { rate: w.rate(Counter.Received) },
      details: {
        receivedPerSec: round(w.rate(Counter.Received)),
        sentPerSec: round(w.rate(Counter.Sent)),
        pubackPerSec: shape.qos === 1 ? round(w.rate(Counter.Puback)) : null,
        brokerUsPerDelivery: round(w.brokerUsPer(Counter.Received), 2),
        ...w.cpuDetails(),
        // After publishers stopped and deliveries settled: messages never delivered.
        undelivered,
        windowForgiven: fleet.c[Counter.Forgiven] ?? 0,
        windowWaits: w.delta(Counter.GateWaits),
        connectionsLost: lost,
        errors: errors.length > 0 ? errors.join('; ') : null,
      },
    };
  } finally {
    await fleet.terminate();
  }
}

// ---------------------------------------------------------------- preconditions

/** A latency run must offer at least this share of its rate... */
const MIN_OFFERED = 0.98;
/** ...and deliver at least this share of what it offered. */
const MIN_DELIVERED = 0.99;

/** `{ invalid: reasons }` for the conditions that hold, `{}` when none does. */
export function invalidWhen(checks: ReadonlyArray<readonly [boolean, string]>): { invalid?: string } {
  const reasons = checks.filter(([failed]) => failed).map(([, why]) => why);
  return reasons.length > 0 ? { invalid: reasons.join('; ') } : {};
}

// ---------------------------------------------------------------- scenarios

export async function latency(ctx: ScenarioContext): Promise<Measured> {
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
      // Cluster runs: another node than the subscriber's, so every message crosses NATS between nodes.
      target: ctx.publisherTarget ?? ctx.target,
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
    const sent = w.rate(Counter.Sent);
    const received = w.rate(Counter.Received);
    return {
      ...invalidWhen([
        // A latency at a lower rate than asked for is another measurement: say so, do not compare it.
        [sent < rate * MIN_OFFERED, `the generator offered ${Math.round(sent)} of ${rate} msg/s`],
        [received < sent * MIN_DELIVERED, `${Math.round(received)} of ${Math.round(sent)} msg/s offered were delivered`],
      ]),
      metrics: { p50: lat.p50, p99: lat.p99, p999: lat.p999 },
      details: {
        sentPerSec: round(sent),
        receivedPerSec: round(received),
        samples: lat.count,
        p90: round(lat.p90),
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

export interface ConnectRateOptions {
  /** Every lane offers its last TLS session ticket, as a reconnecting device does. */
  resume?: boolean;
  /** TLS: the client's key-exchange groups (`ecdhCurve`); default Node's. */
  groups?: string;
  /** TLS: count handshake bytes on each connection's TCP socket (reported per connection). */
  countBytes?: boolean;
}

/** `{ 'TLSv1.3 X25519': 120, … }` summed over the workers, as `TLSv1.3 X25519=120, …` (most first). */
function negotiatedGroups(done: { tlsGroups: Record<string, number> }[]): string | null {
  const sum = new Map<string, number>();
  for (const d of done) for (const [k, n] of Object.entries(d.tlsGroups)) sum.set(k, (sum.get(k) ?? 0) + n);
  if (sum.size === 0) return null;
  return [...sum].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k}=${n}`).join(', ');
}

export async function connectRate(ctx: ScenarioContext, opts: ConnectRateOptions = {}): Promise<Measured> {
  const fleet = new Fleet();
  try {
    const tpl = connectTemplate(ctx, 'bench-c-', KEEPALIVE_S);
    const tlsMaterial = ctx.target.tls;
    const target = tlsMaterial !== null && opts.groups !== undefined ? { ...ctx.target, tls: { ...tlsMaterial, groups: opts.groups } } : ctx.target;
    const countBytes = opts.countBytes === true && tlsMaterial !== null;
    const members = [0, 1].map(() =>
      fleet.spawn({ kind: 'connector', target, version: ctx.version, ...tpl, concurrency: ctx.transport === 'tls' ? 6 : 4, maxConnects: 25_000, resume: opts.resume === true, countBytes }),
    );
    await ready(ctx, fleet, members, 'connectors starting');
    const w = await measure(ctx, fleet, members, Counter.Connects);
    const done = await fleet.stop();
    const errors = [...new Set(done.flatMap((d) => d.errors))];
    const brokerUs = w.brokerUsPer(Counter.Connects);
    const connects = w.delta(Counter.Connects);
    const perConn = (counter: number): number | null => (connects > 0 ? w.delta(counter) / connects : null);
    const failures = w.delta(Counter.ConnectFails);
    const bytesOut = countBytes ? perConn(Counter.HandshakeBytesOut) : null;
    const bytesIn = countBytes ? perConn(Counter.HandshakeBytesIn) : null;
    return {
      ...invalidWhen([[failures > 0, `${failures} connection attempt(s) refused or failed`]]),
      metrics: {
        rate: w.rate(Counter.Connects),
        ...(brokerUs !== null ? { brokerMsPerConn: brokerUs / 1000 } : {}),
        ...(bytesOut !== null ? { bytesOut } : {}),
        ...(bytesIn !== null ? { bytesIn } : {}),
      },
      details: {
        connects,
        resumed: w.delta(Counter.Resumed),
        failures,
        clientGroups: tlsMaterial === null ? null : (opts.groups ?? 'node default'),
        // Over the whole run (warm-up included), from getEphemeralKeyInfo() on each client.
        negotiated: negotiatedGroups(done),
        // The client sent a key share for its first group only; another group means a HelloRetryRequest.
        helloRetries: opts.groups !== undefined && tlsMaterial !== null ? w.delta(Counter.GroupFallbacks) : null,
        clientHelloBytes: countBytes ? round(perConn(Counter.HelloBytesOut)) : null,
        serverFlightBytes: countBytes ? round(perConn(Counter.ServerFlightBytesIn)) : null,
        generatorMsPerConn: connects > 0 ? round((w.b.genCpuUs - w.a.genCpuUs) / connects / 1000, 3) : null,
        ...w.cpuDetails(),
        errors: errors.length > 0 ? errors.join('; ') : null,
      },
    };
  } finally {
    await fleet.terminate();
  }
}

export async function idleMemory(ctx: ScenarioContext): Promise<Measured> {
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
    const failed = readies.reduce((a, r) => a + r.failed, 0);
    return {
      ...invalidWhen([
        [opened < ctx.idleConns, `opened ${opened} of ${ctx.idleConns} connections (${failed} refused or failed)`],
        [lost > 0, `${lost} connection(s) dropped while idle`],
      ]),
      metrics: { kbPerConn: (after - before) / held },
      details: { rssBeforeKb: before, rssAfterKb: after, opened, failed, droppedWhileIdle: lost, openSeconds: round(openSeconds, 2) },
    };
  } finally {
    await warm.terminate();
    await fleet.terminate();
  }
}
