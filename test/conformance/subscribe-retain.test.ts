/**
 * SUBSCRIBE / UNSUBSCRIBE and retained messages for MQTT 3.1.1 and MQTT 5: SUBACK codes,
 * retained set / replace / clear, retain flag on delivery, and the v5 retain handling,
 * retain-as-published and shared-subscription rules.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { harness, VERSIONS, vname } from './support.js';

describe('SUBSCRIBE and retained messages', () => {
  for (const v of VERSIONS) {
    it(`${vname(v)}: SUBACK grants per filter, in order, and refuses an invalid filter with ${v === 5 ? '0x8F' : '0x80'}`, async (t) => {
      const h = await harness(t);
      const c = await h.connect(v);
      const granted = await c.subscribe(
        [
          { topic: 'sa/0', qos: 0 },
          { topic: 'sa/#/bad', qos: 1 },
          { topic: 'sa/2', qos: 2 },
          { topic: 'sa/x+', qos: 1 },
          { topic: 'sa/1', qos: 1 },
        ],
        undefined,
        321,
      );
      const bad = v === 5 ? 0x8f : 0x80;
      assert.deepEqual(granted, [0, bad, 2, bad, 1]);
    });

    it(`${vname(v)}: UNSUBSCRIBE stops delivery; UNSUBACK ${v === 5 ? 'says 0x00 / 0x11 per filter' : 'echoes the packet id'}`, async (t) => {
      const h = await harness(t);
      const c = await h.connect(v);
      await c.subscribe([{ topic: 'us/t', qos: 1 }]);
      c.send({ cmd: 'unsubscribe', messageId: 77, unsubscriptions: ['us/t', 'us/never'] });
      const ack = await c.expect('unsuback');
      assert.equal(ack.messageId, 77);
      if (v === 5) assert.deepEqual(ack.granted, [0x00, 0x11]);
      const pub = await h.connect(v);
      assert.equal(await pub.publish('us/t', 'x', { qos: 1 }), v === 5 ? 0x10 : 0);
      await c.expectNothingBeforePing();
    });

    it(`${vname(v)}: a retained message is set, replaced and cleared by an empty payload, and sent on subscribe with retain=1`, async (t) => {
      const h = await harness(t);
      const pub = await h.connect(v);
      await pub.publish('rt/a', 'one', { qos: 1, retain: true });

      const s1 = await h.connect(v);
      assert.deepEqual(await s1.subscribe([{ topic: 'rt/a', qos: 1 }]), [1]);
      const r1 = await s1.expect('publish');
      assert.equal(r1.topic, 'rt/a');
      assert.equal(r1.payload.toString(), 'one');
      assert.equal(r1.retain, true, 'sent because of a subscription: retain=1 [MQTT-3.3.1-8]');
      assert.equal(r1.qos, 1);
      s1.send({ cmd: 'puback', messageId: r1.messageId! });

      // Replace: a live subscriber gets it with retain=0 [MQTT-3.3.1-9]; a new one only the new value.
      await pub.publish('rt/a', 'two', { qos: 1, retain: true, messageId: 2 });
      const live = await s1.expect('publish');
      assert.equal(live.payload.toString(), 'two');
      assert.equal(live.retain, false);
      s1.send({ cmd: 'puback', messageId: live.messageId! });
      const s2 = await h.connect(v);
      await s2.subscribe([{ topic: 'rt/#', qos: 0 }]);
      const got2 = await s2.drainPublishes();
      assert.deepEqual(got2.map((p) => [p.payload.toString(), p.retain, p.qos]), [['two', true, 0]], 'one retained message per topic, at the subscription QoS');

      // Clear: the empty retained PUBLISH goes to current subscribers, and nothing is retained any more.
      await pub.publish('rt/a', '', { qos: 1, retain: true, messageId: 3 });
      const cleared = await s1.expect('publish');
      assert.equal(cleared.payload.length, 0);
      s1.send({ cmd: 'puback', messageId: cleared.messageId! });
      const s3 = await h.connect(v);
      await s3.subscribe([{ topic: 'rt/a', qos: 1 }]);
      assert.deepEqual(await s3.drainPublishes(), [], 'an empty retained payload clears [MQTT-3.3.1-10]');
    });

    it(`${vname(v)}: a wildcard subscription receives every matching retained message, and a QoS 0 publish can be retained`, async (t) => {
      const h = await harness(t);
      const pub = await h.connect(v);
      await pub.publish('rw/1', 'a', { qos: 0, retain: true });
      await pub.publish('rw/2/x', 'b', { qos: 2, retain: true });
      await pub.publish('other/1', 'c', { qos: 1, retain: true });
      await pub.sync();
      const s = await h.connect(v);
      await s.subscribe([{ topic: 'rw/#', qos: 2 }]);
      const got = await s.drainPublishes();
      const seen = got.map((p) => `${p.topic}=${p.payload.toString()} q${p.qos} r${p.retain ? 1 : 0}`).sort();
      assert.deepEqual(seen, ['rw/1=a q0 r1', 'rw/2/x=b q2 r1']);
    });
  }

  for (const rh of [0, 1, 2] as const) {
    it(`v5: retain handling ${rh}: retained messages ${['on every subscribe', 'only for a new subscription', 'never'][rh]}`, async (t) => {
      const h = await harness(t);
      const pub = await h.connect(5);
      await pub.publish('rh/t', 'kept', { qos: 1, retain: true });
      const s = await h.connect(5);
      await s.subscribe([{ topic: 'rh/t', qos: 0, rh }]);
      assert.equal((await s.drainPublishes()).length, rh === 2 ? 0 : 1, 'first subscribe');
      await s.subscribe([{ topic: 'rh/t', qos: 0, rh }], undefined, 2);
      assert.equal((await s.drainPublishes()).length, rh === 0 ? 1 : 0, 're-subscribe to an existing subscription');
    });
  }

  it('v5: retain as published keeps the retain flag on live delivery; without it the flag is cleared', async (t) => {
    const h = await harness(t);
    const rap = await h.connect(5);
    await rap.subscribe([{ topic: 'rap/t', qos: 0, rap: true }]);
    const plain = await h.connect(5);
    await plain.subscribe([{ topic: 'rap/t', qos: 0, rap: false }]);
    const pub = await h.connect(5);
    await pub.publish('rap/t', 'r', { qos: 1, retain: true });
    await pub.publish('rap/t', 'n', { qos: 1, retain: false, messageId: 2 });
    assert.deepEqual((await rap.drainPublishes()).map((p) => [p.payload.toString(), p.retain]), [['r', true], ['n', false]]);
    assert.deepEqual((await plain.drainPublishes()).map((p) => [p.payload.toString(), p.retain]), [['r', false], ['n', false]]);
  });

  it('v5: retained messages are not sent on a shared subscription', async (t) => {
    const h = await harness(t);
    const pub = await h.connect(5);
    await pub.publish('shr/t', 'kept', { qos: 1, retain: true });
    const shared = await h.connect(5);
    assert.deepEqual(await shared.subscribe([{ topic: '$share/g/shr/t', qos: 1 }]), [1]);
    assert.deepEqual(await shared.drainPublishes(), [], 'no retained message on a shared subscription');
    // The same client on a normal subscription does get it.
    await shared.subscribe([{ topic: 'shr/t', qos: 1 }], undefined, 2);
    const got = await shared.drainPublishes();
    assert.deepEqual(got.map((p) => [p.payload.toString(), p.retain]), [['kept', true]]);
  });
});
