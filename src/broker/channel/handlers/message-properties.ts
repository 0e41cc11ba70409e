/**
 * Turns PUBLISH packets and wills into broker messages, keeping only the properties that
 * are forwarded to subscribers [MQTT-3.3.2-*].
 */
import { ProtocolViolation } from '../../../core/errors.js';
import type { ConnectPacket, PublishPacket } from '../../../protocol/packets.js';
import { ReasonCode } from '../../../protocol/reason-codes.js';
import { isValidTopicName } from '../../../protocol/topic.js';
import type { Message, MessageProperties } from '../../message.js';

type ForwardedSource = {
  payloadFormatIndicator?: boolean;
  contentType?: string;
  responseTopic?: string;
  correlationData?: Buffer;
  userProperties?: MessageProperties['userProperties'];
};

/**
 * The codec can hand over properties whose values failed to parse (null) or user
 * properties of the wrong shape. They would be forwarded to every subscriber and fail
 * there, so a message carrying them is refused here, at the door [MQTT-1.5.7].
 */
function checkForwarded(p: ForwardedSource): void {
  const bad = (what: string): never => {
    throw new ProtocolViolation(ReasonCode.MalformedPacket, `malformed ${what} property`);
  };
  if (p.contentType !== undefined && typeof p.contentType !== 'string') bad('content type');
  if (p.responseTopic !== undefined) {
    if (typeof p.responseTopic !== 'string') bad('response topic');
    // A response topic is a topic name: no wildcards [MQTT-3.3.2-14].
    if (!isValidTopicName(p.responseTopic)) throw new ProtocolViolation(ReasonCode.ProtocolError, 'response topic is not a valid topic name');
  }
  if (p.correlationData !== undefined && !Buffer.isBuffer(p.correlationData)) bad('correlation data');
  const user = p.userProperties;
  if (user !== undefined) {
    if (user === null || typeof user !== 'object') bad('user');
    for (const key of Object.keys(user)) {
      const value = user[key];
      const ok = typeof value === 'string' || (Array.isArray(value) && value.every((v) => typeof v === 'string'));
      if (!ok) bad('user');
    }
  }
}

function forwarded(p: ForwardedSource | undefined): MessageProperties | undefined {
  if (p === undefined) return undefined;
  checkForwarded(p);
  let out: MessageProperties | undefined;
  if (p.payloadFormatIndicator !== undefined) (out ??= {}).payloadFormatIndicator = p.payloadFormatIndicator;
  if (p.contentType !== undefined) (out ??= {}).contentType = p.contentType;
  if (p.responseTopic !== undefined) (out ??= {}).responseTopic = p.responseTopic;
  if (p.correlationData !== undefined) (out ??= {}).correlationData = p.correlationData;
  if (p.userProperties !== undefined) (out ??= {}).userProperties = p.userProperties;
  return out;
}

function toBuffer(payload: string | Buffer): Buffer {
  return typeof payload === 'string' ? Buffer.from(payload) : payload;
}

export function messageFromPublish(packet: PublishPacket, topic: string, origin: string, now: number): Message {
  const props = packet.properties;
  const expiry = props?.messageExpiryInterval;
  return {
    topic,
    payload: toBuffer(packet.payload),
    qos: packet.qos,
    retain: packet.retain,
    properties: forwarded(props),
    expiresAt: expiry !== undefined ? now + expiry * 1000 : 0,
    origin,
  };
}

/** The will as a message; its expiry starts when it is published, so it is returned apart. */
/** The will as a message; its expiry starts when it is published, so it is returned apart. */
export function messageFromWill(will: NonNullable<ConnectPacket['will']>, origin: string): { message: Message; expiryInterval: number } {
  const props = will.properties;
  const message: Message = {
    topic: will.topic,
    payload: toBuffer(will.payload),
    qos: will.qos ?? 0,
    retain: will.retain ?? false,
    properties: forwarded(props),
    expiresAt: 0,
    origin,
  };
  return { message, expiryInterval: props?.messageExpiryInterval ?? 0 };
}
