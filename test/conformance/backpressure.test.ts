/**
 * Publishers wait for a connected subscriber that falls behind instead of overflowing its
 * queue: with a small queue bound and a subscriber that takes one message at a time,
 * every acknowledged QoS 1 message arrives and none is dropped.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import mqttPacket from 'mqtt-packet';
import { VERSIONS, harness, vname } from './support.js';

const COUNT = 60;

describe('backpressure from a slow subscriber', () => {
  for (const version of VERSIONS) {
    it(`${vname(version)}: a burst larger than the queue bound is delivered whole, in order`, async (t) => {
      const h = await harness(t, { mqtt: { maxQueued: 20, maxInflight: 1 } });
      const sub = await h.connect(version, h.id('slow'), version === 5 ? { properties: { receiveMaximum: 1 } } : {});
      await sub.subscribe([{ topic: 'bp/t', qos: 1 }]);
      const pub = await h.connect(version);
      const burst = Buffer.concat(
        Array.from({ length: COUNT }, (_, i) =>
          mqttPacket.generate({ cmd: 'publish', topic: 'bp/t', payload: Buffer.from(String(i)), qos: 1, messageId: i + 1, retain: false, dup: false }, { protocolVersion: version }),
        ),
      );
      pub.sendBytes(burst);
      for (let i = 0; i < COUNT; i++) {
        const p = await sub.expect('publish');
        assert.equal(p.payload.toString(), String(i));
        sub.send({ cmd: 'puback', messageId: p.messageId! });
      }
      for (let i = 0; i < COUNT; i++) assert.equal((await pub.expect('puback')).messageId, i + 1);
      assert.equal(h.broker.counters.droppedQueueFull, 0);
    });
  }
});
