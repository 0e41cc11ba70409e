/**
 * The PUBLISH fast path must be byte-for-byte what the generic codec produces and
 * decode to the same packet (mqtt-packet's round-trip table style).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import mqttPacket from 'mqtt-packet';
import { decodePublishFast, encodePublishFast } from '../../src/protocol/publish-codec.js';
import type { ProtocolVersion, PublishPacket, QoS } from '../../src/protocol/packets.js';
import { ProtocolViolation } from '../../src/core/errors.js';

const payloads = [Buffer.alloc(0), Buffer.from('hi'), Buffer.alloc(200, 1), Buffer.alloc(20_000, 2), Buffer.alloc(2_100_000, 3)];
const topics = ['a', 'sensors/température/1', 'x'.repeat(300)];

test('fast PUBLISH encoding equals mqtt-packet byte for byte, and decodes back', () => {
  let cases = 0;
  for (const version of [4, 5] as ProtocolVersion[]) {
    for (const qos of [0, 1, 2] as QoS[]) {
      for (const payload of payloads) {
        for (const topic of topics) {
          for (const flags of [{ dup: false, retain: false }, { dup: qos > 0, retain: true }]) {
            const packet: PublishPacket = { cmd: 'publish', topic, payload, qos, ...flags, ...(qos > 0 ? { messageId: 4242 } : {}) };
            const ours = encodePublishFast(packet, version);
            const theirs = mqttPacket.generate(packet, { protocolVersion: version });
            assert.ok(ours.equals(theirs), `encode v${version} qos${qos} ${payload.length}B`);
            const back = decodePublishFast(ours, version)!;
            assert.equal(back.topic, topic);
            assert.ok(Buffer.from(back.payload).equals(payload));
            assert.equal(back.qos, qos);
            assert.equal(back.dup, flags.dup);
            assert.equal(back.retain, flags.retain);
            assert.equal(back.messageId, qos > 0 ? 4242 : undefined);
            cases++;
          }
        }
      }
    }
  }
  assert.equal(cases, 180);
});

test('a v5 PUBLISH with properties is left to the generic decoder', () => {
  const withProps = mqttPacket.generate({ cmd: 'publish', topic: 't', payload: Buffer.from('x'), qos: 0, dup: false, retain: false, properties: { contentType: 'text/plain' } }, { protocolVersion: 5 });
  assert.equal(decodePublishFast(withProps, 5), null);
});

test('malformed PUBLISH frames are refused', () => {
  const bad = (bytes: number[], version: ProtocolVersion = 4): void => {
    assert.throws(() => decodePublishFast(Buffer.from(bytes), version), ProtocolViolation, JSON.stringify(bytes));
  };
  bad([0x36, 0x03, 0x00, 0x01, 0x61]); // QoS 3
  bad([0x30, 0x03, 0x00, 0x05, 0x61]); // topic longer than the packet
  bad([0x32, 0x03, 0x00, 0x01, 0x61]); // QoS 1 without a packet id
  bad([0x32, 0x05, 0x00, 0x01, 0x61, 0x00, 0x00]); // packet id 0
  bad([0x30, 0x03, 0x00, 0x01, 0x61], 5); // v5 without property length
});

test('short acknowledgements equal mqtt-packet and decode back; other forms are left alone', async () => {
  const { decodeAckFast, encodeAckFast } = await import('../../src/protocol/publish-codec.js');
  for (const cmd of ['puback', 'pubrec', 'pubrel', 'pubcomp'] as const) {
    for (const version of [4, 5]) {
      // v5: the short form is what mqtt-packet writes for an explicit Success (and what
      // Mosquitto sends; paho 1.6 fails on the long form).
      const theirs = mqttPacket.generate({ cmd, messageId: 513, ...(version === 5 ? { reasonCode: 0 } : {}) }, { protocolVersion: version });
      assert.ok(encodeAckFast(cmd, 513).equals(theirs), `${cmd} v${version}`);
    }
    assert.deepEqual(decodeAckFast(encodeAckFast(cmd, 513)), { cmd, messageId: 513, length: 2 });
  }
  assert.equal(decodeAckFast(Buffer.from([0x60, 0x02, 0x00, 0x01])), null, 'PUBREL with wrong flags goes to the strict decoder');
  const withReason = mqttPacket.generate({ cmd: 'puback', messageId: 1, reasonCode: 0x10 }, { protocolVersion: 5 });
  assert.equal(decodeAckFast(withReason), null);
});

test('packet identifier 0 or unparseable is refused as malformed', async () => {
  const { PacketDecoder } = await import('../../src/protocol/codec.js');
  for (const bytes of [
    [0x40, 0x02, 0x00, 0x00], // PUBACK id 0, fast path
    [0x62, 0x01, 0x00], // PUBREL too short for an id: the codec says -1
    [0x82, 0x06, 0x00, 0x00, 0x00, 0x01, 0x61, 0x00], // SUBSCRIBE id 0
  ]) {
    assert.throws(() => new PacketDecoder().decode(Buffer.from(bytes)), ProtocolViolation, JSON.stringify(bytes));
  }
});

test('a decoder hands back the same topic while its bytes repeat, and never for other bytes', async () => {
  const { PacketDecoder, encodePacket } = await import('../../src/protocol/codec.js');
  const decoder = new PacketDecoder();
  const publish = (topic: string): Buffer => encodePacket({ cmd: 'publish', topic, payload: Buffer.from('x'), qos: 0, dup: false, retain: false }, 4);
  const topicOf = (frame: Buffer): string => (decoder.decode(frame) as { topic: string }).topic;
  for (const topic of ['a/b', 'a/b', 'a/c', 'a/b', 'é/b', 'é/b', 'a/b']) assert.equal(topicOf(publish(topic)), topic);
  // A frame given as a range of a larger chunk: the payload ends at the range's end.
  const two = Buffer.concat([publish('a/b'), publish('z')]);
  const first = publish('a/b').length;
  const p = decoder.decodeAt(two, first, two.length) as { topic: string; payload: Buffer };
  assert.deepEqual([p.topic, p.payload.toString()], ['z', 'x']);
  assert.equal(decoder.frameNeeded, false, 'a fast-path PUBLISH needs no frame Buffer');

  // "é" was the last topic; a lone 0xE9 byte has the same code unit but is not UTF-8.
  assert.equal(topicOf(publish('é')), 'é');
  const lone = Buffer.from([0x30, 0x04, 0x00, 0x01, 0xe9, 0x78]);
  assert.throws(() => decoder.decode(lone), (e: unknown) => e instanceof ProtocolViolation && e.reasonCode === 0x81 && /UTF-8/.test(e.message));
  // U+0000 in a topic is malformed too [MQTT-1.5.4-2], checked by the decoder on the topic's bytes.
  const nul = Buffer.from([0x30, 0x05, 0x00, 0x02, 0x61, 0x00, 0x78]);
  assert.throws(() => new PacketDecoder().decode(nul), (e: unknown) => e instanceof ProtocolViolation && e.reasonCode === 0x81);
  // A well-formed U+FFFD (EF BF BD) in a topic is a valid topic.
  assert.equal(topicOf(publish('a\uFFFDb')), 'a\uFFFDb');
  // Anything but a fast-path PUBLISH or acknowledgement keeps its frame.
  decoder.decode(Buffer.from([0xc0, 0x00]));
  assert.equal(decoder.frameNeeded, true);
});
