/**
 * Authorization on the wire, byte-level, for MQTT 3.1.1 and 5: a refused PUBLISH at QoS
 * 1 and 2 (v5: PUBACK/PUBREC 0x87 with a reason string; v3.1.1: acknowledged as usual and
 * dropped), SUBACK 0x87/0x80, a maxQos grant, shared subscriptions authorized on their
 * inner filter, and a will refused at CONNECT (0x87 / return code 5).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { harness, vname, VERSIONS, type PublishPacket } from './support.js';

const AUTHZ = {
  roles: {
    client: {
      rules: [
        { effect: 'allow', action: 'all', topic: 'own/${clientId}/#' },
        { effect: 'allow', action: 'subscribe', topic: 'slow/#', maxQos: 1 },
        { effect: 'allow', action: 'subscribe', topic: 'jobs/#' },
      ],
    },
  },
  bindings: [{ role: 'client', attribute: 'clientId', value: 'c-*' }],
};

describe('authorization codes', () => {
  for (const v of VERSIONS) {
    it(`${vname(v)}: a refused PUBLISH at QoS 1 and 2 is answered and never delivered`, async (t) => {
      // $SYS off: its publications would count in `published`, which must stay 0 here.
      const h = await harness(t, { authz: AUTHZ, sys: { intervalSeconds: 0 } });
      const subId = h.id();
      const sub = await h.connect(v, subId);
      assert.deepEqual(await sub.subscribe([{ topic: `own/${subId}/#`, qos: 2 }]), [2]);
      const pub = await h.connect(v);
      pub.send({ cmd: 'publish', topic: `own/${subId}/x`, payload: Buffer.from('no'), qos: 1, messageId: 7, retain: false, dup: false } as PublishPacket);
      const ack = await pub.expect('puback');
      assert.equal(ack.messageId, 7);
      assert.equal(ack.reasonCode ?? 0, v === 5 ? 0x87 : 0);
      if (v === 5) assert.equal(ack.properties?.reasonString, 'no rule matched (default deny)');
      pub.send({ cmd: 'publish', topic: `own/${subId}/y`, payload: Buffer.from('no'), qos: 2, messageId: 8, retain: false, dup: false } as PublishPacket);
      const rec = await pub.expect('pubrec');
      assert.equal(rec.reasonCode ?? 0, v === 5 ? 0x87 : 0);
      if (v !== 5) {
        // 3.1.1: the flow completes as usual; the message is gone.
        pub.send({ cmd: 'pubrel', messageId: 8 });
        assert.equal((await pub.expect('pubcomp')).messageId, 8);
      }
      assert.deepEqual(await sub.drainPublishes(), []);
      assert.equal(h.broker.counters.published, 0);
    });

    it(`${vname(v)}: SUBACK refuses with ${v === 5 ? '0x87' : '0x80'}; maxQos grants lower; $share is authorized on its inner filter`, async (t) => {
      const h = await harness(t, { authz: AUTHZ });
      const c = await h.connect(v);
      const refused = v === 5 ? 0x87 : 0x80;
      const granted = await c.subscribe([
        { topic: 'own/someone-else/#', qos: 1 },
        { topic: 'slow/a', qos: 2 },
        { topic: '$share/workers/jobs/#', qos: 1 },
        { topic: '$share/workers/secret/#', qos: 1 },
        { topic: '#', qos: 0 },
      ]);
      assert.deepEqual(granted, [refused, 1, 1, refused, refused]);
    });

    it(`${vname(v)}: a will on a refused topic refuses the CONNECT`, async (t) => {
      const h = await harness(t, { authz: AUTHZ });
      const id = h.id();
      const { connack, peer } = await h.connectRaw(v, id, { will: { topic: 'elsewhere/will', payload: Buffer.from('x'), qos: 0, retain: false } });
      assert.equal(v === 5 ? connack.reasonCode : connack.returnCode, v === 5 ? 0x87 : 5);
      await peer.expectClose();
      await h.connect(v, id, { will: { topic: `own/${id}/will`, payload: Buffer.from('x'), qos: 0, retain: false } }).catch(() => assert.fail('a will on an allowed topic is admitted'));
    });
  }
});
