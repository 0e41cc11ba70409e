/**
 * Builds and encodes outgoing PUBLISH packets. Shared encodings: one template per
 * (protocol family, QoS, retain flag) for all subscribers of a message; QoS 1/2 copies get
 * their packet id patched in instead of a fresh encode.
 */
import { encodePacket, publishPacketIdOffset } from '../../protocol/codec.js';
import type { ProtocolVersion, PublishPacket, QoS } from '../../protocol/packets.js';
import type { Message } from '../message.js';
import type { PublishCache } from '../session/outbound.js';

type PublishProperties = NonNullable<PublishPacket['properties']>;

export function buildPublishPacket(message: Message, qos: QoS, retainFlag: boolean, packetId: number, dup: boolean, version: ProtocolVersion, subscriptionIds: number[], topicAlias: { topic: string; alias: number } | null, now: number): PublishPacket {
  const packet: PublishPacket = {
    cmd: 'publish',
    topic: topicAlias !== null ? topicAlias.topic : message.topic,
    payload: message.payload,
    qos,
    retain: retainFlag,
    dup,
  };
  if (qos > 0) packet.messageId = packetId;
  if (version === 5) {
    const props: PublishProperties = {};
    let any = false;
    const mp = message.properties;
    if (mp !== undefined) {
      if (mp.payloadFormatIndicator !== undefined) props.payloadFormatIndicator = mp.payloadFormatIndicator;
      if (mp.contentType !== undefined) props.contentType = mp.contentType;
      if (mp.responseTopic !== undefined) props.responseTopic = mp.responseTopic;
      if (mp.correlationData !== undefined) props.correlationData = mp.correlationData;
      if (mp.userProperties !== undefined) props.userProperties = mp.userProperties;
      any = true;
    }
    if (message.expiresAt !== 0) {
      // The remaining lifetime is forwarded, not the original [MQTT-3.3.2-6].
      props.messageExpiryInterval = Math.max(1, Math.ceil((message.expiresAt - now) / 1000));
      any = true;
    }
    if (subscriptionIds.length > 0) {
      props.subscriptionIdentifier = subscriptionIds.length === 1 ? subscriptionIds[0]! : subscriptionIds;
      any = true;
    }
    if (topicAlias !== null) {
      props.topicAlias = topicAlias.alias;
      any = true;
    }
    if (any) packet.properties = props;
  }
  return packet;
}

/** Encodes through the per-message cache when the variant allows sharing. */
export function encodeShared(cache: PublishCache, message: Message, qos: QoS, retainFlag: boolean, packetId: number, version: ProtocolVersion, now: number): Buffer {
  const key = (version === 5 ? 6 : 0) + qos * 2 + (retainFlag ? 1 : 0);
  let template = cache.get(key);
  if (template === undefined) {
    template = encodePacket(buildPublishPacket(message, qos, retainFlag, 1, false, version, [], null, now), version);
    cache.set(key, template);
  }
  if (qos === 0) return template;
  const copy = Buffer.allocUnsafe(template.length);
  template.copy(copy);
  copy.writeUInt16BE(packetId, publishPacketIdOffset(copy));
  return copy;
}
