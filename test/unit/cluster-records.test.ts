/**
 * The bytes the cluster writes (issue 12): message envelopes (NATS bodies, stream entries,
 * retained values) and the sessions bucket's owner records round-trip exactly, and
 * anything else is refused as a whole (null), never half-read.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Message } from '../../src/broker/message.js';
import { decodeEnvelope, encodeEnvelope } from '../../src/cluster/message-envelope.js';
import { decodeOwnerRecord, encodeOwnerRecord, type OwnerRecord } from '../../src/cluster/session-record.js';

const full: Message = {
  topic: 'a/b',
  payload: Buffer.from([0, 1, 2, 0xff]),
  qos: 2,
  retain: true,
  properties: {
    payloadFormatIndicator: false,
    contentType: 'application/cbor',
    responseTopic: 'reply/é',
    correlationData: Buffer.from([9, 8, 7]),
    userProperties: { 'clé': 'välue ☃', multi: ['1', '2'] },
  },
  expiresAt: 1_800_000_000_000,
  origin: 'dev-1',
};

test('an envelope round-trips every field of a message, properties included', () => {
  const decoded = decodeEnvelope(encodeEnvelope('n1.x.1', full), 'a/b', 2);
  assert.ok(decoded !== null);
  assert.equal(decoded.id, 'n1.x.1');
  assert.deepEqual(decoded.message, full);
  const bare: Message = { topic: 't', payload: Buffer.alloc(0), qos: 0, retain: false, properties: undefined, expiresAt: 0, origin: '' };
  assert.deepEqual(decodeEnvelope(encodeEnvelope('i', bare), 't')?.message, bare);
});

test('an envelope is refused whole: wrong magic, truncated, bad meta, or a QoS the subject contradicts', () => {
  const good = encodeEnvelope('id', full);
  assert.equal(decodeEnvelope(good, 'a/b', 1), null, 'subject says QoS 1, the message QoS 2');
  const wrongMagic = Buffer.from(good);
  wrongMagic[0] = 0x58;
  assert.equal(decodeEnvelope(wrongMagic, 'a/b'), null);
  assert.equal(decodeEnvelope(good.subarray(0, 6), 'a/b'), null);
  const longMeta = Buffer.from(good);
  longMeta.writeUInt32BE(good.length, 4);
  assert.equal(decodeEnvelope(longMeta, 'a/b'), null, 'a meta length past the end');
  const meta = (o: unknown): Buffer => {
    const json = Buffer.from(JSON.stringify(o));
    const head = Buffer.alloc(8);
    head.write('BMQ1', 0, 'latin1');
    head.writeUInt32BE(json.length, 4);
    return Buffer.concat([head, json]);
  };
  assert.ok(decodeEnvelope(meta({ i: 'x', o: '', q: 0, r: 0, e: 0 }), 't') !== null, 'the minimal meta reads');
  assert.equal(decodeEnvelope(meta({ i: '', o: '', q: 0, r: 0, e: 0 }), 't'), null, 'empty id');
  assert.equal(decodeEnvelope(meta({ i: 'x', o: '', q: 3, r: 0, e: 0 }), 't'), null, 'QoS 3');
  assert.equal(decodeEnvelope(meta({ i: 'x', o: '', q: 0, r: 2, e: 0 }), 't'), null, 'retain 2');
  assert.equal(decodeEnvelope(meta({ i: 'x', o: '', q: 0, r: 0, e: -1 }), 't'), null, 'negative expiry');
  assert.equal(decodeEnvelope(meta({ i: 'x', o: '', q: 0, r: 0, e: 0, p: '{"up":{"k":1}}' }), 't'), null, 'a user property that is not a string');
  assert.equal(decodeEnvelope(meta([1, 2]), 't'), null, 'not an object');
});

test('an owner record round-trips its durable session and will; a malformed one is refused', () => {
  const identity = { principal: 'dev-1', method: 'certificate' as const, remoteAddress: '127.0.0.1', listener: 'mqtts' };
  const record: OwnerRecord = {
    node: 'edge-1',
    epoch: 7,
    claimedAt: 1_796_000_000_000,
    session: {
      protocolVersion: 5,
      expiryInterval: 3600,
      disconnectedAt: 0,
      subscriptions: [{ filter: 'a/#', qos: 2, noLocal: true, retainAsPublished: false, retainHandling: 1, subscriptionId: 4 }],
      identity,
      cursor: 41,
      incomingQos2: [3, 65535],
      outboundQos2: [{ streamSeq: 42, packetId: 9, state: 'pubrel-sent' }],
    },
    will: { message: { ...full, retain: false }, delay: 30, expiryInterval: 60, identity },
  };
  assert.deepEqual(decodeOwnerRecord(Buffer.from(encodeOwnerRecord(record))), record);
  const owner: OwnerRecord = { node: 'n', epoch: 1, claimedAt: 5 };
  assert.deepEqual(decodeOwnerRecord(Buffer.from(encodeOwnerRecord(owner))), owner);
  const bad = (o: unknown): OwnerRecord | null => decodeOwnerRecord(Buffer.from(JSON.stringify(o)));
  assert.equal(bad({ n: 'n', e: -1, t: 0 }), null, 'negative epoch');
  assert.equal(bad({ n: 'n', e: 1, t: 0, s: { v: 9, x: 0, d: 0, subs: '[]', c: 0, q2: [], o: [] } }), null, 'protocol version 9');
  assert.equal(bad({ n: 'n', e: 1, t: 0, s: { v: 5, x: 0, d: 0, subs: '[]', c: 0, q2: [0], o: [] } }), null, 'packet id 0');
  assert.equal(bad({ n: 'n', e: 1, t: 0, s: { v: 5, x: 0, d: 0, subs: '[]', c: 0, q2: [], o: [[1, 2, 7]] } }), null, 'outbound state 7');
  assert.equal(bad({ n: 'n', e: 1, t: 0, w: { t: '', m: '', d: 0, x: 0 } }), null, 'a will without a topic');
  assert.equal(decodeOwnerRecord(Buffer.from('not json')), null);
});
