/**
 * Durability across `kill -9`: the broker runs as a child process with SQLite
 * persistence; persistent subscribers (QoS 1 over MQTT 3.1.1, QoS 2 over MQTT 5) go
 * offline, a publisher gets every PUBACK / PUBCOMP for N messages, the broker is killed
 * with SIGKILL and restarted on the same data directory and port. Every acknowledged
 * message must reach its subscriber (QoS 1: at least once; QoS 2: exactly once), and
 * subscriptions and retained messages survive too.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { IConnackPacket, IClientOptions, MqttClient } from 'mqtt';
import { connectMqtt, endQuietly, freePort, Inbox, killAllProcs, startBrokerProcess, writePlainConfig, type BrokerProcess, type Received } from './support.js';

const N = 200;
const BATCH = 50; // stays under the broker's Receive Maximum (100)
const WAIT_MS = 15000;

const dir = mkdtempSync(join(tmpdir(), 'bastion-durability-'));
const clients: MqttClient[] = [];

after(async () => {
  await Promise.all(clients.map((c) => endQuietly(c)));
  await killAllProcs();
  rmSync(dir, { recursive: true, force: true });
});


async function connect(port: number, opts: IClientOptions): Promise<{ client: MqttClient; connack: IConnackPacket; inbox: Inbox<Received> }> {
  const inbox = new Inbox<Received>();
  let connack: IConnackPacket | undefined;
  const client = await connectMqtt(`mqtt://127.0.0.1:${port}`, opts, 5000, (c) => {
    c.once('connect', (p) => (connack = p));
    c.on('message', (topic, payload, packet) => inbox.push({ topic, payload: payload.toString(), packet }));
  });
  clients.push(client);
  return { client, connack: connack!, inbox };
}

/** Publishes `n` messages in batches, resolving when every one is acknowledged. */
async function publishAll(client: MqttClient, topic: string, qos: 1 | 2, n: number): Promise<void> {
  for (let start = 0; start < n; start += BATCH) {
    const batch: Array<Promise<unknown>> = [];
    for (let i = start; i < Math.min(n, start + BATCH); i++) batch.push(client.publishAsync(topic, `msg-${i}`, { qos }));
    await Promise.all(batch);
  }
}

const SUB_Q1 = { clientId: 'durable-q1', protocolVersion: 4 as const, clean: false };
const SUB_Q2 = { clientId: 'durable-q2', protocolVersion: 5 as const, clean: false, properties: { sessionExpiryInterval: 3600 } };

test(`kill -9 loses no acknowledged message: ${N} QoS 1 and ${N} QoS 2, subscriptions and retained`, { timeout: 60000 }, async () => {
  const port = await freePort();
  const config = writePlainConfig(dir, port, ['persistence:', '  enabled: true']);
  let broker: BrokerProcess = await startBrokerProcess(['-c', config]);
  assert.equal(broker.port, port);

  // Persistent subscribers subscribe, then go offline.
  for (const [opts, topic, qos] of [
    [SUB_Q1, 'dur/q1', 1],
    [SUB_Q2, 'dur/q2', 2],
  ] as const) {
    const { client, connack } = await connect(port, opts);
    assert.equal(connack.sessionPresent, false);
    const granted = await client.subscribeAsync(topic, { qos });
    assert.equal(granted[0]!.qos, qos);
    await client.endAsync();
  }

  // Every acknowledged message is the broker's promise; then the broker dies hard.
  const { client: pub } = await connect(port, { clientId: 'durable-pub', protocolVersion: 5 });
  await pub.publishAsync('dur/retained', 'retained before the crash', { qos: 1, retain: true });
  await publishAll(pub, 'dur/q1', 1, N);
  await publishAll(pub, 'dur/q2', 2, N);
  broker.proc.kill('SIGKILL');
  const killed = await broker.proc.waitExit(5000);
  assert.equal(killed.signal, 'SIGKILL');
  await endQuietly(pub);

  broker = await startBrokerProcess(['-c', config]);
  assert.equal(broker.port, port);

  // Published after the restart while the subscribers are still offline: it reaches them
  // only if their subscriptions survived. It is also the last message of each queue, so
  // once it arrives any duplicate of an earlier message would have arrived before it.
  const { client: pub2 } = await connect(port, { clientId: 'durable-pub-2', protocolVersion: 5 });
  await pub2.publishAsync('dur/q1', 'marker', { qos: 1 });
  await pub2.publishAsync('dur/q2', 'marker', { qos: 2 });

  const q1 = await connect(port, SUB_Q1);
  assert.equal(q1.connack.sessionPresent, true, 'the QoS 1 session survived');
  const got1 = await q1.inbox.waitFor((items) => items.some((m) => m.payload === 'marker'), WAIT_MS, 'QoS 1 messages up to the marker');
  const ids1 = new Set(got1.filter((m) => m.payload !== 'marker').map((m) => m.payload));
  const missing1 = Array.from({ length: N }, (_, i) => `msg-${i}`).filter((id) => !ids1.has(id));
  assert.deepEqual(missing1, [], `QoS 1: ${missing1.length} acknowledged messages lost`);
  assert.ok(got1.every((m) => m.topic === 'dur/q1' && m.packet.qos === 1));

  const q2 = await connect(port, SUB_Q2);
  assert.equal(q2.connack.sessionPresent, true, 'the QoS 2 session survived');
  const got2 = await q2.inbox.waitFor((items) => items.some((m) => m.payload === 'marker'), WAIT_MS, 'QoS 2 messages up to the marker');
  const counts = new Map<string, number>();
  for (const m of got2) counts.set(m.payload, (counts.get(m.payload) ?? 0) + 1);
  const wrong = Array.from({ length: N }, (_, i) => `msg-${i}`).filter((id) => counts.get(id) !== 1);
  assert.deepEqual(
    wrong.map((id) => `${id}×${counts.get(id) ?? 0}`),
    [],
    'QoS 2: every acknowledged message exactly once',
  );
  assert.equal(got2.length, N + 1, 'QoS 2: nothing else arrived');
  assert.deepEqual(
    got2.map((m) => m.payload),
    [...Array.from({ length: N }, (_, i) => `msg-${i}`), 'marker'],
    'QoS 2: in publication order',
  );

  // A retained message set before the crash greets a brand-new subscriber.
  const fresh = await connect(port, { clientId: 'durable-fresh', protocolVersion: 5 });
  await fresh.client.subscribeAsync('dur/retained', { qos: 1 });
  const [retained] = await fresh.inbox.waitForCount(1, WAIT_MS, 'the retained message');
  assert.equal(retained!.payload, 'retained before the crash');
  assert.equal(retained!.packet.retain, true);

  for (const c of [pub2, q1.client, q2.client, fresh.client]) await endQuietly(c);
  broker.proc.kill('SIGTERM');
  assert.equal((await broker.proc.waitExit(10000)).code, 0);
});
