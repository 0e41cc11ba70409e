/**
 * MQTT 5 features against a real broker: session and message expiry, topic aliases in
 * both directions, flow control (receive maximum), maximum packet size, no-local,
 * subscription identifiers, forwarded properties, shared subscriptions, request problem
 * information, server keep-alive and DISCONNECT rules.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { expectServerDisconnect, harness, until } from './support.js';

describe('MQTT 5 features', () => {
  it('session expiry: the session outlives the connection for its interval, then ends', async (t) => {
    const h = await harness(t);
    const id = h.id('se');
    const c = await h.connect(5, id, { clean: false, properties: { sessionExpiryInterval: 1 } });
    await c.subscribe([{ topic: 'se/t', qos: 1 }]);
    c.send({ cmd: 'disconnect', reasonCode: 0 });
    await c.expectClose();

    const pub = await h.connect(5);
    // Still subscribed while offline: the message matched (0x00, not 0x10) and waits.
    assert.equal(await pub.publish('se/t', 'while-offline', { qos: 1 }), 0x00);
    assert.equal(h.broker.sessions.get(id)?.queuedCount, 1);
    await until(() => !h.broker.sessions.has(id), 'the session to expire', 4000);
    assert.equal(await pub.publish('se/t', 'after-expiry', { qos: 1, messageId: 2 }), 0x10, 'the subscription ended with the session');
    const { peer, connack } = await h.connectRaw(5, id, { clean: false, properties: { sessionExpiryInterval: 1 } });
    assert.equal(connack.sessionPresent, false);
    await peer.expectNothingBeforePing();

    // Session Expiry Interval absent (0): the session ends with the connection.
    const short = await h.connect(5, h.id('se0'), { clean: false });
    await short.subscribe([{ topic: 'se/zero', qos: 1 }]);
    short.send({ cmd: 'disconnect' });
    await short.expectClose();
    assert.equal(await pub.publish('se/zero', 'x', { qos: 1, messageId: 3 }), 0x10);
  });

  it('message expiry: the remaining interval is forwarded, and a queued message that expired is dropped', async (t) => {
    const h = await harness(t);
    const live = await h.connect(5);
    await live.subscribe([{ topic: 'me/t', qos: 1 }]);
    const pub = await h.connect(5);
    await pub.publish('me/t', 'sixty', { qos: 1, properties: { messageExpiryInterval: 60 } });
    const m = await live.expect('publish');
    const left = m.properties?.messageExpiryInterval;
    assert.ok(left !== undefined && left >= 59 && left <= 60, `remaining interval ${left}`);
    live.send({ cmd: 'puback', messageId: m.messageId! });
    await pub.publish('me/t', 'forever', { qos: 1, messageId: 2 });
    assert.equal((await live.expect('publish')).properties?.messageExpiryInterval, undefined, 'no expiry, no property');

    // Offline subscriber: a message with a 1 s lifetime expires in the queue.
    const id = h.id('me');
    const off = await h.connect(5, id, { clean: false, properties: { sessionExpiryInterval: 60 } });
    await off.subscribe([{ topic: 'me/q', qos: 1 }]);
    off.send({ cmd: 'disconnect' });
    await off.expectClose();
    const sentAt = Date.now();
    await pub.publish('me/q', 'short', { qos: 1, messageId: 3, properties: { messageExpiryInterval: 1 } });
    await pub.publish('me/q', 'long', { qos: 1, messageId: 4, properties: { messageExpiryInterval: 100 } });
    await pub.publish('me/q', 'none', { qos: 1, messageId: 5 });
    const dropped = h.broker.counters.droppedExpired;
    // Expiry is defined by the clock: wait until the 1 s lifetime has certainly passed.
    await until(() => Date.now() > sentAt + 1100, 'the 1 s message lifetime to pass');
    const { peer, connack } = await h.connectRaw(5, id, { clean: false, properties: { sessionExpiryInterval: 60 } });
    assert.equal(connack.sessionPresent, true);
    const got = await peer.drainPublishes();
    assert.deepEqual(got.map((p) => p.payload.toString()), ['long', 'none'], 'the expired message is not sent [MQTT-3.3.2-5]');
    const longLeft = got[0]!.properties?.messageExpiryInterval;
    assert.ok(longLeft !== undefined && longLeft >= 90 && longLeft <= 99, `the time spent waiting is subtracted: ${longLeft}`);
    assert.equal(h.broker.counters.droppedExpired, dropped + 1);
  });

  it('topic aliases from the client: set and reuse; a new topic re-maps an alias', async (t) => {
    const h = await harness(t, { mqtt: { topicAliasMax: 5 } });
    const sub = await h.connect(5);
    await sub.subscribe([{ topic: 'ta/#', qos: 0 }]);
    const pub = await h.connect(5);
    await pub.publish('ta/one', 'a', { qos: 1, properties: { topicAlias: 5 } });
    await pub.publish('', 'b', { qos: 1, messageId: 2, properties: { topicAlias: 5 } });
    await pub.publish('ta/two', 'c', { qos: 1, messageId: 3, properties: { topicAlias: 5 } });
    await pub.publish('', 'd', { qos: 1, messageId: 4, properties: { topicAlias: 5 } });
    const got = await sub.drainPublishes();
    assert.deepEqual(got.map((p) => `${p.topic}=${p.payload.toString()}`), ['ta/one=a', 'ta/one=b', 'ta/two=c', 'ta/two=d']);
    // Aliases belong to one connection: the subscriber (which allowed none) sees none.
    for (const p of got) assert.equal(p.properties?.topicAlias, undefined);
  });

  for (const [what, props, topic, code] of [
    ['alias 0', { topicAlias: 0 }, 'ta/x', 0x94],
    ['an alias above our Topic Alias Maximum', { topicAlias: 6 }, 'ta/x', 0x94],
    ['an unknown alias with an empty topic', { topicAlias: 2 }, '', 0x82],
  ] as const) {
    it(`topic aliases from the client: ${what} is answered with DISCONNECT 0x${code.toString(16)}`, async (t) => {
      const h = await harness(t, { mqtt: { topicAliasMax: 5 } });
      const c = await h.connect(5);
      c.send({ cmd: 'publish', topic, payload: 'x', qos: 0, retain: false, dup: false, properties: { ...props } });
      await expectServerDisconnect(c, code);
      await h.assertAlive(5);
    });
  }

  it('topic aliases to the client: a repeated topic is sent as an alias, within the client\'s Topic Alias Maximum', async (t) => {
    const h = await harness(t);
    const sub = await h.connect(5, h.id(), { properties: { topicAliasMaximum: 2 } });
    await sub.subscribe([{ topic: 'oa/#', qos: 0 }]);
    const plain = await h.connect(5);
    await plain.subscribe([{ topic: 'oa/#', qos: 0 }]);
    const pub = await h.connect(5);
    for (const [i, topic] of ['oa/t', 'oa/t', 'oa/u', 'oa/v', 'oa/u', 'oa/t'].entries()) await pub.publish(topic, `m${i}`, { qos: 1, messageId: i + 1 });
    const got = await sub.drainPublishes();
    assert.deepEqual(
      got.map((p) => [p.topic, p.properties?.topicAlias ?? null, p.payload.toString()]),
      [
        ['oa/t', 1, 'm0'],
        ['', 1, 'm1'],
        ['oa/u', 2, 'm2'],
        ['oa/v', null, 'm3'], // both aliases taken: the full topic, no alias
        ['', 2, 'm4'],
        ['', 1, 'm5'],
      ],
    );
    for (const p of await plain.drainPublishes()) {
      assert.notEqual(p.topic, '', 'a client with Topic Alias Maximum 0 always gets the topic');
      assert.equal(p.properties?.topicAlias, undefined);
    }
  });

  it("receive maximum: with the client's Receive Maximum 1, a second QoS 1/2 message waits for the first to complete", async (t) => {
    const h = await harness(t);
    const sub = await h.connect(5, h.id(), { properties: { receiveMaximum: 1 } });
    await sub.subscribe([{ topic: 'rm/t', qos: 2 }]);
    const pub = await h.connect(5);
    await pub.publish('rm/t', 'first', { qos: 1 });
    await pub.publish('rm/t', 'second', { qos: 2, messageId: 2 });
    await pub.publish('rm/t', 'third', { qos: 1, messageId: 3 });
    const first = await sub.expect('publish');
    assert.equal(first.payload.toString(), 'first');
    await sub.expectNothingBeforePing();
    sub.send({ cmd: 'puback', messageId: first.messageId! });
    const second = await sub.expect('publish');
    assert.equal(second.payload.toString(), 'second');
    sub.send({ cmd: 'pubrec', messageId: second.messageId! });
    assert.equal((await sub.expect('pubrel')).messageId, second.messageId);
    await sub.expectNothingBeforePing();
    sub.send({ cmd: 'pubcomp', messageId: second.messageId! });
    assert.equal((await sub.expect('publish')).payload.toString(), 'third');
  });

  it('receive maximum: a client with more unacknowledged QoS 2 messages than ours gets DISCONNECT 0x93', async (t) => {
    const h = await harness(t, { mqtt: { maxInflight: 3 } });
    const c = await h.connect(5);
    for (let id = 1; id <= 3; id++) {
      c.send({ cmd: 'publish', topic: 'rmx/t', payload: 'x', qos: 2, messageId: id, retain: false, dup: false });
      assert.equal((await c.expect('pubrec')).messageId, id);
    }
    c.send({ cmd: 'publish', topic: 'rmx/t', payload: 'x', qos: 2, messageId: 4, retain: false, dup: false });
    await expectServerDisconnect(c, 0x93);
    await h.assertAlive(5);
  });

  it('receive maximum is not imposed on MQTT 3.1.1 clients, which were never told a limit', async (t) => {
    const h = await harness(t, { mqtt: { maxInflight: 3 } });
    const c = await h.connect(4);
    for (let id = 1; id <= 6; id++) {
      c.send({ cmd: 'publish', topic: 'rmx/t', payload: 'x', qos: 2, messageId: id, retain: false, dup: false });
      assert.equal((await c.expect('pubrec')).messageId, id);
    }
    await c.expectNothingBeforePing();
  });

  it("maximum packet size: a message larger than the client's Maximum Packet Size is not sent to it", async (t) => {
    const h = await harness(t);
    const small = await h.connect(5, h.id(), { properties: { maximumPacketSize: 100 } });
    await small.subscribe([{ topic: 'mps/t', qos: 1 }]);
    const big = await h.connect(5);
    await big.subscribe([{ topic: 'mps/t', qos: 1 }]);
    const pub = await h.connect(5);
    const before = h.broker.counters.droppedTooLarge;
    await pub.publish('mps/t', 'x'.repeat(200), { qos: 1 });
    await pub.publish('mps/t', 'y'.repeat(200), { qos: 0 });
    await pub.publish('mps/t', 'fits', { qos: 1, messageId: 2 });
    const got = await small.drainPublishes();
    assert.deepEqual(got.map((p) => p.payload.toString()), ['fits']);
    assert.equal(h.broker.counters.droppedTooLarge, before + 2);
    assert.deepEqual((await big.drainPublishes()).map((p) => p.payload.length), [200, 200, 4]);
    // The dropped QoS 1 message does not occupy the window: the next one flows.
    small.send({ cmd: 'puback', messageId: got[0]!.messageId! });
    await small.sync();
    assert.equal(h.broker.sessions.get(small.clientId)!.inflightCount, 0);
  });

  it('no local: a client does not receive its own messages on a no-local subscription', async (t) => {
    const h = await harness(t);
    const self = await h.connect(5);
    await self.subscribe([{ topic: 'nl/a', qos: 0, nl: true }]);
    await self.subscribe([{ topic: 'nl/b', qos: 0, nl: false }], undefined, 2);
    // QoS 0, so the only packets coming back to `self` are deliveries.
    await self.publish('nl/a', 'own-a');
    await self.publish('nl/b', 'own-b');
    assert.deepEqual((await self.drainPublishes()).map((p) => p.payload.toString()), ['own-b']);
    const other = await h.connect(5);
    await other.publish('nl/a', 'other-a', { qos: 1 });
    assert.deepEqual((await self.drainPublishes()).map((p) => p.payload.toString()), ['other-a'], 'no local is about the publisher, not the topic');
    // No Local on a shared subscription is a protocol error [MQTT-3.8.3-4].
    self.send({ cmd: 'subscribe', messageId: 3, subscriptions: [{ topic: '$share/g/nl/c', qos: 0, nl: true }] });
    await expectServerDisconnect(self, 0x82);
  });

  it('subscription identifiers: carried on matching messages (live and retained), replaced on re-subscribe', async (t) => {
    const h = await harness(t);
    const pub = await h.connect(5);
    await pub.publish('sid/r', 'retained', { qos: 1, retain: true });
    const sub = await h.connect(5);
    await sub.subscribe([{ topic: 'sid/+', qos: 0 }], { subscriptionIdentifier: 5 });
    const retained = await sub.expect('publish');
    assert.equal(retained.properties?.subscriptionIdentifier, 5);
    await sub.subscribe([{ topic: 'nosid/t', qos: 0 }], undefined, 2);
    await pub.publish('sid/x', 'live', { qos: 1, messageId: 2 });
    await pub.publish('nosid/t', 'plain', { qos: 1, messageId: 3 });
    const got = await sub.drainPublishes();
    assert.deepEqual(got.map((p) => [p.payload.toString(), p.properties?.subscriptionIdentifier ?? null]), [['live', 5], ['plain', null]]);
    await sub.subscribe([{ topic: 'sid/+', qos: 0, rh: 2 }], { subscriptionIdentifier: 268435455 }, 4);
    await pub.publish('sid/x', 'again', { qos: 1, messageId: 4 });
    assert.deepEqual((await sub.drainPublishes()).map((p) => p.properties?.subscriptionIdentifier), [268435455]);
  });

  it('user properties, content type, payload format, response topic and correlation data pass through unchanged', async (t) => {
    const h = await harness(t);
    const sub = await h.connect(5);
    await sub.subscribe([{ topic: 'props/t', qos: 1 }]);
    const v3 = await h.connect(4);
    await v3.subscribe([{ topic: 'props/t', qos: 1 }]);
    const pub = await h.connect(5);
    const properties = {
      payloadFormatIndicator: true,
      contentType: 'application/json; charset=utf-8',
      responseTopic: 'props/reply',
      correlationData: Buffer.from([0, 1, 2, 0xfe, 0xff]),
      userProperties: { b: 'second', a: ['1', '2'], 'ключ': 'значение' },
    };
    await pub.publish('props/t', '{"ok":true}', { qos: 1, properties });
    const m = await sub.expect('publish');
    assert.equal(m.payload.toString(), '{"ok":true}');
    assert.equal(m.properties?.payloadFormatIndicator, true);
    assert.equal(m.properties?.contentType, properties.contentType);
    assert.equal(m.properties?.responseTopic, 'props/reply');
    assert.deepEqual(m.properties?.correlationData, properties.correlationData);
    assert.deepEqual({ ...m.properties?.userProperties }, properties.userProperties);
    const plain = await v3.expect('publish');
    assert.equal(plain.payload.toString(), '{"ok":true}');
    assert.equal(plain.properties, undefined, 'a v3.1.1 subscriber gets the plain message');
  });

  it('payload format indicator 1 with a payload that is not UTF-8 is refused with PUBACK 0x99 and not delivered', async (t) => {
    const h = await harness(t);
    const sub = await h.connect(5);
    await sub.subscribe([{ topic: 'pfi/t', qos: 1 }]);
    const pub = await h.connect(5);
    assert.equal(await pub.publish('pfi/t', Buffer.from([0xc3, 0x28]), { qos: 1, properties: { payloadFormatIndicator: true } }), 0x99);
    assert.equal(await pub.publish('pfi/t', Buffer.from([0xc3, 0x28]), { qos: 1, messageId: 2 }), 0x00, 'without the indicator any bytes go');
    assert.deepEqual((await sub.drainPublishes()).map((p) => [...p.payload]), [[0xc3, 0x28]]);
  });

  it('shared subscriptions: messages go round-robin to one member at a time; plain subscribers get all', async (t) => {
    const h = await harness(t);
    const m1 = await h.connect(5);
    const m2 = await h.connect(5);
    for (const m of [m1, m2]) assert.deepEqual(await m.subscribe([{ topic: '$share/grp/sh/+', qos: 1 }]), [1]);
    const all = await h.connect(5);
    await all.subscribe([{ topic: 'sh/+', qos: 1 }]);
    const pub = await h.connect(5);
    for (let i = 1; i <= 6; i++) await pub.publish(`sh/${i}`, `m${i}`, { qos: 1, messageId: i });
    const got1 = (await m1.drainPublishes()).map((p) => p.payload.toString());
    const got2 = (await m2.drainPublishes()).map((p) => p.payload.toString());
    assert.equal(got1.length, 3, `member 1 got ${got1}`);
    assert.equal(got2.length, 3, `member 2 got ${got2}`);
    assert.deepEqual([...got1, ...got2].sort(), ['m1', 'm2', 'm3', 'm4', 'm5', 'm6'], 'each message to exactly one member');
    // Strict alternation.
    const firstIsM1 = got1.includes('m1');
    assert.deepEqual(firstIsM1 ? got1 : got2, ['m1', 'm3', 'm5']);
    assert.equal((await all.drainPublishes()).length, 6);
  });

  it('shared subscriptions: an invalid share name is refused with 0x8F, a `$` filter inside a share with 0x87', async (t) => {
    const h = await harness(t);
    const c = await h.connect(5);
    assert.deepEqual(
      await c.subscribe([
        { topic: '$share/g', qos: 0 },
        { topic: '$share//t', qos: 0 },
        { topic: '$share/g+/t', qos: 0 },
        { topic: '$share/g/$SYS/#', qos: 0 },
        { topic: '$share/g/ok/t', qos: 0 },
      ]),
      [0x8f, 0x8f, 0x8f, 0x87, 0x00],
    );
  });

  for (const requestProblemInformation of [true, false]) {
    it(`request problem information ${requestProblemInformation ? 'true: DISCONNECT carries a reason string' : 'false: no reason string'}`, async (t) => {
      const h = await harness(t);
      const c = await h.connect(5, h.id(), { properties: { requestProblemInformation } });
      c.send({ cmd: 'publish', topic: 'a/+', payload: 'x', qos: 0, retain: false, dup: false });
      const packets = await expectServerDisconnect(c, 0x90);
      const reason = (packets[packets.length - 1] as { properties?: { reasonString?: string } }).properties?.reasonString;
      if (requestProblemInformation) assert.equal(typeof reason, 'string');
      else assert.equal(reason, undefined, '[MQTT-3.1.2-29]');
    });
  }

  it('server keep-alive: with maxKeepAlive 1 the CONNACK says 1 and 1.5 s of silence gets DISCONNECT 0x8D', async (t) => {
    const h = await harness(t, { mqtt: { maxKeepAlive: 1 } });
    const { connack: zero } = await h.connectRaw(5, h.id(), { keepalive: 0 });
    assert.equal(zero.properties?.serverKeepAlive, 1, 'keep-alive 0 (off) is not allowed either');
    const { peer, connack } = await h.connectRaw(5, h.id(), { keepalive: 60 });
    assert.equal(connack.reasonCode, 0);
    assert.equal(connack.properties?.serverKeepAlive, 1);
    const started = Date.now();
    await expectServerDisconnect(peer, 0x8d, 4000);
    assert.ok(Date.now() - started >= 1400, 'the server keep-alive, not the client\'s 60 s, applies [MQTT-3.2.2-21]');
    const h2 = await harness(t);
    const { connack: within } = await h2.connectRaw(5, h2.id(), { keepalive: 60 });
    assert.equal(within.properties?.serverKeepAlive, undefined, 'no Server Keep Alive when the client\'s is accepted');
  });

  it('DISCONNECT that sets a session expiry after connecting with 0 is a protocol error (DISCONNECT 0x82)', async (t) => {
    const h = await harness(t);
    const c = await h.connect(5);
    c.send({ cmd: 'disconnect', reasonCode: 0, properties: { sessionExpiryInterval: 10 } });
    await expectServerDisconnect(c, 0x82);
    assert.equal(h.broker.sessions.has(c.clientId), false, 'the session still ended');
  });

  it('DISCONNECT may shorten a session expiry to 0: the session ends with the connection', async (t) => {
    const h = await harness(t);
    const id = h.id('dse');
    const c = await h.connect(5, id, { clean: false, properties: { sessionExpiryInterval: 60 } });
    await c.subscribe([{ topic: 'dse/t', qos: 1 }]);
    c.send({ cmd: 'disconnect', reasonCode: 0, properties: { sessionExpiryInterval: 0 } });
    assert.deepEqual(await c.expectClose(), []);
    const { connack } = await h.connectRaw(5, id, { clean: false, properties: { sessionExpiryInterval: 60 } });
    assert.equal(connack.sessionPresent, false);
  });
});
