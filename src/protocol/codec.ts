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

export class PacketDecoder {
  private readonly parser: mqttPacket.Parser;
  private result: Packet | null = null;
  private error: Error | null = null;

  constructor() {
    this.parser = mqttPacket.parser({ protocolVersion: 4 });
    this.parser.on('packet', (p: Packet) => {
      this.result = p;
    });
    this.parser.on('error', (e: Error) => {
      this.error = e;
    });
  }

  /** Protocol version learnt from CONNECT; the PUBLISH fast path needs it. */
  private version: ProtocolVersion = 4;

  /** Decodes exactly one frame. */
  decode(frame: Buffer): Packet {
    const type = frame[0]! >> 4;
    if (type === 3) {
      const fast = decodePublishFast(frame, this.version);
      if (fast !== null) return fast;
    } else if (type >= 4 && type <= 7) {
      const ack = decodeAckFast(frame);
      if (ack !== null) return ack;
    }
    this.result = null;
    this.error = null;
    this.parser.parse(frame);
    if (this.error !== null) {
      const message = (this.error as Error).message;
      // Retain Handling 3 is a Protocol Error, not a malformed packet (MQTT 5 §3.8.3.1).
      const code = message.includes('protocol version') ? ReasonCode.UnsupportedProtocolVersion : message.includes('retain handling') ? ReasonCode.ProtocolError : ReasonCode.MalformedPacket;
      throw new ProtocolViolation(code, message);
    }
    const packet = this.result as Packet | null;
    if (packet === null) throw new ProtocolViolation(ReasonCode.MalformedPacket, 'incomplete packet');
    if (packet.cmd === 'connect') this.version = (packet.protocolVersion ?? 4) as ProtocolVersion;
    return packet;
  }
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
