/**
 * MQTT.js against a real Bastion over mutual TLS: MQTT 5 request/response (Response Topic
 * and Correlation Data), user properties, a shared subscription across two clients, and
 * MQTT 3.1.1 publish/subscribe at every QoS.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import type { IClientOptions, MqttClient } from 'mqtt';
import { startTestBroker, type TestBroker } from '../helpers/broker.js';
import { connectMqtt, endQuietly, Inbox, inboxOf } from './support.js';

const WAIT_MS = 5000;
let broker: TestBroker;
const clients: MqttClient[] = [];

async function connect(name: 'client1' | 'client2', opts: IClientOptions = {}): Promise<MqttClient> {
  const files = broker.pki.clients[name]!;
  const client = await connectMqtt(`mqtts://127.0.0.1:${broker.tlsPort}`, {
    ca: readFileSync(broker.pki.caCert),
    cert: readFileSync(files.cert),
    key: readFileSync(files.key),
    rejectUnauthorized: true,
    protocolVersion: 5,
    clientId: `mqttjs-${name}-${randomBytes(4).toString('hex')}`,
    ...opts,
  });
  clients.push(client);
  return client;
}

const uid = (): string => randomBytes(4).toString('hex');

before(async () => {
  broker = await startTestBroker({ clients: ['client1', 'client2'] });
});

after(async () => {
  await Promise.all(clients.map((c) => endQuietly(c)));
  await broker?.stop();
});

describe('MQTT.js, MQTT 5, mutual TLS', () => {
  test('request/response: the Response Topic and Correlation Data make the round trip', async () => {
    const id = uid();
    const requestTopic = `svc/${id}/square`;
    const responder = await connect('client1');
    const requester = await connect('client2');
    // The responder answers on whatever topic each request names, echoing its correlation data.
    responder.on('message', (_topic, payload, packet) => {
      const props = packet.properties ?? {};
      if (props.responseTopic === undefined) return;
      const n = Number(payload.toString());
      responder.publish(props.responseTopic, String(n * n), { qos: 1, properties: { correlationData: props.correlationData! } });
    });
    await responder.subscribeAsync(requestTopic, { qos: 1 });
    const responseTopic = `svc/${id}/responses/${requester.options.clientId}`;
    const responses = inboxOf(requester);
    await requester.subscribeAsync(responseTopic, { qos: 1 });

    const requests = [3, 7, 12].map((n) => ({ n, correlation: randomBytes(8) }));
    await Promise.all(requests.map((r) => requester.publishAsync(requestTopic, String(r.n), { qos: 1, properties: { responseTopic, correlationData: r.correlation } })));
    const got = await responses.waitForCount(requests.length, WAIT_MS, 'three responses');
    for (const r of requests) {
      const match = got.filter((m) => Buffer.compare(m.packet.properties?.correlationData ?? Buffer.alloc(0), r.correlation) === 0);
      assert.equal(match.length, 1, `one response for correlation ${r.correlation.toString('hex')}`);
      assert.equal(match[0]!.topic, responseTopic);
      assert.equal(match[0]!.payload, String(r.n * r.n));
    }
  });

  test('user properties (repeated keys too), content type and payload format arrive as sent', async () => {
    const id = uid();
    const topic = `props/${id}`;
    const sub = await connect('client1');
    const pub = await connect('client2');
    const inbox = inboxOf(sub);
    await sub.subscribeAsync(topic, { qos: 1 });
    await pub.publishAsync(topic, '{"t":21.5}', {
      qos: 1,
      properties: {
        userProperties: { site: 'plant-7', unit: 'celsius', tag: ['a', 'b'] },
        contentType: 'application/json',
        payloadFormatIndicator: true,
      },
    });
    const [m] = await inbox.waitForCount(1, WAIT_MS, 'the message');
    const props = m!.packet.properties ?? {};
    assert.deepEqual({ ...props.userProperties }, { site: 'plant-7', unit: 'celsius', tag: ['a', 'b'] });
    assert.equal(props.contentType, 'application/json');
    assert.equal(props.payloadFormatIndicator, true);
    assert.equal(m!.payload, '{"t":21.5}');
  });

  test('a shared subscription splits messages across two MQTT.js clients, each message once', async () => {
    const id = uid();
    const filter = `$share/workers-${id}/jobs/${id}/#`;
    const workerA = await connect('client1');
    const workerB = await connect('client1');
    const pub = await connect('client2');
    // One inbox for the group, each message labelled with the worker that got it.
    const group = new Inbox<{ worker: 'A' | 'B'; payload: string }>();
    workerA.on('message', (_t, payload) => group.push({ worker: 'A', payload: payload.toString() }));
    workerB.on('message', (_t, payload) => group.push({ worker: 'B', payload: payload.toString() }));
    const grantedA = await workerA.subscribeAsync(filter, { qos: 1 });
    const grantedB = await workerB.subscribeAsync(filter, { qos: 1 });
    assert.deepEqual(
      [...grantedA, ...grantedB].map((g) => g.qos),
      [1, 1],
      `SUBACK codes: ${JSON.stringify([...grantedA, ...grantedB])}`,
    );
    const N = 20;
    for (let i = 0; i < N; i++) await pub.publishAsync(`jobs/${id}/${i}`, `job ${i}`, { qos: 1 });
    await group.waitForCount(N, WAIT_MS, `${N} jobs across both workers`);
    // No duplicate arrives late: a marker published afterwards is the next message the
    // group sees (each worker's messages come in order, and the marker comes last).
    await pub.publishAsync(`jobs/${id}/marker`, 'marker', { qos: 1 });
    await group.waitFor((items) => items.some((m) => m.payload === 'marker'), WAIT_MS, 'the marker');
    const jobs = group.items.filter((m) => m.payload !== 'marker');
    assert.deepEqual(
      jobs.map((m) => m.payload).sort(),
      Array.from({ length: N }, (_, i) => `job ${i}`).sort(),
      'every job exactly once across the group',
    );
    const byA = jobs.filter((m) => m.worker === 'A').length;
    assert.ok(byA > 0 && byA < N, `both workers get work (A ${byA}, B ${N - byA})`);
  });
});

describe('MQTT.js, MQTT 3.1.1, mutual TLS', () => {
  test('publish and subscribe at QoS 0, 1 and 2', async () => {
    const id = uid();
    const sub = await connect('client1', { protocolVersion: 4 });
    const pub = await connect('client2', { protocolVersion: 4 });
    const inbox = inboxOf(sub);
    const granted = await sub.subscribeAsync({ [`v311/${id}/q0`]: { qos: 0 }, [`v311/${id}/q1`]: { qos: 1 }, [`v311/${id}/q2`]: { qos: 2 } });
    assert.deepEqual(
      granted.map((g) => g.qos),
      [0, 1, 2],
    );
    for (const qos of [0, 1, 2] as const) await pub.publishAsync(`v311/${id}/q${qos}`, `v311 qos ${qos}`, { qos });
    const got = await inbox.waitForCount(3, WAIT_MS, 'three messages');
    assert.deepEqual(
      got.map((m) => ({ topic: m.topic, payload: m.payload, qos: m.packet.qos })).sort((a, b) => a.qos - b.qos),
      [0, 1, 2].map((qos) => ({ topic: `v311/${id}/q${qos}`, payload: `v311 qos ${qos}`, qos })),
    );
  });
});
