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
import { connectRaw, type RawClient } from '../helpers/raw-client.js';

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

  /** A v5 persistent session over raw bytes: nothing is acknowledged unless the test says so. */
  async function rawPersistent(node: TestBroker, clientId: string): Promise<{ client: RawClient; present: boolean }> {
    const { client, connack } = await connectRaw(node.plainPort, 5, clientId, { clean: false, properties: { sessionExpiryInterval: 300 } });
    raws.push(client);
    assert.equal(connack.reasonCode, 0);
    return { client, present: connack.sessionPresent };
  }
  const raws: RawClient[] = [];
  after(() => raws.forEach((r) => r.destroy()));

  it('an outbound QoS 2 exchange moves with its session: PUBLISH unanswered → resent with DUP and the same packet id; PUBREC given → only PUBREL again; delivered once', async () => {
    const pub = await connectMqtt(`mqtt://127.0.0.1:${a.plainPort}`, { clientId: 'q2-pub', protocolVersion: 5 });
    open.push(pub);
    const first = await rawPersistent(a, 'q2-sub');
    first.client.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'q2out/#', qos: 2 }] }, 5);
    await first.client.expect('suback');
    await pub.publishAsync('q2out/one', 'once', { qos: 2 });
    const sent = await first.client.expect('publish');
    assert.equal(sent.qos, 2);
    first.client.destroy();
    // Resumed on the other node: the same PUBLISH again, DUP set, same packet id.
    const second = await rawPersistent(b, 'q2-sub');
    assert.equal(second.present, true);
    const again = await second.client.expect('publish');
    assert.deepEqual([again.topic, String(again.payload), again.messageId, again.dup], ['q2out/one', 'once', sent.messageId, true]);
    second.client.send({ cmd: 'pubrec', messageId: again.messageId }, 5);
    const rel = await second.client.expect('pubrel');
    assert.equal(rel.messageId, sent.messageId);
    second.client.destroy();
    // PUBREC was given: the next node sends only PUBREL, never the message again.
    const third = await rawPersistent(a, 'q2-sub');
    const next = await third.client.next();
    assert.deepEqual([next.cmd, next.messageId], ['pubrel', sent.messageId]);
    third.client.send({ cmd: 'pubcomp', messageId: sent.messageId }, 5);
    // Nothing else was pending: a fresh message is the next thing to arrive.
    await pub.publishAsync('q2out/marker', 'marker', { qos: 2 });
    const marker = await third.client.expect('publish');
    assert.equal(marker.topic, 'q2out/marker');
  });

  it('an inbound QoS 2 message is delivered once when its publisher resends it on another node before PUBREL', async () => {
    const sub = await connectMqtt(`mqtt://127.0.0.1:${b.plainPort}`, { clientId: 'q2in-sub', protocolVersion: 5 });
    open.push(sub);
    const inbox = inboxOf(sub);
    await sub.subscribeAsync('q2in/#', { qos: 2 });
    const first = await rawPersistent(a, 'q2in-pub');
    first.client.send({ cmd: 'publish', topic: 'q2in/x', payload: Buffer.from('exactly once'), qos: 2, messageId: 5, retain: false, dup: false }, 5);
    const rec = await first.client.expect('pubrec');
    assert.equal(rec.messageId, 5);
    first.client.destroy();
    // The publisher did not see PUBREC (as far as it knows): it resends on node b.
    const second = await rawPersistent(b, 'q2in-pub');
    assert.equal(second.present, true);
    second.client.send({ cmd: 'publish', topic: 'q2in/x', payload: Buffer.from('exactly once'), qos: 2, messageId: 5, retain: false, dup: true }, 5);
    assert.equal((await second.client.expect('pubrec')).messageId, 5);
    second.client.send({ cmd: 'pubrel', messageId: 5 }, 5);
    assert.equal((await second.client.expect('pubcomp')).messageId, 5);
    second.client.send({ cmd: 'publish', topic: 'q2in/marker', payload: Buffer.from('m'), qos: 1, messageId: 6, retain: false, dup: false }, 5);
    await second.client.expect('puback');
    await inbox.waitFor((r) => r.some((m) => m.topic === 'q2in/marker'), 5000, 'the marker');
    assert.equal(inbox.items.filter((m) => m.topic === 'q2in/x').length, 1, 'delivered once');
  });

  it('a clean start on another node discards the session the cluster kept', async () => {
    const first = await persistent(a, 'cleaner');
    await first.client.subscribeAsync('clean/#', { qos: 1 });
    await first.client.endAsync();
    const fresh = await connectMqtt(`mqtt://127.0.0.1:${b.plainPort}`, { clientId: 'cleaner', protocolVersion: 5, clean: true });
    open.push(fresh);
    await fresh.endAsync();
    const back = await persistent(a, 'cleaner');
    assert.equal(back.present, false, 'no session after the clean start');
  });
});
