/**
 * Decoding and encoding behind our own types. Decoding takes one complete frame (from
 * FrameReader) and returns one packet or throws ProtocolViolation; the wire codec itself
 * (mqtt-packet) is an implementation detail of this file.
 */
import mqttPacket from 'mqtt-packet';
import { ProtocolViolation } from '../core/errors.js';
import { ReasonCode } from './reason-codes.js';
import type { Packet, ProtocolVersion } from './packets.js';
import { decodeAckFast, decodePublishFast, encodeAckFast, encodePublishFast } from './publish-codec.js';

export { encodePublishFields } from './publish-codec.js';

/**
 * One mqtt-packet parser shared by every connection. Frames arrive whole (FrameReader)
 * and parse synchronously, so the parser holds no state between two decodes except the
 * protocol version, which is set before each one. A parser per connection cost ~1.8 KB
 * of every idle connection (parser, packet, buffer list, listeners; measured in-process).
 */
const shared = { parser: newParser(), result: null as Packet | null, error: null as Error | null };

function newParser(): mqttPacket.Parser {
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  parser.on('packet', (p: Packet) => {
    shared.result = p;
  });
  parser.on('error', (e: Error) => {
    shared.error = e;
  });
  return parser;
}

/** The parser's settings, which a CONNECT overwrites and each decode sets again. */
type ParserWithSettings = mqttPacket.Parser & { settings: { protocolVersion: number } };

export class PacketDecoder {
  /** Protocol version learnt from CONNECT. */
  private version: ProtocolVersion = 4;
  /** The topic of the last PUBLISH, handed out again while its bytes repeat. */
  private lastTopic = '';

  /**
   * False after a decode when the packet's strings were checked against its bytes here (a
   * PUBLISH on the fast path, an acknowledgement): the caller needs no Buffer for the frame.
   */
  frameNeeded = true;

  /** Decodes exactly one frame. */
  decode(frame: Buffer): Packet {
    return this.decodeAt(frame, 0, frame.length);
  }

  /** Decodes the one frame `bytes[start, end)`. */
  decodeAt(bytes: Buffer, start: number, end: number): Packet {
    const type = bytes[start]! >> 4;
    this.frameNeeded = false;
    if (type === 3) {
      const fast = decodePublishFast(bytes, this.version, this.lastTopic, start, end);
      if (fast !== null) {
        this.lastTopic = fast.topic;
        return fast;
      }
    } else if (type >= 4 && type <= 7) {
      const ack = decodeAckFast(bytes, start, end);
      if (ack !== null) {
        checkPacketIdentifier(ack);
        return ack;
      }
    }
    this.frameNeeded = true;
    const frame = start === 0 && end === bytes.length ? bytes : bytes.subarray(start, end);
    const parser = shared.parser as ParserWithSettings;
    shared.result = null;
    shared.error = null;
    parser.settings = { protocolVersion: this.version };
    // parse() returns the bytes it kept. After an error, or with bytes kept from a whole
    // frame, the parser's state is not to be trusted with the next connection's frame: it
    // is replaced (rare: only malformed input gets here).
    const leftover = parser.parse(frame);
    if (leftover > 0 || shared.error !== null) shared.parser = newParser();
    const error = shared.error as Error | null;
    const packet = shared.result as Packet | null;
    shared.result = null;
    shared.error = null;
    if (error !== null) {
      const message = error.message;
      // Retain Handling 3 is a Protocol Error, not a malformed packet (MQTT 5 §3.8.3.1).
      const code = message.includes('protocol version') ? ReasonCode.UnsupportedProtocolVersion : message.includes('retain handling') ? ReasonCode.ProtocolError : ReasonCode.MalformedPacket;
      throw new ProtocolViolation(code, message);
    }
    if (packet === null) {
      throw new ProtocolViolation(ReasonCode.MalformedPacket, 'incomplete packet');
    }
    if (packet.cmd === 'connect') this.version = (packet.protocolVersion ?? 4) as ProtocolVersion;
    checkPacketIdentifier(packet);
    return packet;
  }
}

/** Packets that carry a packet identifier, and must carry a non-zero one [MQTT-2.2.1-3]. */
const NEEDS_PACKET_ID = new Set(['puback', 'pubrec', 'pubrel', 'pubcomp', 'subscribe', 'unsubscribe']);

/** The codec reports an unparseable identifier as -1 instead of failing; we refuse it. */
function checkPacketIdentifier(packet: Packet): void {
  const needs = NEEDS_PACKET_ID.has(packet.cmd) || (packet.cmd === 'publish' && packet.qos > 0);
  if (!needs) return;
  const id = packet.messageId;
  if (id === undefined || !Number.isInteger(id) || id < 1 || id > 65535) throw new ProtocolViolation(ReasonCode.MalformedPacket, `invalid packet identifier ${String(id)}`);
}

const encodeOptions: Record<ProtocolVersion, { protocolVersion: number }> = {
  3: { protocolVersion: 3 },
  4: { protocolVersion: 4 },
  5: { protocolVersion: 5 },
};

export function encodePacket(packet: Packet, version: ProtocolVersion): Buffer {
  switch (packet.cmd) {
    case 'publish':
      if (packet.properties === undefined) return encodePublishFast(packet, version);
      break;
    case 'puback':
    case 'pubrec':
    case 'pubrel':
    case 'pubcomp':
      if (packet.properties === undefined && (packet.reasonCode === undefined || packet.reasonCode === 0)) return encodeAckFast(packet.cmd, packet.messageId ?? 0);
      break;
    default:
      break;
  }
  return mqttPacket.generate(packet, encodeOptions[version]);
}

/** Offset of the packet identifier inside an encoded QoS>0 PUBLISH, for patching. */
export function publishPacketIdOffset(encoded: Buffer): number {
  let pos = 1;
  while ((encoded[pos]! & 0x80) !== 0) pos++;
  pos++;
  const topicLen = encoded.readUInt16BE(pos);
  return pos + 2 + topicLen;
}
