/**
 * Per-client limits with real clients against a real broker: publish rate and bandwidth
 * (MQTT.js v5 gets PUBACK 0x97 while another client within its rate is unaffected; QoS 0
 * excess is dropped and counted; a v3.1.1 QoS 1 publisher, mosquitto_pub, is slowed and
 * loses nothing; `action: disconnect` sends DISCONNECT 0x96), the subscription cap (SUBACK
 * 0x97 for MQTT.js v5, 0x80 for mosquitto_sub 3.1.1) and the client id length (CONNACK 0x85
 * for v5, return code 2 for mosquitto_pub 3.1.1). Every refusal is a `limit.hit` event.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { MqttClient } from 'mqtt';
import type { SecurityEvent } from '../../src/core/security-events.js';
import { startTestBroker, type TestBroker } from '../helpers/broker.js';
import { connectRaw } from '../helpers/raw-client.js';
import type { PublishPacket } from '../../src/protocol/packets.js';
import { connectMqtt, endQuietly, Inbox, inboxOf, killAllProcs, nextEvent, Proc, run, withTimeout } from './support.js';

const WAIT = 15_000;

type LimitHit = Extract<SecurityEvent, { type: 'limit.hit' }>;

/** Collects the broker's limit.hit events. */
function limitHits(broker: TestBroker): Inbox<LimitHit> {
  const inbox = new Inbox<LimitHit>();
  broker.server.broker.events.on((e) => {
    if (e.type === 'limit.hit') inbox.push(e);
  });
  return inbox;
}

/** Publishes and resolves with the failure reason code MQTT.js surfaced (0 for success, 0x10 included). */
function publishCode(client: MqttClient, topic: string, payload: string | Buffer, qos: 1 | 2): Promise<number> {
  return new Promise((resolve) => {
    client.publish(topic, payload, { qos }, (err?: Error) => {
      resolve(err === undefined || err === null ? 0 : ((err as Error & { code?: number }).code ?? -1));
    });
  });
}

after(() => killAllProcs());

describe('publish rate and bandwidth', () => {
  test('v5 QoS 1 at 10x the rate gets PUBACK 0x97 for the excess; a client within its own rate is unaffected', async () => {
    const broker = await startTestBroker({ limits: { client: { publishRate: { perSecond: 20, burst: 20 } } } });
    const hits = limitHits(broker);
    const url = `mqtt://127.0.0.1:${broker.plainPort}`;
    let sub: MqttClient | undefined, flood: MqttClient | undefined, calm: MqttClient | undefined;
    try {
      sub = await connectMqtt(url, { protocolVersion: 5, clientId: 'rate-sub' });
      const inbox = inboxOf(sub);
      await sub.subscribeAsync('rate/#', { qos: 1 });
      flood = await connectMqtt(url, { protocolVersion: 5, clientId: 'rate-flood' });
      calm = await connectMqtt(url, { protocolVersion: 5, clientId: 'rate-calm' });
      // 200 messages at once against 20/s with a burst of 20: ten times the rate.
      const floodCodes = Promise.all(Array.from({ length: 200 }, (_, i) => publishCode(flood!, 'rate/flood', `f${i}`, 1)));
      const calmCodes = Promise.all(Array.from({ length: 10 }, (_, i) => publishCode(calm!, 'rate/calm', `c${i}`, 1)));
      const codes = await withTimeout(floodCodes, WAIT, 'PUBACKs of the flood');
      const refused = codes.filter((c) => c === 0x97).length;
      const accepted = codes.filter((c) => c === 0).length;
      assert.equal(refused + accepted, 200, `only 0x00 and 0x97: ${[...new Set(codes)].join(',')}`);
      assert.ok(refused >= 150, `most of the flood is refused with 0x97 (${refused})`);
      assert.ok(accepted >= 20, `the burst goes through (${accepted})`);
      assert.deepEqual(await withTimeout(calmCodes, WAIT, 'PUBACKs of the calm client'), Array(10).fill(0));
      // The subscriber gets every calm message and exactly the accepted flood messages.
      await inbox.waitFor((m) => m.filter((x) => x.topic === 'rate/calm').length === 10 && m.filter((x) => x.topic === 'rate/flood').length === accepted, WAIT, 'deliveries');
      const rejected = hits.items.filter((h) => h.limit === 'publish-rate' && h.action === 'rejected');
      assert.equal(rejected.length, refused, 'one limit.hit per refusal');
      assert.deepEqual({ ...rejected[0]!, detail: undefined }, { type: 'limit.hit', limit: 'publish-rate', listener: 'plain', remoteAddress: rejected[0]!.remoteAddress, clientId: 'rate-flood', action: 'rejected', count: 1, detail: undefined });
      assert.ok(hits.items.every((h) => h.clientId === 'rate-flood'), 'the calm client hit no limit');
    } finally {
      await Promise.all([endQuietly(sub), endQuietly(flood), endQuietly(calm)]);
      await broker.stop();
    }
  });

  test('QoS 0 over the rate is dropped and counted, the rest is delivered', async () => {
    const broker = await startTestBroker({ limits: { client: { publishRate: { perSecond: 20, burst: 20 } } } });
    const hits = limitHits(broker);
    const url = `mqtt://127.0.0.1:${broker.plainPort}`;
    let sub: MqttClient | undefined, pub: MqttClient | undefined;
    try {
      sub = await connectMqtt(url, { protocolVersion: 5, clientId: 'q0-sub' });
      const inbox = inboxOf(sub);
      // A drop is an event, not a message: let it wake the wait on the inbox too.
      broker.server.broker.events.on(() => inbox.poke());
      await sub.subscribeAsync('q0/#', { qos: 0 });
      pub = await connectMqtt(url, { protocolVersion: 5, clientId: 'q0-pub' });
      for (let i = 0; i < 200; i++) pub.publish('q0/t', `m${i}`, { qos: 0 });
      const dropped = (): number => hits.items.filter((h) => h.limit === 'publish-rate' && h.action === 'dropped').length;
      await inbox.waitFor((m) => m.length + dropped() === 200 && dropped() > 0, WAIT, 'every message delivered or dropped');
      assert.ok(dropped() >= 150, `most are dropped (${dropped()})`);
      assert.equal(broker.server.broker.counters.droppedQuota, dropped());
    } finally {
      await Promise.all([endQuietly(sub), endQuietly(pub)]);
      await broker.stop();
    }
  });

  test('a v3.1.1 QoS 1 publisher (mosquitto_pub) over the rate is slowed, not refused: every message arrives', async () => {
    const broker = await startTestBroker({ limits: { client: { publishRate: { perSecond: 20, burst: 5 } } } });
    const url = `mqtt://127.0.0.1:${broker.plainPort}`;
    let sub: MqttClient | undefined;
    try {
      sub = await connectMqtt(url, { protocolVersion: 4, clientId: 'v3-sub' });
      const inbox = inboxOf(sub);
      await sub.subscribeAsync('v3/slow', { qos: 1 });
      const lines = Array.from({ length: 40 }, (_, i) => `line-${i}`);
      const res = await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(broker.plainPort), '-V', 'mqttv311', '-q', '1', '-i', 'v3-pub', '-t', 'v3/slow', '-l'], {
        input: `${lines.join('\n')}\n`,
        timeoutMs: 30_000,
      });
      assert.equal(res.code, 0, res.stderr);
      await inbox.waitForCount(40, WAIT, 'all 40 lines');
      assert.deepEqual(inbox.items.map((m) => m.payload).sort(), [...lines].sort());
      assert.ok(broker.server.broker.counters.slowedQuota > 0, 'the publisher was slowed down');
    } finally {
      await endQuietly(sub);
      await broker.stop();
    }
  });

  test('bandwidth: large payloads over the bytes per second get PUBACK 0x97', async () => {
    const broker = await startTestBroker({ limits: { client: { bandwidth: { perSecond: 100_000, burst: 200_000 } } } });
    const hits = limitHits(broker);
    let pub: MqttClient | undefined;
    try {
      pub = await connectMqtt(`mqtt://127.0.0.1:${broker.plainPort}`, { protocolVersion: 5, clientId: 'bw-pub' });
      const big = Buffer.alloc(50_000, 1);
      const codes = await withTimeout(Promise.all(Array.from({ length: 20 }, () => publishCode(pub!, 'bw/t', big, 1))), WAIT, 'PUBACKs');
      // 1 MB against a 200 kB burst: four pass, the rest is refused (a little refill aside).
      assert.ok(codes.filter((c) => c === 0).length >= 4, codes.join(','));
      assert.ok(codes.filter((c) => c === 0x97).length >= 10, codes.join(','));
      assert.ok(hits.items.some((h) => h.limit === 'bandwidth' && h.action === 'rejected'));
      assert.ok(!hits.items.some((h) => h.limit === 'publish-rate'), 'the message rate was not what refused them');
    } finally {
      await endQuietly(pub);
      await broker.stop();
    }
  });

  test('quota comes after the QoS 2 duplicate check: a resend of an accepted message is not refused (byte level, v5)', async () => {
    const broker = await startTestBroker({ limits: { client: { publishRate: { perSecond: 1, burst: 1 } } } });
    const { client } = await connectRaw(broker.plainPort, 5, 'dup-pub');
    try {
      const publish = (messageId: number, dup: boolean): PublishPacket => ({ cmd: 'publish', topic: 'dup/t', payload: Buffer.from('x'), qos: 2, messageId, retain: false, dup });
      client.send(publish(1, false), 5);
      assert.equal((await client.expect('pubrec')).reasonCode ?? 0, 0x10, 'accepted (no subscriber)');
      // The bucket is empty now: a resend of message 1 is acknowledged again, a new one is refused.
      client.send(publish(1, true), 5);
      assert.equal((await client.expect('pubrec')).reasonCode ?? 0, 0);
      client.send(publish(2, false), 5);
      const refused = await client.expect('pubrec');
      assert.equal(refused.messageId, 2);
      assert.equal(refused.reasonCode, 0x97);
      assert.equal(refused.properties?.reasonString, 'publish rate exceeded');
    } finally {
      client.destroy();
      await broker.stop();
    }
  });

  test('action disconnect: a v5 client over its rate gets DISCONNECT 0x96', async () => {
    const broker = await startTestBroker({ limits: { client: { publishRate: { perSecond: 10, burst: 10 }, action: 'disconnect' } } });
    const hits = limitHits(broker);
    let pub: MqttClient | undefined;
    try {
      pub = await connectMqtt(`mqtt://127.0.0.1:${broker.plainPort}`, { protocolVersion: 5, clientId: 'dc-pub' });
      const disconnected = nextEvent<{ reasonCode?: number; properties?: { reasonString?: string } }>(pub, 'disconnect', WAIT);
      for (let i = 0; i < 50; i++) pub.publish('dc/t', `m${i}`, { qos: 0 });
      const packet = await disconnected;
      assert.equal(packet.reasonCode, 0x96);
      assert.equal(packet.properties?.reasonString, 'publish rate exceeded');
      await hits.waitFor((h) => h.some((x) => x.limit === 'publish-rate' && x.action === 'disconnected' && x.clientId === 'dc-pub'), WAIT, 'limit.hit disconnected');
    } finally {
      await endQuietly(pub);
      await broker.stop();
    }
  });
});

test('action disconnect: a v3.1.1 client over its rate is closed (no DISCONNECT in 3.1.1)', async () => {
  const broker = await startTestBroker({ limits: { client: { publishRate: { perSecond: 10, burst: 10 }, action: 'disconnect' } } });
  const hits = limitHits(broker);
  const { client } = await connectRaw(broker.plainPort, 4, 'dc-v3');
  try {
    for (let i = 0; i < 30; i++) client.send({ cmd: 'publish', topic: 'dc/v3', payload: Buffer.from('x'), qos: 0, retain: false, dup: false } as PublishPacket, 4);
    const before = await client.expectClose(WAIT);
    assert.deepEqual(before, [], 'closed without a packet');
    assert.ok(hits.items.some((h) => h.limit === 'publish-rate' && h.action === 'disconnected' && h.clientId === 'dc-v3'));
  } finally {
    client.destroy();
    await broker.stop();
  }
});

describe('subscriptions and client ids', () => {
  let broker: TestBroker;
  let hits: Inbox<LimitHit>;

  before(async () => {
    broker = await startTestBroker({ limits: { client: { maxSubscriptions: 3, maxClientIdLength: 30 } } });
    hits = limitHits(broker);
  });
  after(() => broker.stop());

  test('v5: filters beyond maxSubscriptions get SUBACK 0x97; re-subscribing an existing one does not count', async () => {
    let c: MqttClient | undefined;
    try {
      c = await connectMqtt(`mqtt://127.0.0.1:${broker.plainPort}`, { protocolVersion: 5, clientId: 'subs-v5' });
      const first = await c.subscribeAsync(['s/1', 's/2'], { qos: 1 });
      assert.deepEqual(first.map((g) => g.qos), [1, 1]);
      // The MQTT.js API reports per-filter grants; the raw SUBACK codes come with the packet event.
      const subacks: number[][] = [];
      c.on('packetreceive', (p) => {
        if (p.cmd === 'suback') subacks.push([...(p as { granted: number[] }).granted]);
      });
      await c.subscribeAsync(['s/1', 's/3', 's/4', 's/5'], { qos: 1 }).catch(() => undefined);
      assert.deepEqual(subacks[0], [1, 1, 0x97, 0x97]);
      assert.equal(hits.items.filter((h) => h.limit === 'subscriptions' && h.clientId === 'subs-v5' && h.action === 'rejected').length, 2);
    } finally {
      await endQuietly(c);
    }
  });

  test('v3.1.1: mosquitto_sub gets 0x80 for the filter beyond the cap', async () => {
    const sub = Proc.spawn('stdbuf', ['-oL', 'mosquitto_sub', '-h', '127.0.0.1', '-p', String(broker.plainPort), '-V', 'mqttv311', '-i', 'subs-v3', '-t', 'a/1', '-t', 'a/2', '-t', 'a/3', '-t', 'a/4', '-q', '1', '-d', '-W', '10']);
    sub.child.stdin?.end();
    try {
      const m = await sub.waitForOutput(/Subscribed \(mid: \d+\): ([\d, ]+)/, WAIT);
      assert.deepEqual(m[1]!.split(',').map((s) => Number(s.trim())), [1, 1, 1, 0x80]);
    } finally {
      await sub.stop();
    }
  });

  test('v5: a client id longer than maxClientIdLength gets CONNACK 0x85 before authentication', async () => {
    const err = await connectMqtt(`mqtt://127.0.0.1:${broker.plainPort}`, { protocolVersion: 5, clientId: 'x'.repeat(31) }).then(
      () => null,
      (e: Error & { code?: number }) => e,
    );
    assert.ok(err !== null);
    assert.equal(err.code, 0x85, err.message);
    await hits.waitFor((h) => h.some((x) => x.limit === 'client-id-length' && x.action === 'refused'), WAIT, 'limit.hit client-id-length');
    // 30 characters is still fine.
    const ok = await connectMqtt(`mqtt://127.0.0.1:${broker.plainPort}`, { protocolVersion: 5, clientId: 'y'.repeat(30) });
    await endQuietly(ok);
  });

  test('v3.1.1: mosquitto_pub with a client id too long is refused with return code 2', async () => {
    const res = await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(broker.plainPort), '-V', 'mqttv311', '-i', 'z'.repeat(40), '-t', 't', '-m', 'x', '-d'], { timeoutMs: WAIT });
    assert.notEqual(res.code, 0);
    assert.match(`${res.stdout}${res.stderr}`, /identifier rejected|CONNACK \(2\)/i);
  });
});
