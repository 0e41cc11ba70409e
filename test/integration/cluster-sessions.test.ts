/**
 * Persistent sessions in a cluster (issue 12): a session left on one node resumes on any
 * other with what it missed (replayed from the cluster's stream, in order, once), its
 * subscriptions and its QoS 2 state; a clean start discards it cluster-wide.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { MqttClient } from 'mqtt';
import { startTestBroker, type TestBroker } from '../helpers/broker.js';
import { startNatsServer, type SingleNats } from '../helpers/nats-server.js';
import { connectMqtt, endQuietly, inboxOf, killAllProcs, type Received } from './support.js';

describe('cluster: persistent sessions move between nodes', () => {
  let nats: SingleNats;
  let a: TestBroker;
  let b: TestBroker;
  const open: MqttClient[] = [];

  before(async () => {
    nats = await startNatsServer();
    a = await startTestBroker({ cluster: { nats: { servers: [nats.url] }, nodeId: 'sess-a' } });
    b = await startTestBroker({ cluster: { nats: { servers: [nats.url] }, nodeId: 'sess-b' } });
  });

  after(async () => {
    await Promise.all(open.map((c) => endQuietly(c)));
    await a?.stop();
    await b?.stop();
    await nats?.stop();
    await killAllProcs();
  });

  async function persistent(node: TestBroker, clientId: string, onMessage?: (r: Received) => void): Promise<{ client: MqttClient; present: boolean }> {
    let present = false;
    const client = await connectMqtt(`mqtt://127.0.0.1:${node.plainPort}`, { clientId, protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 300 } }, 5000, (c) => {
      c.once('connect', (p) => (present = p.sessionPresent));
      if (onMessage !== undefined) c.on('message', (topic, payload, packet) => onMessage({ topic, payload: payload.toString(), packet }));
    });
    open.push(client);
    return { client, present };
  }

  it('messages published while a session is away are delivered, in order and once, on whichever node it resumes', async () => {
    const first = await persistent(a, 'roamer');
    assert.equal(first.present, false);
    await first.client.subscribeAsync('roam/#', { qos: 1 });
    await first.client.endAsync();
    const pub = await connectMqtt(`mqtt://127.0.0.1:${b.plainPort}`, { clientId: 'roam-pub', protocolVersion: 5 });
    open.push(pub);
    for (let i = 0; i < 5; i++) await pub.publishAsync(`roam/${i}`, `m${i}`, { qos: 1 });
    const got: Received[] = [];
    const second = await persistent(b, 'roamer', (r) => got.push(r));
    assert.equal(second.present, true, 'the session is present on the other node');
    const inbox = inboxOf(second.client);
    await pub.publishAsync('roam/live', 'live', { qos: 1 });
    await inbox.waitFor((r) => r.some((m) => m.topic === 'roam/live'), 5000, 'live message after the resume');
    const all = [...got, ...inbox.items.filter((m) => !got.includes(m))];
    assert.deepEqual([...new Set(got.map((m) => m.payload))], ['m0', 'm1', 'm2', 'm3', 'm4', 'live']);
    assert.equal(got.length, 6, `each once: ${all.map((m) => m.payload).join(',')}`);
  });
});
