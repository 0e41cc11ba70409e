/**
 * Cluster mode (issue 12) end to end: one real nats-server 2.9.10 with JetStream on
 * loopback and three in-process Bastion nodes (a, b, c) joined through it, driven by real
 * MQTT clients on their plaintext listeners: MQTT.js, mosquitto_pub/mosquitto_sub and
 * Python paho-mqtt. Covers cross-node publish/subscribe at QoS 0/1/2 with `+` and `#`
 * (exactly once at QoS 2 despite overlapping filters), topic levels that need escaping
 * in NATS subjects, the `$` rule and node-local `$SYS`, retained messages set and cleared
 * on different nodes, `$share` groups balanced across nodes, session takeover across
 * nodes (DISCONNECT 0x8E), no-local, v5 properties, and the refusal of a topic or filter
 * too long for a NATS subject (PUBACK 0x90, SUBACK 0x8F), a SUBACK that comes only once
 * NATS has the node's interest (a message published on another node right after it
 * arrives), and packets sent right after CONNECT (before CONNACK) waiting for the claim.
 *
 * Synchronisation without sleeps: every wait is on an event (a message, an
 * acknowledgement, a process's output) with a timeout. "Nothing arrived" is proven by a
 * marker sent afterwards along the same path: once the marker is in, an earlier message
 * would have been too.
 *
 * Node a publishes `$SYS` every second; b and c have `$SYS` off, so a `$SYS/#` subscriber
 * on b could only ever see a's values by way of the cluster. The authorization is the
 * helper's allow-all plus the right to subscribe to `$SYS/#` (allow-all never grants `$`).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import mqtt, { type IClientOptions, type IClientPublishOptions, type IDisconnectPacket, type IPublishPacket, type MqttClient, type Packet } from 'mqtt';
import { startTestBroker, type TestBroker } from '../helpers/broker.js';
import { startNatsServer, type SingleNats } from '../helpers/nats-server.js';
import { RawClient } from '../helpers/raw-client.js';
import { Inbox, killAllProcs, Proc, run, withTimeout } from './support.js';

const WAIT = 5000;
const PYTHON = '/usr/bin/python3';
const MOSQUITTO_SUB = '/usr/bin/mosquitto_sub';
const MOSQUITTO_PUB = '/usr/bin/mosquitto_pub';

/** Allow-all, plus reading `$SYS/#` (for the node-local `$SYS` test). */
const AUTHZ = {
  roles: {
    everything: {
      rules: [
        { effect: 'allow', action: 'all', topic: '#' },
        { effect: 'allow', action: 'subscribe', topic: '$SYS/#' },
      ],
    },
  },
  bindings: [{ role: 'everything', attribute: 'clientId', value: '*' }],
};

interface Got {
  topic: string;
  payload: string;
  packet: IPublishPacket;
}

/** An MQTT.js client, the node it is connected to, and everything it received. */
interface Client {
  c: MqttClient;
  node: TestBroker;
  inbox: Inbox<Got>;
}

let nats: SingleNats;
let nodeA: TestBroker;
let nodeB: TestBroker;
let nodeC: TestBroker;
const open: MqttClient[] = [];

const uid = (): string => randomBytes(4).toString('hex');

async function connect(node: TestBroker, opts: IClientOptions = {}): Promise<Client> {
  const c = await withTimeout(
    mqtt.connectAsync(`mqtt://127.0.0.1:${node.plainPort}`, { protocolVersion: 5, clientId: `cr-${uid()}`, reconnectPeriod: 0, connectTimeout: WAIT, ...opts }),
    WAIT,
    `CONNACK from :${node.plainPort}`,
  );
  open.push(c);
  // No Nagle: a SUBSCRIBE right after an acknowledgement would otherwise wait for a delayed ACK (40 ms).
  if (c.stream instanceof net.Socket) c.stream.setNoDelay(true);
  const inbox = new Inbox<Got>();
  c.on('message', (topic, payload, packet) => inbox.push({ topic, payload: payload.toString('utf8'), packet }));
  return { c, node, inbox };
}

/** Closes a client now (a wide subscription left open would route everything to its node, hiding what later tests look for). */
async function end(s: Client): Promise<void> {
  await withTimeout(s.c.endAsync(), WAIT, 'client end');
  open.splice(open.indexOf(s.c), 1);
}

/** Subscribes and returns the granted codes (a refusal is a code too, not an exception). */
async function subscribe(c: MqttClient, filters: string | string[], opts: { qos: 0 | 1 | 2; nl?: boolean }): Promise<number[]> {
  const list = Array.isArray(filters) ? filters : [filters];
  const suback = new Promise<number[]>((resolvePromise) => {
    const on = (p: Packet): void => {
      if (p.cmd !== 'suback') return;
      c.off('packetreceive', on);
      resolvePromise(p.granted.map((g) => (typeof g === 'number' ? g : Number.NaN)));
    };
    c.on('packetreceive', on);
  });
  c.subscribe(list, opts, () => undefined);
  return withTimeout(suback, WAIT, `SUBACK for ${list.join(', ')}`);
}

/** Subscribes and checks every filter was granted `opts.qos` (SUBACK comes once the cluster routes them). */
async function subscribeOk(s: Client, filters: string | string[], opts: { qos: 0 | 1 | 2; nl?: boolean }): Promise<void> {
  const list = Array.isArray(filters) ? filters : [filters];
  assert.deepEqual(await subscribe(s.c, list, opts), list.map(() => opts.qos), `SUBACK for ${list.join(', ')}`);
}

/** Publishes and waits for the end of its flow (PUBACK / PUBCOMP; QoS 0: written). */
async function publish(c: MqttClient, topic: string, payload: string | Buffer, opts: IClientPublishOptions): Promise<void> {
  await withTimeout(c.publishAsync(topic, payload, opts), WAIT, `acknowledgement of a publish to ${topic.slice(0, 80)}`);
}

/** Publishes at QoS 1 and resolves with the PUBACK's reason code (MQTT.js rejects a refusal; the code is on the packet). */
function pubackCode(c: MqttClient, topic: string): Promise<number> {
  const ack = new Promise<number>((resolvePromise) => {
    const on = (p: Packet): void => {
      if (p.cmd !== 'puback') return;
      c.off('packetreceive', on);
      resolvePromise(p.reasonCode ?? 0);
    };
    c.on('packetreceive', on);
  });
  c.publish(topic, 'x', { qos: 1 }, () => undefined);
  return withTimeout(ack, WAIT, 'PUBACK');
}

/** Waits for a message on exactly `topic` with `payload`. */
function waitMessage(inbox: Inbox<Got>, topic: string, payload: string): Promise<Got[]> {
  return inbox.waitFor((items) => items.some((m) => m.topic === topic && m.payload === payload), WAIT, `${payload} on ${topic}`);
}

function topicsOf(inbox: Inbox<Got>): string[] {
  return inbox.items.map((m) => m.topic);
}

/** How many times each payload arrived. */
function countsOf(items: Got[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const m of items) counts.set(m.payload, (counts.get(m.payload) ?? 0) + 1);
  return counts;
}

before(async () => {
  nats = await startNatsServer();
  const cluster = (nodeId: string): Record<string, unknown> => ({ nats: { servers: [nats.url] }, nodeId });
  // Three nodes joining at once: each makes sure the stream and buckets exist.
  [nodeA, nodeB, nodeC] = await Promise.all([
    startTestBroker({ cluster: cluster('a'), authz: AUTHZ, sys: { intervalSeconds: 1 } }),
    startTestBroker({ cluster: cluster('b'), authz: AUTHZ, sys: { intervalSeconds: 0 } }),
    startTestBroker({ cluster: cluster('c'), authz: AUTHZ, sys: { intervalSeconds: 0 } }),
  ]);
});

after(async () => {
  await Promise.all(open.map((c) => withTimeout(c.endAsync(true), 1000, 'client end').catch(() => undefined)));
  await Promise.all([nodeA, nodeB, nodeC].map((n) => n?.stop()));
  await killAllProcs();
  await nats?.stop();
});

describe('cluster routing: three nodes over one nats-server', () => {
  test('QoS 0, 1 and 2 across nodes with + and # filters (a/# matches a itself), and exactly once at QoS 2 despite overlapping filters on one node', async () => {
    const base = `route/${uid()}`;
    const sub = await connect(nodeB);
    await subscribeOk(sub, [`${base}/+/x`, `${base}/h/#`], { qos: 2 });
    const pub = await connect(nodeA, { protocolVersion: 4 });
    for (const qos of [0, 1, 2] as const) await publish(pub.c, `${base}/p${qos}/x`, `q${qos}`, { qos });
    // `#` matches its parent level, and several levels below.
    await publish(pub.c, `${base}/h`, 'parent', { qos: 1 });
    await publish(pub.c, `${base}/h/1/2/3`, 'deep', { qos: 1 });
    // Not matched by either filter: `+` is one level only.
    await publish(pub.c, `${base}/p/y/x`, 'two levels', { qos: 1 });
    await publish(pub.c, `${base}/end/x`, 'marker', { qos: 1 });
    await waitMessage(sub.inbox, `${base}/end/x`, 'marker');
    assert.deepEqual(
      sub.inbox.items.map((m) => ({ topic: m.topic, payload: m.payload, qos: m.packet.qos })).sort((x, y) => x.payload.localeCompare(y.payload)),
      [
        { topic: `${base}/h/1/2/3`, payload: 'deep', qos: 1 },
        { topic: `${base}/end/x`, payload: 'marker', qos: 1 },
        { topic: `${base}/h`, payload: 'parent', qos: 1 },
        { topic: `${base}/p0/x`, payload: 'q0', qos: 0 },
        { topic: `${base}/p1/x`, payload: 'q1', qos: 1 },
        { topic: `${base}/p2/x`, payload: 'q2', qos: 2 },
      ],
    );

    // Exactly once at QoS 2: two sessions on b with overlapping filters (two NATS
    // subscriptions on that node receive each message), one on a (the ingress node, which
    // also receives its own publish back from NATS) and one on c.
    const once = `${base}/once`;
    const plus = await connect(nodeB);
    const hash = await connect(nodeB);
    const onA = await connect(nodeA);
    const onC = await connect(nodeC);
    await subscribeOk(plus, `${once}/+`, { qos: 2 });
    await subscribeOk(hash, `${once}/#`, { qos: 2 });
    await subscribeOk(onA, [`${once}/+`, `${once}/#`], { qos: 2 });
    await subscribeOk(onC, `${once}/#`, { qos: 2 });
    const n = 10;
    for (let i = 0; i < n; i++) await publish(pub.c, `${once}/k`, `m${i}`, { qos: 2 });
    // The marker comes after every message above on the same path: a late duplicate would be in first.
    await publish(pub.c, `${once}/k`, 'end', { qos: 2 });
    for (const [name, s] of [['b +', plus], ['b #', hash], ['a', onA], ['c', onC]] as const) {
      await waitMessage(s.inbox, `${once}/k`, 'end');
      const counts = countsOf(s.inbox.items);
      assert.equal(s.inbox.items.length, n + 1, `${name}: ${JSON.stringify([...counts])}`);
      for (let i = 0; i < n; i++) assert.equal(counts.get(`m${i}`), 1, `${name}: m${i} arrived ${counts.get(`m${i}`) ?? 0} times`);
      assert.ok(s.inbox.items.every((m) => m.packet.qos === 2), `${name}: every delivery at QoS 2`);
    }
  });

  test('topic levels that need escaping travel intact; a level that is literally * or > is no wildcard', async () => {
    const base = `esc-${uid()}`;
    const topics = [
      `${base}/a.b/c`,
      `${base}/x/*/y`,
      `${base}/gt/>`,
      `${base}/with space/ok`,
      `${base}/é/☃`,
      `${base}/a//b`,
      `/${base}/lead`,
      `${base}/trail/`,
      `${base}/=3D/$/%`,
    ];
    const wide = await connect(nodeB);
    await subscribeOk(wide, [`${base}/#`, `+/${base}/+`], { qos: 1 });
    // One exact subscriber per topic: the exact filter's subject must select the topic's own subject.
    const exact = await connect(nodeB);
    await subscribeOk(exact, topics, { qos: 1 });
    const star = await connect(nodeC);
    await subscribeOk(star, [`${base}/x/*/y`, `${base}/gt/>`], { qos: 1 });
    const pub = await connect(nodeA);
    // What a literal `*` or `>` would match if it became a NATS wildcard: published first.
    await publish(pub.c, `${base}/x/q/y`, 'not for star', { qos: 1 });
    await publish(pub.c, `${base}/gt/z/w`, 'not for gt', { qos: 1 });
    for (const t of topics) await publish(pub.c, t, `to ${t}`, { qos: 1 });

    for (const t of topics) await waitMessage(exact.inbox, t, `to ${t}`);
    assert.deepEqual(topicsOf(exact.inbox).sort(), [...topics].sort(), 'the exact subscriber got each topic once, and nothing else');
    const wideWant = [...topics, `${base}/x/q/y`, `${base}/gt/z/w`];
    await wide.inbox.waitFor((items) => items.length >= wideWant.length, WAIT, 'every topic on the wide subscriber');
    assert.deepEqual(topicsOf(wide.inbox).sort(), wideWant.sort());
    for (const m of wide.inbox.items) if (!m.payload.startsWith('not for')) assert.equal(m.payload, `to ${m.topic}`);
    await waitMessage(star.inbox, `${base}/gt/>`, `to ${base}/gt/>`);
    assert.deepEqual(topicsOf(star.inbox).sort(), [`${base}/gt/>`, `${base}/x/*/y`].sort());
  });

  test('the $ rule across nodes: + and # on b get a\'s ordinary topics, never a $ topic; a\'s $SYS stays on a', async () => {
    const status = await connect(nodeB);
    await subscribeOk(status, '+/status', { qos: 1 });
    const hash = await connect(nodeB);
    await subscribeOk(hash, '#', { qos: 1 });
    const sysB = await connect(nodeB);
    await subscribeOk(sysB, '$SYS/#', { qos: 0 });
    const sysA = await connect(nodeA);
    await subscribeOk(sysA, '$SYS/#', { qos: 0 });
    // A live (not retained) $SYS publication on a after every subscription above is in place.
    await sysA.inbox.waitFor((items) => items.some((m) => m.topic === '$SYS/broker/uptime' && !m.packet.retain), 3000, 'a live $SYS tick on a');
    const pub = await connect(nodeA);
    await publish(pub.c, 'dev/status', 'online', { qos: 1 });
    await waitMessage(status.inbox, 'dev/status', 'online');
    await waitMessage(hash.inbox, 'dev/status', 'online');
    // a's $SYS went out before dev/status on a's one NATS connection: it would be here by now.
    assert.deepEqual(hash.inbox.items.filter((m) => m.topic.startsWith('$')).map((m) => m.topic), []);
    assert.deepEqual(topicsOf(sysB.inbox), [], 'b has $SYS off: a $SYS message there could only be a\'s, through the cluster');
    assert.deepEqual(topicsOf(status.inbox), ['dev/status']);
    await Promise.all([status, hash, sysB, sysA].map(end));
  });

  test('retained across nodes: set on a, read on b with the retain flag; cleared on b, gone on a', async () => {
    const base = `keep/${uid()}`;
    const pubA = await connect(nodeA);
    await publish(pubA.c, `${base}/one`, 'kept', { qos: 1, retain: true });
    const subB = await connect(nodeB);
    await subscribeOk(subB, `${base}/one`, { qos: 1 });
    const [got] = await subB.inbox.waitForCount(1, WAIT, 'the retained message on b');
    assert.deepEqual({ topic: got!.topic, payload: got!.payload, retain: got!.packet.retain, qos: got!.packet.qos }, { topic: `${base}/one`, payload: 'kept', retain: true, qos: 1 });

    // Cleared on b (empty retained payload); then a second retained topic, also from b.
    const pubB = await connect(nodeB);
    await publish(pubB.c, `${base}/one`, '', { qos: 1, retain: true });
    await publish(pubB.c, `${base}/two`, 'second', { qos: 1, retain: true });
    // A later subscriber on a to both: only the second is retained (the clear reached a first).
    const subA = await connect(nodeA);
    await subscribeOk(subA, `${base}/+`, { qos: 1 });
    await waitMessage(subA.inbox, `${base}/two`, 'second');
    assert.deepEqual(subA.inbox.items.map((m) => ({ topic: m.topic, payload: m.payload, retain: m.packet.retain })), [{ topic: `${base}/two`, payload: 'second', retain: true }]);
  });

  test('$share/g/… with one member on a and one on b: 20 QoS 1 messages from c arrive exactly once in total, some at each member', async () => {
    const base = `jobs-${uid()}`;
    const memberA = await connect(nodeA);
    const memberB = await connect(nodeB);
    for (const m of [memberA, memberB]) await subscribeOk(m, [`$share/g/${base}/+`, `${base}-end`], { qos: 1 });
    const pub = await connect(nodeC);
    const n = 20;
    for (let i = 0; i < n; i++) await publish(pub.c, `${base}/${i % 3}`, `job ${i}`, { qos: 1 });
    // A plain marker both members receive: a late second copy of a job would be in first.
    await publish(pub.c, `${base}-end`, 'end', { qos: 1 });
    await waitMessage(memberA.inbox, `${base}-end`, 'end');
    await waitMessage(memberB.inbox, `${base}-end`, 'end');
    const jobs = (s: Client): Got[] => s.inbox.items.filter((m) => m.topic !== `${base}-end`);
    const all = [...jobs(memberA), ...jobs(memberB)];
    const counts = countsOf(all);
    assert.equal(all.length, n, JSON.stringify([...counts]));
    for (let i = 0; i < n; i++) assert.equal(counts.get(`job ${i}`), 1, `job ${i} arrived ${counts.get(`job ${i}`) ?? 0} times`);
    assert.ok(jobs(memberA).length > 0 && jobs(memberB).length > 0, `balanced across both nodes: a ${jobs(memberA).length}, b ${jobs(memberB).length}`);
  });

  test('session takeover across nodes: the same client id on b disconnects the one on a with 0x8E; b\'s stays and receives', async () => {
    const topic = `takeover/${uid()}`;
    const first = await connect(nodeA, { clientId: 'dup' });
    const kicked = new Promise<IDisconnectPacket>((resolvePromise) => first.c.once('disconnect', resolvePromise));
    const closed = new Promise<void>((resolvePromise) => first.c.once('close', () => resolvePromise()));
    const second = await connect(nodeB, { clientId: 'dup' });
    const packet = await withTimeout(kicked, WAIT, 'DISCONNECT on the client on a');
    assert.equal(packet.reasonCode, 0x8e);
    await withTimeout(closed, WAIT, 'the connection on a closed');
    assert.equal(second.c.connected, true);
    await subscribeOk(second, topic, { qos: 1 });
    const pub = await connect(nodeC);
    await publish(pub.c, topic, 'after takeover', { qos: 1 });
    await waitMessage(second.inbox, topic, 'after takeover');
    assert.equal(second.c.connected, true, 'the client on b is still connected');
    assert.equal(first.c.connected, false);
    assert.deepEqual(topicsOf(first.inbox), []);
  });

  test('no-local across nodes: the publisher on a does not get its own message back; subscribers on b and a do', async () => {
    const topic = `nolocal/${uid()}`;
    const self = await connect(nodeA);
    await subscribeOk(self, topic, { qos: 1, nl: true });
    await subscribeOk(self, `${topic}/marker`, { qos: 1 });
    const onB = await connect(nodeB);
    await subscribeOk(onB, topic, { qos: 1 });
    const neighbour = await connect(nodeA);
    await subscribeOk(neighbour, topic, { qos: 1 });
    await publish(self.c, topic, 'mine', { qos: 1 });
    await waitMessage(onB.inbox, topic, 'mine');
    await waitMessage(neighbour.inbox, topic, 'mine');
    // A marker from b to the publisher: its own message would have reached it first.
    await publish(onB.c, `${topic}/marker`, 'marker', { qos: 1 });
    await waitMessage(self.inbox, `${topic}/marker`, 'marker');
    assert.deepEqual(topicsOf(self.inbox), [`${topic}/marker`]);
  });

  test('v5 properties travel intact across nodes: user properties (non-ASCII too), content type, correlation data, response topic, expiry', async () => {
    const topic = `props/${uid()}`;
    const sub = await connect(nodeB);
    await subscribeOk(sub, topic, { qos: 1 });
    const pub = await connect(nodeA);
    const correlationData = Buffer.from([0, 1, 2, 0xfe, 0xff, 0x80]);
    await publish(pub.c, topic, 'with properties', {
      qos: 1,
      properties: {
        userProperties: { 'clé': 'välue ☃ 日本', plain: 'ascii', many: ['1', 'deux', 'три'] },
        contentType: 'application/json; charset=utf-8',
        correlationData,
        responseTopic: `${topic}/réponse`,
        messageExpiryInterval: 3600,
        payloadFormatIndicator: true,
      },
    });
    const [got] = await sub.inbox.waitForCount(1, WAIT, 'the message on b');
    const p = got!.packet.properties;
    assert.ok(p !== undefined, 'properties arrived');
    assert.deepEqual({ ...p.userProperties }, { 'clé': 'välue ☃ 日本', plain: 'ascii', many: ['1', 'deux', 'три'] });
    assert.equal(p.contentType, 'application/json; charset=utf-8');
    assert.deepEqual(p.correlationData, correlationData);
    assert.equal(p.responseTopic, `${topic}/réponse`);
    assert.equal(p.payloadFormatIndicator, true);
    // The remaining lifetime: at most what was sent, less only the time in transit.
    assert.ok(p.messageExpiryInterval !== undefined && p.messageExpiryInterval <= 3600 && p.messageExpiryInterval >= 3590, `expiry ${p.messageExpiryInterval}`);
    assert.equal(got!.payload, 'with properties');
  });

  test('third-party clients across nodes: mosquitto_pub on a to mosquitto_sub on b; paho on a to MQTT.js on b', async () => {
    const topic = `mosq/${uid()}`;
    // -d under stdbuf -oL: the test publishes only after mosquitto_sub printed its SUBACK.
    const sub = Proc.spawn('stdbuf', ['-oL', MOSQUITTO_SUB, '-h', '127.0.0.1', '-p', String(nodeB.plainPort), '-t', topic, '-C', '1', '-q', '1', '-i', `mosq-sub-${uid()}`, '-W', '10', '-d', '-F', 'MSG %t %q %p'], {
      label: 'mosquitto_sub on b',
    });
    sub.child.stdin?.end();
    await sub.waitForOutput(/received SUBACK/, WAIT);
    const pub = await run(MOSQUITTO_PUB, ['-h', '127.0.0.1', '-p', String(nodeA.plainPort), '-t', topic, '-q', '1', '-i', `mosq-pub-${uid()}`, '-m', 'from mosquitto é', '-d'], { timeoutMs: WAIT });
    assert.equal(pub.code, 0, pub.stdout + pub.stderr);
    assert.match(pub.stdout, /received PUBACK/);
    const r = await sub.waitExit(WAIT);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(r.stdout.split('\n').filter((l) => l.startsWith('MSG ')), [`MSG ${topic} 1 from mosquitto é`]);

    const pahoTopic = `paho/${uid()}`;
    const js = await connect(nodeB);
    await subscribeOk(js, pahoTopic, { qos: 2 });
    const script = [
      'import sys, threading',
      'import paho.mqtt.client as mqtt',
      'port, topic, payload = int(sys.argv[1]), sys.argv[2], sys.argv[3]',
      'c = mqtt.Client(client_id=sys.argv[4], protocol=mqtt.MQTTv5, reconnect_on_failure=False)',
      'connected = threading.Event()',
      'c.on_connect = lambda *args: connected.set()',
      'c.connect("127.0.0.1", port, 30)',
      'c.loop_start()',
      // Publishing before CONNACK is its own test below; here paho waits for it.
      'if not connected.wait(10): sys.exit("no CONNACK")',
      'info = c.publish(topic, payload.encode("utf-8"), qos=2)',
      'info.wait_for_publish(10)',
      'print("published" if info.is_published() else "not published", flush=True)',
      'c.disconnect()',
      'c.loop_stop()',
    ].join('\n');
    const paho = await run(PYTHON, ['-c', script, String(nodeA.plainPort), pahoTopic, 'from paho ☃', `paho-${uid()}`], { timeoutMs: 10000 });
    assert.equal(paho.code, 0, paho.stdout + paho.stderr);
    assert.equal(paho.stdout.trim(), 'published');
    const [got] = await js.inbox.waitForCount(1, WAIT, 'paho\'s message on b');
    assert.deepEqual({ topic: got!.topic, payload: got!.payload, qos: got!.packet.qos }, { topic: pahoTopic, payload: 'from paho ☃', qos: 2 });
  });

  test('a topic or filter too long for a NATS subject (over 3900 encoded bytes) is refused: PUBACK 0x90, SUBACK 0x8F; the connection stays usable', async () => {
    const base = `long/${uid()}`;
    // 1400 × é: 2800 bytes of UTF-8 (a valid MQTT topic), 8400 bytes escaped (=C3=A9 each).
    const tooLong = `${base}/${'é'.repeat(1400)}`;
    const c = await connect(nodeA);
    assert.equal(await pubackCode(c.c, tooLong), 0x90);
    assert.deepEqual(await subscribe(c.c, [`${base}/${'é'.repeat(1400)}/#`, `${base}/ok`], { qos: 1 }), [0x8f, 1]);
    // The same connection (and the node's NATS connection) still works.
    const other = await connect(nodeB);
    await subscribeOk(other, `${base}/+`, { qos: 1 });
    assert.equal(await pubackCode(c.c, `${base}/ok`), 0);
    await waitMessage(c.inbox, `${base}/ok`, 'x');
    await waitMessage(other.inbox, `${base}/ok`, 'x');
    assert.equal(c.c.connected, true);
  });

  test(
    'a subscription routes cluster-wide once SUBACKed: a message published on another node right after the SUBACK arrives',
    async () => {
      // On c, where no earlier test left a wide subscription (one would bring these topics to the node anyway).
      const base = `suback/${uid()}`;
      const sub = await connect(nodeC);
      const pub = await connect(nodeA);
      const n = 150;
      for (let i = 0; i < n; i++) {
        // The SUBACK alone must be enough.
        assert.deepEqual(await subscribe(sub.c, `${base}/${i}`, { qos: 2 }), [2]);
        await publish(pub.c, `${base}/${i}`, `m${i}`, { qos: (i % 3) as 0 | 1 | 2 });
      }
      // A marker on a subscription NATS surely has, sent after every message above.
      await subscribeOk(sub, `${base}/end`, { qos: 2 });
      await publish(pub.c, `${base}/end`, 'end', { qos: 2 });
      await waitMessage(sub.inbox, `${base}/end`, 'end');
      const got = new Set(sub.inbox.items.map((m) => m.payload));
      const lost = Array.from({ length: n }, (_, i) => `m${i}`).filter((p) => !got.has(p));
      assert.deepEqual(lost, [], `${lost.length} of ${n} messages published right after their SUBACK were lost`);
    },
  );

  test(
    'a client may send packets right after CONNECT, without waiting for CONNACK (MQTT 5 section 3.1.4): they are handled once the session is open',
    async () => {
      const topic = `pipelined/${uid()}`;
      const sub = await connect(nodeB);
      await subscribeOk(sub, topic, { qos: 1 });
      const raw = await RawClient.connect(nodeA.plainPort, 4);
      try {
        // Three packets in one go, as paho-mqtt sends a publish queued before its CONNACK.
        raw.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: `pipe-${uid()}`, clean: true, keepalive: 60 });
        raw.send({ cmd: 'publish', topic, payload: Buffer.from('pipelined'), qos: 1, messageId: 7, retain: false, dup: false });
        raw.send({ cmd: 'pingreq' });
        const connack = await raw.expect('connack');
        assert.equal(connack.returnCode, 0);
        // PUBACK waits for the cluster's store, PINGRESP does not: either may come first.
        const answers = [await raw.next(WAIT), await raw.next(WAIT)].map((p) => (p.cmd === 'puback' ? `puback ${p.messageId}` : p.cmd)).sort();
        assert.deepEqual(answers, ['pingresp', 'puback 7']);
        await waitMessage(sub.inbox, topic, 'pipelined');
      } finally {
        raw.destroy();
      }
    },
  );
});
