/**
 * A fast path for the one packet on the hot path: PUBLISH without MQTT 5 properties
 * (every v3.1.1 PUBLISH and most v5 ones). Profiling the broker under a QoS 0 fan-in load
 * showed ~12% of its CPU in mqtt-packet's per-packet overhead (its disabled `debug`
 * calls, BufferList bookkeeping and an EventEmitter per encode); the generic codec
 * remains for everything else, including any PUBLISH with properties.
 */
import { ProtocolViolation } from '../core/errors.js';
import { ReasonCode } from './reason-codes.js';
import { isValidMqttUtf8 } from './utf8.js';
import type { ProtocolVersion, PublishPacket, QoS } from './packets.js';

/**
 * Decodes a PUBLISH frame, or returns null when it carries v5 properties (the caller then
 * uses the generic decoder). Throws ProtocolViolation on malformed input. `previousTopic`
 * (the connection's last topic) is returned again, instead of a new string, when the frame
 * carries the same ASCII bytes: a device publishes to one or two topics, and a string per
 * PUBLISH was ~50 bytes of garbage.
 */
export function decodePublishFast(frame: Buffer, version: ProtocolVersion, previousTopic = '', start = 0, end = frame.length): PublishPacket | null {
  const b0 = frame[start]!;
  const qos = (b0 >> 1) & 3;
  if (qos === 3) throw new ProtocolViolation(ReasonCode.MalformedPacket, 'PUBLISH with QoS 3');
  let pos = start + 1;
  while ((frame[pos]! & 0x80) !== 0) pos++;
  pos++;
  if (pos + 2 > end) throw new ProtocolViolation(ReasonCode.MalformedPacket, 'PUBLISH too short');
  const topicLen = frame.readUInt16BE(pos);
  pos += 2;
  if (pos + topicLen > end) throw new ProtocolViolation(ReasonCode.MalformedPacket, 'PUBLISH topic overruns the packet');
  const topicStart = pos;
  pos += topicLen;
  let messageId: number | undefined;
  if (qos > 0) {
    if (pos + 2 > end) throw new ProtocolViolation(ReasonCode.MalformedPacket, 'PUBLISH without a packet identifier');
    messageId = frame.readUInt16BE(pos);
    if (messageId === 0) throw new ProtocolViolation(ReasonCode.MalformedPacket, 'packet identifier 0');
    pos += 2;
  }
  if (version === 5) {
    if (pos >= end) throw new ProtocolViolation(ReasonCode.MalformedPacket, 'PUBLISH without a property length');
    if (frame[pos] !== 0) return null;
    pos++;
  }
  let topic = previousTopic;
  if (!sameAsciiBytes(frame, topicStart, topicLen, previousTopic)) {
    topic = frame.toString('utf8', topicStart, topicStart + topicLen);
    // Ill-formed UTF-8 (decoded as U+FFFD) or U+0000 makes the packet malformed
    // [MQTT-1.5.4-1] [MQTT-1.5.4-2]: checked on the topic's own bytes.
    if ((topic.includes('\uFFFD') || topic.includes('\u0000')) && !isValidMqttUtf8(frame.subarray(topicStart, topicStart + topicLen))) {
      throw new ProtocolViolation(ReasonCode.MalformedPacket, 'topic name is not valid UTF-8');
    }
  }
  const packet: PublishPacket = {
    cmd: 'publish',
    topic,
    payload: frame.subarray(pos, end),
    qos: qos as QoS,
    dup: (b0 & 0x08) !== 0,
    retain: (b0 & 0x01) !== 0,
    length: end - start,
  };
  if (messageId !== undefined) packet.messageId = messageId;
  return packet;
}

/**
 * True when `bytes[start, start + len)` is the ASCII text `text`. A byte of 0x80 or more
 * never counts as equal: it is not ASCII, and a string decoded from other bytes could hold
 * the same code unit.
 */
function sameAsciiBytes(bytes: Buffer, start: number, len: number, text: string): boolean {
  if (text.length !== len) return false;
  for (let i = 0; i < len; i++) {
    const b = bytes[start + i]!;
    if (b >= 0x80 || b !== text.charCodeAt(i)) return false;
  }
  return true;
}

/** Encodes a PUBLISH that has no properties (v3.1.1, or v5 with an empty property set). */
export function encodePublishFast(packet: PublishPacket, version: ProtocolVersion): Buffer {
  const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
  return encodePublishFields(packet.topic, payload, packet.qos, packet.retain, packet.dup, packet.messageId ?? 0, version);
}

/**
 * The same, from the fields themselves: the broker's delivery path encodes a message
 * without building a packet object for it first.
 */
export function encodePublishFields(topic: string, payload: Buffer, qos: QoS, retain: boolean, dup: boolean, messageId: number, version: ProtocolVersion): Buffer {
  const topicLen = Buffer.byteLength(topic);
  const remaining = 2 + topicLen + (qos > 0 ? 2 : 0) + (version === 5 ? 1 : 0) + payload.length;
  const lenBytes = remaining < 128 ? 1 : remaining < 16384 ? 2 : remaining < 2097152 ? 3 : 4;
  const buf = Buffer.allocUnsafe(1 + lenBytes + remaining);
  buf[0] = 0x30 | (dup ? 0x08 : 0) | (qos << 1) | (retain ? 0x01 : 0);
  let pos = 1;
  let x = remaining;
  do {
    let byte = x % 128;
    x = Math.floor(x / 128);
    if (x > 0) byte |= 0x80;
    buf[pos++] = byte;
  } while (x > 0);
  buf.writeUInt16BE(topicLen, pos);
  pos += 2;
  pos += buf.write(topic, pos, 'utf8');
  if (qos > 0) {
    buf.writeUInt16BE(messageId, pos);
    pos += 2;
  }
  if (version === 5) buf[pos++] = 0;
  payload.copy(buf, pos);
  return buf;
}

type AckCmd = 'puback' | 'pubrec' | 'pubrel' | 'pubcomp';
const ACK_TYPES: Record<AckCmd, number> = { puback: 0x40, pubrec: 0x50, pubrel: 0x62, pubcomp: 0x70 };
const ACK_BY_TYPE: Array<AckCmd | undefined> = [];
ACK_BY_TYPE[4] = 'puback';
ACK_BY_TYPE[5] = 'pubrec';
ACK_BY_TYPE[6] = 'pubrel';
ACK_BY_TYPE[7] = 'pubcomp';

/** The short form of an acknowledgement (success, no properties): 4 bytes, same in v3.1.1 and v5. */
export function encodeAckFast(cmd: AckCmd, messageId: number): Buffer {
  const buf = Buffer.allocUnsafe(4);
  buf[0] = ACK_TYPES[cmd];
  buf[1] = 2;
  buf.writeUInt16BE(messageId, 2);
  return buf;
}

/**
 * Decodes a 4-byte acknowledgement frame, or returns null for any other frame (the
 * generic decoder handles reason codes and properties). PUBREL's fixed flags are checked
 * [MQTT-3.6.1-1].
 */
export function decodeAckFast(frame: Buffer, start = 0, end = frame.length): { cmd: AckCmd; messageId: number; length: number } | null {
  if (end - start !== 4 || frame[start + 1] !== 2) return null;
  const b0 = frame[start]!;
  const cmd = ACK_BY_TYPE[b0 >> 4];
  if (cmd === undefined || b0 !== ACK_TYPES[cmd]) return null;
  return { cmd, messageId: frame.readUInt16BE(start + 2), length: 2 };
}
