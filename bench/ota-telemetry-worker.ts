/**
 * The telemetry pair of the OTA bench (`--ota`), run in a worker thread so the 50 OTA agents
 * on the main thread do not delay its timers or its reads: one MQTT.js publisher sends
 * QoS 1 messages at a fixed rate (a sequence number and the send time in each 64-byte
 * payload) to one MQTT.js subscriber (QoS 1) through the broker under test, over mutual
 * TLS. Owns: the pacing, the per-message send time and latency, and the summary of any
 * window of send times the coordinator asks for (ota-telemetry.ts). Must not: decide the
 * windows, or touch the broker other than as these two clients.
 *
 * Times are `process.hrtime.bigint()` (one monotonic clock for every thread of the process),
 * kept as milliseconds in doubles, so the coordinator's window edges compare with them.
 */
import { parentPort, workerData } from 'node:worker_threads';
import mqtt, { type MqttClient } from 'mqtt';
import type { TelemetryRequest, TelemetryResponse, TelemetrySetup, WindowSummary } from './ota-telemetry.js';

const setup = workerData as TelemetrySetup;
const port = parentPort!;
const PAYLOAD_BYTES = 64;

const sentAt = new Float64Array(setup.capacity);
const latencyUs = new Float64Array(setup.capacity).fill(Number.NaN);
let sent = 0;
let overflow = 0;
let received = 0;
let duplicates = 0;
let stopped = false;
let failure: string | null = null;

const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;

function post(m: TelemetryResponse): void {
  port.postMessage(m);
}

function fail(what: string): void {
  if (failure !== null || stopped) return;
  failure = what;
  post({ type: 'error', message: what });
}

function connect(role: 'pub' | 'sub'): Promise<MqttClient> {
  const who = role === 'pub' ? setup.publisher : setup.subscriber;
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(`mqtts://${setup.host}:${setup.port}`, {
      ca: setup.ca,
      cert: who.cert,
      key: who.key,
      clientId: who.clientId,
      protocolVersion: 4,
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
      keepalive: 60,
    });
    client.once('connect', () => {
      // From now on a lost connection ends the measurement (no silent reconnect).
      client.on('close', () => fail(`the telemetry ${role === 'pub' ? 'publisher' : 'subscriber'} lost its connection`));
      resolve(client);
    });
    client.on('error', (e) => {
      reject(e);
      fail(`telemetry ${role}: ${e.message}`);
    });
  });
}

function onMessage(_topic: string, payload: Buffer): void {
  const now = process.hrtime.bigint();
  if (payload.length < 16) return;
  const seq = payload.readUInt32LE(0);
  if (seq >= setup.capacity) return;
  received++;
  if (!Number.isNaN(latencyUs[seq]!)) {
    duplicates++;
    return;
  }
  latencyUs[seq] = Number(now - payload.readBigUInt64LE(8)) / 1000;
}

/** Messages due since the start at `rate` a second, at most 10 ms' worth per tick (a stalled timer does not burst). */
function pace(pub: MqttClient): void {
  const startedAt = nowMs();
  let due0 = 0;
  const template = Buffer.alloc(PAYLOAD_BYTES);
  const maxBurst = Math.max(1, Math.ceil(setup.rate / 100));
  const tick = (): void => {
    if (stopped || failure !== null) return;
    let due = Math.floor(((nowMs() - startedAt) * setup.rate) / 1000) - due0;
    if (due > maxBurst) {
      due0 += due - maxBurst;
      due = maxBurst;
    }
    for (let i = 0; i < due; i++) {
      due0++;
      if (sent >= setup.capacity) {
        overflow++;
        continue;
      }
      const payload = Buffer.from(template);
      const seq = sent++;
      payload.writeUInt32LE(seq, 0);
      const t = process.hrtime.bigint();
      payload.writeBigUInt64LE(t, 8);
      sentAt[seq] = Number(t) / 1e6;
      pub.publish(setup.topic, payload, { qos: 1 });
    }
    setTimeout(tick, 1);
  };
  tick();
}

function summary(fromMs: number, toMs: number): WindowSummary {
  const lat: number[] = [];
  let windowSent = 0;
  for (let seq = 0; seq < sent; seq++) {
    const t = sentAt[seq]!;
    if (t < fromMs || t > toMs) continue;
    windowSent++;
    const l = latencyUs[seq]!;
    if (!Number.isNaN(l)) lat.push(l);
  }
  lat.sort((a, b) => a - b);
  const at = (q: number): number | null => (lat.length === 0 ? null : lat[Math.min(lat.length - 1, Math.floor(q * lat.length))]!);
  const mean = lat.length === 0 ? null : lat.reduce((a, b) => a + b, 0) / lat.length;
  return { sent: windowSent, received: lat.length, missing: windowSent - lat.length, p50Us: at(0.5), p90Us: at(0.9), p99Us: at(0.99), maxUs: lat.length === 0 ? null : lat[lat.length - 1]!, meanUs: mean, seconds: (toMs - fromMs) / 1000 };
}

let pub: MqttClient | null = null;
let sub: MqttClient | null = null;

port.on('message', (m: TelemetryRequest) => {
  if (m.type === 'window') {
    post({ type: 'window', id: m.id, summary: summary(m.fromMs, m.toMs), totals: { sent, received, duplicates, overflow }, failure });
  } else if (m.type === 'stop') {
    stopped = true;
    const end = (c: MqttClient | null): Promise<void> => new Promise((r) => (c === null ? r() : c.end(true, {}, () => r())));
    void Promise.all([end(pub), end(sub)]).then(() => post({ type: 'stopped' }));
  }
});

try {
  sub = await connect('sub');
  sub.on('message', onMessage);
  await sub.subscribeAsync(setup.topic, { qos: 1 });
  pub = await connect('pub');
  pace(pub);
  post({ type: 'ready' });
} catch (e) {
  fail(`telemetry did not start: ${(e as Error).message}`);
}
