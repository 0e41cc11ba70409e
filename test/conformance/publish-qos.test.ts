/**
 * PUBLISH conformance for MQTT 3.1.1 and MQTT 5: the QoS 0/1/2 flows in both directions,
 * exactly-once delivery, QoS downgrade, overlapping subscriptions, `$` topics, the v5
 * "no matching subscribers" acknowledgement and wildcard matching.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { harness, VERSIONS, vname, type Peer, type PublishPacket } from './support.js';
import { MatchList } from '../../src/broker/router/topic-router.js';
import type { Session } from '../../src/broker/session/session.js';

describe('PUBLISH and QoS', () => {
  for (const v of VERSIONS) {
    for (const qos of [0, 1, 2] as const) {
      it(`${vname(v)}: QoS ${qos} flow, publisher to broker and broker to subscriber`, async (t) => {
        const h = await harness(t);
        const sub = await h.connect(v);
        assert.deepEqual(await sub.subscribe([{ topic: 'flow/t', qos: 2 }]), [2]);
        const pub = await h.connect(v);

        // Publisher → broker, with the packet id echoed in each acknowledgement.
        pub.send({ cmd: 'publish', topic: 'flow/t', payload: Buffer.from([0, 1, 2, 255]), qos, messageId: qos > 0 ? 4242 : undefined, retain: false, dup: false } as PublishPacket);
        if (qos === 1) {
          const ack = await pub.expect('puback');
          assert.equal(ack.messageId, 4242);
          if (v === 5) assert.equal(ack.reasonCode ?? 0, 0);
        } else if (qos === 2) {
          const rec = await pub.expect('pubrec');
          assert.equal(rec.messageId, 4242);
          if (v === 5) assert.equal(rec.reasonCode ?? 0, 0);
          pub.send({ cmd: 'pubrel', messageId: 4242 });
          const comp = await pub.expect('pubcomp');
          assert.equal(comp.messageId, 4242);
          if (v === 5) assert.equal(comp.reasonCode ?? 0, 0);
        }
        await pub.expectNothingBeforePing();

        // Broker → subscriber.
        const msg = await sub.expect('publish');
        assert.equal(msg.topic, 'flow/t');
        assert.deepEqual([...msg.payload], [0, 1, 2, 255]);
        assert.equal(msg.qos, qos);
        assert.equal(msg.retain, false);
        assert.equal(msg.dup, false);
        if (qos === 0) assert.equal(msg.messageId, undefined);
        else assert.ok(typeof msg.messageId === 'number' && msg.messageId > 0, 'a non-zero packet id');
        const session = h.broker.sessions.get(sub.clientId)!;
        if (qos === 1) {
          assert.equal(session.inflightCount, 1, 'held in flight until PUBACK');
          sub.send({ cmd: 'puback', messageId: msg.messageId! });
        } else if (qos === 2) {
          sub.send({ cmd: 'pubrec', messageId: msg.messageId! });
          const rel = await sub.expect('pubrel');
          assert.equal(rel.messageId, msg.messageId);
          assert.equal(session.inflightCount, 1, 'held in flight until PUBCOMP');
          sub.send({ cmd: 'pubcomp', messageId: msg.messageId! });
        }
        await sub.sync();
        assert.equal(session.inflightCount, 0, 'the flow completed');
        await sub.expectNothingBeforePing();
      });
    }

    it(`${vname(v)}: QoS 2 exactly once: a re-sent PUBLISH before PUBREL is acknowledged but not delivered again`, async (t) => {
      const h = await harness(t);
      const sub = await h.connect(v);
      await sub.subscribe([{ topic: 'eo/t', qos: 2 }]);
      const pub = await h.connect(v);
      const packet: PublishPacket = { cmd: 'publish', topic: 'eo/t', payload: 'once', qos: 2, messageId: 9, retain: false, dup: false };
      pub.send(packet);
      assert.equal((await pub.expect('pubrec')).messageId, 9);
      pub.send({ ...packet, dup: true });
      assert.equal((await pub.expect('pubrec')).messageId, 9, 'the duplicate is acknowledged again');
      const first = await sub.expect('publish');
      assert.equal(first.payload.toString(), 'once');
      sub.send({ cmd: 'pubrec', messageId: first.messageId! });
      await sub.expect('pubrel');
      sub.send({ cmd: 'pubcomp', messageId: first.messageId! });
      await sub.expectNothingBeforePing();

      pub.send({ cmd: 'pubrel', messageId: 9 });
      assert.equal((await pub.expect('pubcomp')).messageId, 9);
      // After PUBCOMP the id is free: the same id carries a new message.
      pub.send({ ...packet, payload: 'twice' });
      assert.equal((await pub.expect('pubrec')).messageId, 9);
      assert.equal((await sub.expect('publish')).payload.toString(), 'twice');
    });

    it(`${vname(v)}: PUBREL for an unknown packet id is answered with PUBCOMP${v === 5 ? ' 0x92' : ''}`, async (t) => {
      const h = await harness(t);
      const c = await h.connect(v);
      c.send({ cmd: 'pubrel', messageId: 777 });
      const comp = await c.expect('pubcomp');
      assert.equal(comp.messageId, 777);
      if (v === 5) assert.equal(comp.reasonCode, 0x92, 'Packet Identifier not found');
      else assert.equal(comp.reasonCode, undefined);
      await c.sync();
    });

    it(`${vname(v)}: a message is delivered at the lower of its QoS and the subscription's QoS`, async (t) => {
      const h = await harness(t);
      const subs: Peer[] = [];
      for (const q of [0, 1, 2] as const) {
        const s = await h.connect(v);
        assert.deepEqual(await s.subscribe([{ topic: 'dg/t', qos: q }]), [q]);
        subs.push(s);
      }
      const pub = await h.connect(v);
      for (const pq of [0, 1, 2] as const) {
        await pub.publish('dg/t', `q${pq}`, { qos: pq, messageId: 10 + pq });
        for (let sq = 0; sq < 3; sq++) {
          const m = await subs[sq]!.expect('publish');
          assert.equal(m.payload.toString(), `q${pq}`);
          assert.equal(m.qos, Math.min(pq, sq), `message QoS ${pq}, subscription QoS ${sq}`);
          if (m.qos === 0) assert.equal(m.messageId, undefined);
          if (m.qos === 1) subs[sq]!.send({ cmd: 'puback', messageId: m.messageId! });
          if (m.qos === 2) {
            subs[sq]!.send({ cmd: 'pubrec', messageId: m.messageId! });
            await subs[sq]!.expect('pubrel');
            subs[sq]!.send({ cmd: 'pubcomp', messageId: m.messageId! });
          }
        }
      }
      for (const s of subs) await s.expectNothingBeforePing();
    });

    it(`${vname(v)}: overlapping subscriptions give one delivery at the highest QoS${v === 5 ? ' with every subscription identifier' : ''}`, async (t) => {
      const h = await harness(t);
      // Two subscribers with mirrored QoS per filter, so the highest QoS is neither the
      // first nor the last match for both, whatever order the router visits filters in.
      const layouts = [
        [
          { topic: 'ov/#', qos: 0 as const, id: 11 },
          { topic: 'ov/+', qos: 1 as const, id: 22 },
          { topic: 'ov/x', qos: 2 as const, id: 33 },
        ],
        [
          { topic: 'ov/#', qos: 2 as const, id: 11 },
          { topic: 'ov/+', qos: 1 as const, id: 22 },
          { topic: 'ov/x', qos: 0 as const, id: 33 },
        ],
      ];
      const subs: Peer[] = [];
      for (const filters of layouts) {
        const sub = await h.connect(v);
        for (const [i, f] of filters.entries()) {
          const granted = await sub.subscribe([{ topic: f.topic, qos: f.qos }], v === 5 ? { subscriptionIdentifier: f.id } : undefined, i + 1);
          assert.deepEqual(granted, [f.qos]);
        }
        subs.push(sub);
      }
      const pub = await h.connect(v);
      await pub.publish('ov/x', 'one', { qos: 2 });
      for (const sub of subs) {
        const got = await sub.drainPublishes();
        assert.equal(got.length, 1, `one delivery, got ${got.length}`);
        const m = got[0]!;
        assert.equal(m.qos, 2, 'the highest granted QoS');
        if (v === 5) {
          const ids = m.properties?.subscriptionIdentifier;
          assert.deepEqual([ids].flat().sort((a, b) => (a as number) - (b as number)), [11, 22, 33]);
        } else {
          assert.equal(m.properties, undefined);
        }
      }
    });

    it(`${vname(v)}: \`$\` topics: publishing is refused${v === 5 ? ' with PUBACK 0x87' : ' (v3.1.1: acknowledged and dropped)'}, and # / + never match them`, async (t) => {
      const h = await harness(t);
      const all = await h.connect(v);
      assert.deepEqual(await all.subscribe([{ topic: '#', qos: 1 }]), [1]);
      const plus = await h.connect(v);
      assert.deepEqual(await plus.subscribe([{ topic: '+/bar', qos: 1 }]), [1]);
      const dollar = await h.connect(v);
      // SECURITY: `$` filters belong to the broker.
      assert.deepEqual(await dollar.subscribe([{ topic: '$foo/#', qos: 1 }]), [v === 5 ? 0x87 : 0x80]);

      const pub = await h.connect(v);
      // The v3.1.1 PUBACK has no way to say no: the broker acknowledges and drops, as the spec allows.
      assert.equal(await pub.publish('$foo/bar', 'x', { qos: 1 }), v === 5 ? 0x87 : 0);
      await pub.publish('foo/bar', 'y', { qos: 1 });
      for (const s of [all, plus]) {
        const got = await s.drainPublishes();
        assert.deepEqual(got.map((p) => p.topic), ['foo/bar']);
      }
      assert.deepEqual(await dollar.drainPublishes(), []);

      // The router itself: a leading wildcard never matches a `$` topic [MQTT-4.7.2-1]
      // (the default authorizer also hides `$` topics, so this is checked behind it).
      const matched = (topic: string): string[] => {
        const list = new MatchList<Session>();
        h.broker.router.match(topic, true, list);
        return list.entries.slice(0, list.length).map((e) => e!.subscriber.clientId).sort();
      };
      assert.deepEqual(matched('$SYS/bar'), []);
      assert.deepEqual(matched('SYS/bar'), [all.clientId, plus.clientId].sort());
    });

    it(`${vname(v)}: QoS 1/2 acknowledgement ${v === 5 ? 'carries 0x10 when no one is subscribed, 0x00 otherwise' : 'has no reason code'}`, async (t) => {
      const h = await harness(t);
      const pub = await h.connect(v);
      assert.equal(await pub.publish('nobody/t', 'x', { qos: 1 }), v === 5 ? 0x10 : 0);
      assert.equal(await pub.publish('nobody/t', 'x', { qos: 2, messageId: 2 }), v === 5 ? 0x10 : 0);
      const sub = await h.connect(v);
      await sub.subscribe([{ topic: 'nobody/t', qos: 0 }]);
      assert.equal(await pub.publish('nobody/t', 'x', { qos: 1, messageId: 3 }), 0);
      assert.equal(await pub.publish('nobody/t', 'x', { qos: 2, messageId: 4 }), 0);
    });

    it(`${vname(v)}: wildcard matching of + and #, including a/# matching a`, async (t) => {
      const h = await harness(t);
      const topics = ['a', 'a/b', 'a/b/c', 'a/', 'a//c', '/b', 'ab', 'b/a', 'a/c', 'a/b/d'];
      const expected: Record<string, string[]> = {
        'a/#': ['a', 'a/b', 'a/b/c', 'a/', 'a//c', 'a/c', 'a/b/d'],
        'a/+': ['a/b', 'a/', 'a/c'],
        '+/+': ['a/b', 'a/', '/b', 'b/a', 'a/c'],
        '+': ['a', 'ab'],
        '#': topics,
        'a/+/c': ['a/b/c', 'a//c'],
        '+/b/#': ['a/b', 'a/b/c', '/b', 'a/b/d'],
        'a/b': ['a/b'],
      };
      const subs = new Map<string, Peer>();
      for (const filter of Object.keys(expected)) {
        const s = await h.connect(v);
        assert.deepEqual(await s.subscribe([{ topic: filter, qos: 0 }]), [0]);
        subs.set(filter, s);
      }
      const pub = await h.connect(v);
      for (const [i, topic] of topics.entries()) await pub.publish(topic, topic, { qos: 1, messageId: i + 1 });
      for (const [filter, s] of subs) {
        const got = (await s.drainPublishes()).map((p) => p.topic);
        assert.deepEqual(got, expected[filter], `filter ${filter}`);
      }
    });
  }

  it('v5: PUBREC for an unknown packet id is answered with PUBREL 0x92', async (t) => {
    const h = await harness(t);
    const c = await h.connect(5);
    c.send({ cmd: 'pubrec', messageId: 555 });
    const rel = await c.expect('pubrel');
    assert.equal(rel.messageId, 555);
    assert.equal(rel.reasonCode, 0x92);
  });
});
