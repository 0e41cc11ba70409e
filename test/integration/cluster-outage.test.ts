/**
 * Cluster mode fails closed when NATS goes away and recovers when it returns (issue 12):
 * with the only nats-server killed (-9), a new CONNECT is refused with 0x88 (v5) / return
 * code 3 (v3.1.1); a QoS 1 PUBLISH is held back and, past cluster.storeTimeoutSeconds,
 * refused with PUBACK 0x83 (v5) or a closed connection (v3.1.1), never acknowledged as
 * accepted; a QoS 1 PUBLISH made during the outage on a node with a longer store timeout
 * is acknowledged once NATS is back, and delivered exactly once. After the restart, CONNECT
 * and publishing work again.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import mqtt, { type MqttClient } from 'mqtt';
import type { NatsStatusEvent } from '../../src/cluster/nats-connection.js';
import { startTestBroker, type TestBroker } from '../helpers/broker.js';
import { startNatsServer, type SingleNats } from '../helpers/nats-server.js';
import { connectMqtt, endQuietly, Inbox, inboxOf, killAllProcs, nextEvent, pubackCode, withTimeout } from './support.js';

let nats: SingleNats;
let quick: TestBroker;
let patient: TestBroker;
const clients: MqttClient[] = [];

before(async () => {
  nats = await startNatsServer();
  quick = await startTestBroker({ cluster: { nats: { servers: [nats.url] }, nodeId: 'quick', storeTimeoutSeconds: 1.5 } });
  patient = await startTestBroker({ cluster: { nats: { servers: [nats.url] }, nodeId: 'patient', storeTimeoutSeconds: 30 } });
});

after(async () => {
  await Promise.all(clients.map((c) => endQuietly(c)));
  await quick?.stop();
  await patient?.stop();
  await nats?.stop();
  await killAllProcs();
});

async function client(port: number, clientId: string, protocolVersion: 4 | 5): Promise<MqttClient> {
  const c = await connectMqtt(`mqtt://127.0.0.1:${port}`, { clientId, protocolVersion });
  clients.push(c);
  return c;
}

/** The CONNACK code a fresh client gets (MQTT.js rejects a refused CONNECT with the code). */
async function connackCode(port: number, clientId: string, protocolVersion: 4 | 5): Promise<number> {
  const c = mqtt.connect(`mqtt://127.0.0.1:${port}`, { clientId, protocolVersion, reconnectPeriod: 0, connectTimeout: 5000 });
  try {
    return await withTimeout(
      new Promise<number>((resolve) => {
        c.once('connect', (p) => resolve(p.reasonCode ?? p.returnCode ?? 0));
        c.once('error', (err) => resolve((err as Error & { code?: number }).code ?? -1));
      }),
      5000,
      `CONNACK for ${clientId}`,
    );
  } finally {
    c.end(true);
  }
}

function statusOf(b: TestBroker): Inbox<NatsStatusEvent> {
  const inbox = new Inbox<NatsStatusEvent>();
  b.server.cluster!.conn.onStatus((e) => inbox.push(e));
  return inbox;
}

test('NATS down: CONNECT refused (0x88 / 3), QoS 1 held back then refused (0x83 / closed) or, within the timeout, acknowledged after NATS returns and delivered once; service returns with NATS', async () => {
  const v5 = await client(quick.plainPort, 'outage-v5', 5);
  const v3 = await client(quick.plainPort, 'outage-v3', 4);
  const waiting = await client(patient.plainPort, 'outage-waiting', 5);
  const sub = await client(quick.plainPort, 'outage-sub', 5);
  await sub.subscribeAsync('outage/#', { qos: 1 });
  const received = inboxOf(sub);
  // Sanity before the outage: the route works end to end.
  assert.equal(await pubackCode(v5, 'outage/before', 5000), 0);
  await received.waitFor((r) => r.some((m) => m.topic === 'outage/before'), 5000, 'outage/before');

  const quickStatus = statusOf(quick);
  const patientStatus = statusOf(patient);
  await nats.kill();
  await quickStatus.waitFor((e) => e.some((x) => x.type === 'disconnect'), 10000, 'quick node sees NATS go');
  await patientStatus.waitFor((e) => e.some((x) => x.type === 'disconnect'), 10000, 'patient node sees NATS go');

  // New work is refused with the protocol's own codes.
  assert.equal(await connackCode(quick.plainPort, 'outage-new-v5', 5), 0x88);
  assert.equal(await connackCode(quick.plainPort, 'outage-new-v3', 4), 3);

  // A v5 QoS 1 publish is held back, then refused with 0x83 (not acknowledged as accepted).
  const refusedAt = Date.now();
  assert.equal(await pubackCode(v5, 'outage/during', 10000), 0x83);
  assert.ok(Date.now() - refusedAt >= 1000, 'held back for the store timeout before the refusal');
  // A v3.1.1 client has no code for it: its connection is closed, no PUBACK is sent.
  const acks = new Inbox<number>();
  v3.on('packetreceive', (p) => {
    if (p.cmd === 'puback') acks.push(p.messageId ?? 0);
  });
  const closed = nextEvent(v3, 'close', 10000);
  v3.publish('outage/v3', 'x', { qos: 1 });
  await closed;
  assert.equal(acks.items.length, 0, 'no PUBACK for a message that was not stored');
  assert.ok(quick.server.broker.counters.refusedCluster >= 2);

  // On the patient node, a QoS 1 publish waits for NATS (bounded by its 30 s timeout).
  let patientAck: number | null = null;
  const patientAcked = pubackCode(waiting, 'outage/held', 30000).then((code) => (patientAck = code));

  await nats.restart();
  await quickStatus.waitFor((e) => e.some((x) => x.type === 'reconnect'), 15000, 'quick node reconnects');
  await patientStatus.waitFor((e) => e.some((x) => x.type === 'reconnect'), 15000, 'patient node reconnects');

  await patientAcked;
  assert.equal(patientAck, 0, 'the held-back message is acknowledged once stored');
  await received.waitFor((r) => r.some((m) => m.topic === 'outage/held'), 10000, 'the held-back message is delivered');
  // Service is back: new clients connect, publishes are acknowledged and delivered.
  assert.equal(await connackCode(quick.plainPort, 'outage-after', 5), 0);
  assert.equal(await pubackCode(v5, 'outage/after', 10000), 0);
  await received.waitFor((r) => r.some((m) => m.topic === 'outage/after'), 10000, 'outage/after');
  assert.equal(received.items.filter((m) => m.topic === 'outage/held').length, 1, 'the held-back message arrives once');
  assert.equal(received.items.filter((m) => m.topic === 'outage/during').length, 0, 'a refused message is not delivered');
});
