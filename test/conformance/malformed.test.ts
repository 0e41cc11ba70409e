/**
 * Malformed and forbidden input, hand-built byte by byte, for MQTT 3.1.1 and MQTT 5: the
 * broker closes the connection (v5: after a DISCONNECT with the right reason code), says
 * nothing it should not, and keeps serving new clients afterwards.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { disconnectCode, expectServerDisconnect, frame, harness, rawConnect, rawPublish, str, u16, varint, VERSIONS, vname, type Version } from './support.js';

const MALFORMED = 0x81;
const PROTOCOL_ERROR = 0x82;
const TOPIC_NAME_INVALID = 0x90;
const PACKET_TOO_LARGE = 0x95;

/** A SUBSCRIBE body: packet id, (v5: empty properties), then filter/options pairs. */
function subscribeBody(v: Version, pairs: Array<[number[], number]>): number[] {
  return [...u16(1), ...(v === 5 ? [0] : []), ...pairs.flatMap(([filter, opts]) => [...str(filter), opts])];
}

interface Case {
  name: string;
  bytes: (v: Version) => Buffer;
  code: number;
  versions?: readonly Version[];
}

const cases: Case[] = [
  {
    name: 'a remaining length with 5 continuation bytes',
    bytes: () => Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x7f]),
    code: MALFORMED,
  },
  {
    name: 'SUBSCRIBE with reserved header flags 0000 (must be 0010)',
    bytes: (v) => frame(0x80, subscribeBody(v, [[[...Buffer.from('a/b')], 0]])),
    code: MALFORMED,
  },
  {
    name: 'UNSUBSCRIBE with reserved header flags 0000 (must be 0010)',
    bytes: (v) => frame(0xa0, [...u16(1), ...(v === 5 ? [0] : []), ...str('a/b')]),
    code: MALFORMED,
  },
  {
    name: 'PUBREL with reserved header flags 0000 (must be 0010)',
    bytes: () => frame(0x60, u16(1)),
    code: MALFORMED,
  },
  {
    name: 'PINGREQ with header flags set',
    bytes: () => Buffer.from([0xc1, 0x00]),
    code: MALFORMED,
  },
  {
    name: 'PUBLISH with QoS 3',
    bytes: (v) => frame(0x36, [...str('a/b'), ...u16(1), ...(v === 5 ? [0] : []), 0x78]),
    code: MALFORMED,
  },
  {
    name: 'PUBLISH with DUP set on QoS 0',
    bytes: (v) => frame(0x38, [...str('a/b'), ...(v === 5 ? [0] : []), 0x78]),
    code: MALFORMED,
  },
  {
    name: 'PUBLISH topic with ill-formed UTF-8 (0xC3 0x28)',
    bytes: (v) => rawPublish(v, [0x61, 0x2f, 0xc3, 0x28]),
    code: MALFORMED,
  },
  {
    name: 'PUBLISH topic with U+0000',
    bytes: (v) => rawPublish(v, [0x61, 0x00, 0x62]),
    code: MALFORMED,
  },
  {
    name: 'PUBLISH topic with an encoded surrogate (0xED 0xA0 0x80)',
    bytes: (v) => rawPublish(v, [0x61, 0xed, 0xa0, 0x80]),
    code: MALFORMED,
  },
  {
    name: 'PUBLISH to a topic with + (wildcards are for filters)',
    bytes: (v) => rawPublish(v, [...Buffer.from('a/+/c')]),
    code: TOPIC_NAME_INVALID,
  },
  {
    name: 'PUBLISH to a topic with #',
    bytes: (v) => rawPublish(v, [...Buffer.from('a/#')]),
    code: TOPIC_NAME_INVALID,
  },
  {
    name: 'PUBLISH with an empty topic and no topic alias',
    bytes: (v) => rawPublish(v, []),
    code: PROTOCOL_ERROR,
  },
  {
    name: 'SUBSCRIBE with ill-formed UTF-8 in the filter',
    bytes: (v) => frame(0x82, subscribeBody(v, [[[0x61, 0x2f, 0xc3, 0x28], 0]])),
    code: MALFORMED,
  },
  {
    name: 'SUBSCRIBE with no topic filter',
    bytes: (v) => frame(0x82, subscribeBody(v, [])),
    code: PROTOCOL_ERROR,
  },
  {
    name: 'UNSUBSCRIBE with no topic filter',
    bytes: (v) => frame(0xa2, [...u16(1), ...(v === 5 ? [0] : [])]),
    code: PROTOCOL_ERROR,
  },
  {
    name: 'SUBSCRIBE requesting QoS 3',
    bytes: (v) => frame(0x82, subscribeBody(v, [[[...Buffer.from('a/b')], 3]])),
    code: MALFORMED,
  },
  {
    name: 'SUBSCRIBE with reserved option bits set',
    bytes: (v) => frame(0x82, subscribeBody(v, [[[...Buffer.from('a/b')], 0xc0]])),
    code: MALFORMED,
  },
  {
    name: 'SUBSCRIBE with retain handling 3',
    bytes: (v) => frame(0x82, subscribeBody(v, [[[...Buffer.from('a/b')], 0x30]])),
    code: PROTOCOL_ERROR,
    versions: [5],
  },
  {
    name: 'a packet of type 0 (reserved)',
    bytes: () => Buffer.from([0x00, 0x00]),
    code: MALFORMED,
  },
  {
    name: 'a CONNACK from a client',
    bytes: (v) => (v === 5 ? Buffer.from([0x20, 0x03, 0x00, 0x00, 0x00]) : Buffer.from([0x20, 0x02, 0x00, 0x00])),
    code: PROTOCOL_ERROR,
  },
];

describe('malformed input', () => {
  for (const v of VERSIONS) {
    for (const c of cases) {
      if (c.versions !== undefined && !c.versions.includes(v)) continue;
      it(`${vname(v)}: ${c.name} closes the connection${v === 5 ? ` with DISCONNECT 0x${c.code.toString(16)}` : ''}`, async (t) => {
        const h = await harness(t);
        const client = await h.connect(v);
        client.sendBytes(c.bytes(v));
        const packets = await expectServerDisconnect(client, c.code);
        assert.deepEqual(
          packets.filter((p) => p.cmd !== 'disconnect'),
          [],
          'no answer but the DISCONNECT',
        );
        await h.assertAlive(v);
      });
    }

    it(`${vname(v)}: a packet over the maximum size is refused from its fixed header, without waiting for the body${v === 5 ? ' (DISCONNECT 0x95)' : ''}`, async (t) => {
      const h = await harness(t);
      const c = await h.connect(v);
      // Only the fixed header: PUBLISH announcing 10 MB. The body never comes.
      c.sendBytes(Buffer.from([0x30, ...varint(10 * 1024 * 1024)]));
      await expectServerDisconnect(c, PACKET_TOO_LARGE);
      await h.assertAlive(v);
    });

    it(`${vname(v)}: maxPacketSize counts the whole packet: exactly the limit passes, one byte more is refused`, async (t) => {
      const h = await harness(t, { mqtt: { maxPacketSize: 1000 } });
      const sub = await h.connect(v);
      await sub.subscribe([{ topic: 'mx/t', qos: 0 }]);
      const pub = await h.connect(v);
      // Header 0x30 + 2-byte remaining length (997) = 1000 bytes in all.
      const fixed = 1 + 2;
      const topicPart = 2 + 4 + (v === 5 ? 1 : 0);
      const exact = frame(0x30, [...str('mx/t'), ...(v === 5 ? [0] : []), ...Buffer.alloc(1000 - fixed - topicPart, 0x61)]);
      assert.equal(exact.length, 1000);
      pub.sendBytes(exact);
      const got = await sub.expect('publish');
      assert.equal(got.payload.length, 1000 - fixed - topicPart);
      const over = frame(0x30, [...str('mx/t'), ...(v === 5 ? [0] : []), ...Buffer.alloc(1001 - fixed - topicPart, 0x61)]);
      assert.equal(over.length, 1001);
      pub.sendBytes(over);
      await expectServerDisconnect(pub, PACKET_TOO_LARGE);
      await sub.expectNothingBeforePing();
    });

    it(`${vname(v)}: garbage before CONNECT closes the connection with no answer`, async (t) => {
      const h = await harness(t);
      for (const bytes of [Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x7f]), Buffer.from([0x00, 0x00]), Buffer.from([0x82, 0x00])]) {
        const s = await h.socket(v);
        s.sendBytes(bytes);
        assert.deepEqual(await s.expectClose(), [], `no answer to ${bytes.toString('hex')}`);
      }
      await h.assertAlive(v);
    });

    it(`${vname(v)}: CONNECT with the reserved flag bit 0 set closes the connection`, async (t) => {
      const h = await harness(t);
      const s = await h.socket(v);
      s.sendBytes(rawConnect(v, 'x', { flags: 0x03 }));
      const packets = await s.expectClose();
      // v5 allows a CONNACK 0x81 before the close; no success either way.
      for (const p of packets) {
        assert.equal(p.cmd, 'connack');
        if (v === 5) assert.equal((p as { reasonCode?: number }).reasonCode, MALFORMED);
        else assert.notEqual((p as { returnCode?: number }).returnCode, 0);
      }
      await h.assertAlive(v);
    });
  }
});

describe('properties that would poison subscribers are refused at the door', () => {
  for (const bad of [
    { name: 'a user property without a value', prop: [0x26, 0x00, 0x01, 0x6b] },
    { name: 'a response topic with a wildcard', prop: [0x08, 0x00, 0x03, 0x61, 0x2f, 0x23] },
  ]) {
    it(`v5: a PUBLISH with ${bad.name} is refused and nothing reaches subscribers`, async (t) => {
      const h = await harness(t);
      const sub = await h.connect(5);
      await sub.subscribe([{ topic: 'poison/#', qos: 0 }]);
      const pub = await h.connect(5);
      const topic = [0x00, 0x08, ...Buffer.from('poison/t')];
      const body = [...topic, bad.prop.length, ...bad.prop, ...Buffer.from('x')];
      pub.sendBytes(Buffer.from([0x30, body.length, ...body]));
      const packets = await pub.expectClose();
      const code = disconnectCode(packets);
      assert.ok(code === 0x81 || code === 0x82, `DISCONNECT ${String(code)}`);
      await sub.expectNothingBeforePing();
      await h.assertAlive(5);
    });
  }
});
