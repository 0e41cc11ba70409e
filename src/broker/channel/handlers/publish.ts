/**
 * Inbound PUBLISH and PUBREL. The checks run as a named pipeline (ARCHITECTURE idea 2):
 * quota → capabilities → topic alias → topic validity → receive maximum → authorization; then the
 * broker routes, and the acknowledgement waits for the store when a persistent session
 * took the message.
 */
import { ProtocolViolation } from '../../../core/errors.js';
import type { PublishPacket, PubrelPacket } from '../../../protocol/packets.js';
import { ReasonCode } from '../../../protocol/reason-codes.js';
import { isValidTopicName } from '../../../protocol/topic.js';
import { decodedStringIsFaithful, isUtf8Payload } from '../../../protocol/utf8.js';
import { replyTo } from '../../client-services.js';
import type { Channel } from '../channel.js';
import { emitLimitHit } from '../channel-limits.js';
import { messageFromPublish } from './message-properties.js';
import { emitDenied } from '../security-emit.js';

/** Capabilities: QoS and retain the server offered [MQTT-3.2.2-11] [MQTT-3.2.2-14]. */
function checkCapabilities(ch: Channel, packet: PublishPacket): void {
  const cfg = ch.broker.config;
  if (packet.qos > cfg.maxQos) throw new ProtocolViolation(ReasonCode.QosNotSupported, `QoS ${packet.qos} above the maximum of ${cfg.maxQos}`);
  if (packet.retain && !cfg.retainAvailable) throw new ProtocolViolation(ReasonCode.RetainNotSupported, 'retained messages are not available');
  if (packet.qos === 0 && packet.dup) throw new ProtocolViolation(ReasonCode.MalformedPacket, 'DUP set on a QoS 0 PUBLISH');
}

/** Resolves a topic alias [MQTT-3.3.2-12..-14]. Returns the topic to route on. */
function resolveTopicAlias(ch: Channel, packet: PublishPacket): string {
  const alias = ch.version === 5 ? packet.properties?.topicAlias : undefined;
  if (alias === undefined) {
    // An empty topic needs an alias: a Protocol Error, not an invalid name [MQTT-3.3.2-1] (v5 §3.3.2.3.4).
    if (packet.topic.length === 0) throw new ProtocolViolation(ReasonCode.ProtocolError, 'empty topic without a topic alias');
    return packet.topic;
  }
  if (alias === 0 || alias > ch.broker.config.topicAliasMax) throw new ProtocolViolation(ReasonCode.TopicAliasInvalid, `topic alias ${alias} out of range`);
  if (packet.topic.length > 0) {
    (ch.inAliases ??= new Map()).set(alias, packet.topic);
    return packet.topic;
  }
  const topic = ch.inAliases?.get(alias);
  if (topic === undefined) throw new ProtocolViolation(ReasonCode.ProtocolError, `unknown topic alias ${alias}`);
  return topic;
}

function checkTopic(ch: Channel, topic: string, frame: Buffer | null): void {
  // Ill-formed UTF-8 or U+0000 makes the packet malformed (0x81) [MQTT-1.5.4-1] [MQTT-1.5.4-2];
  // checked first, or isValidTopicName's NUL check would answer 0x90 (well-formed but refused).
  // Without a frame, the decoder checked the topic's bytes already.
  if (frame !== null && !decodedStringIsFaithful(topic, frame)) throw new ProtocolViolation(ReasonCode.MalformedPacket, 'topic name is not valid UTF-8');
  if (!isValidTopicName(topic)) throw new ProtocolViolation(ReasonCode.TopicNameInvalid, 'invalid topic name');
  let levels = 1;
  for (let i = 0; i < topic.length; i++) if (topic.charCodeAt(i) === 0x2f) levels++;
  if (levels > ch.broker.config.maxTopicLevels) throw new ProtocolViolation(ReasonCode.TopicNameInvalid, `topic has more than ${ch.broker.config.maxTopicLevels} levels`);
}

/**
 * Our Receive Maximum bounds unacknowledged QoS 1/2 from a v5 client [MQTT-3.3.4-9]. A
 * v3.1.1 client was never told a limit, so it is bounded only by the packet id space.
 */
function checkReceiveMaximum(ch: Channel, packet: PublishPacket): void {
  if (packet.qos === 0 || ch.version !== 5) return;
  const outstanding = ch.pendingAcks + (ch.session?.incomingQos2.size ?? 0);
  if (outstanding >= ch.broker.config.maxInflight) {
    emitLimitHit(ch, 'inflight', 'disconnected', `${outstanding} unacknowledged`);
    throw new ProtocolViolation(ReasonCode.ReceiveMaximumExceeded, 'receive maximum exceeded');
  }
}

/**
 * Quota: the client's publish rate and bandwidth (limits.client), first in the pipeline so
 * a flood is refused before it costs an alias, a topic check or an authorization. The
 * packet's arrival time serves both buckets. Returns false when the message stops here.
 *
 * SECURITY: over the quota, `drop` drops QoS 0 (counted) and answers v5 QoS 1/2 with 0x97
 * Quota Exceeded; a v3.1.1 QoS 1/2 publisher has no such code (and would resend a refused
 * message forever), so its message goes through and its reading pauses until the quota
 * refills. `disconnect` closes any client over its quota (v5: 0x96 Message Rate Too High).
 */
function checkQuota(ch: Channel, packet: PublishPacket, packetId: number, now: number): boolean {
  if (ch.broker.publishQuota === null && !ch.throttled) return true;
  const payload = packet.payload;
  // Topic characters stand for its bytes (equal for ASCII): no UTF-8 encoding per PUBLISH.
  const bytes = packet.topic.length + (typeof payload === 'string' ? payload.length : payload.byteLength);
  const limits = ch.limits;
  const limit = limits.checkPublish(now, bytes);
  if (limit === null) return true;
  const reason = limit === 'publish-rate' ? 'publish rate exceeded' : 'bandwidth exceeded';
  if (ch.broker.limits.client.action === 'disconnect') {
    limits.disconnectOverQuota(limit, reason);
    return false;
  }
  if (packet.qos === 0) {
    ch.broker.counters.droppedQuota++;
    emitLimitHit(ch, limit, 'dropped');
    return false;
  }
  if (ch.version === 5) {
    emitLimitHit(ch, limit, 'rejected');
    acknowledge(ch, packet, packetId, ReasonCode.QuotaExceeded, false, reason);
    return false;
  }
  limits.slowDown(now, bytes);
  return true;
}

export function handlePublish(ch: Channel, packet: PublishPacket, frame: Buffer | null): void {
  const session = ch.session!;
  // Metrics and $SYS: every PUBLISH received counts, refused ones too (two integer adds).
  const counters = ch.broker.counters;
  counters.received[packet.qos]++;
  counters.receivedBytes += frame !== null ? frame.length : (packet.length ?? 0);
  const packetId = packet.messageId ?? 0;
  if (packet.qos === 2 && session.incomingQos2.has(packetId)) {
    // Re-sent before PUBREL: acknowledge again, never deliver twice [MQTT-4.3.3-10]. Before
    // the quota: a resend of a message already accepted is not a new message.
    ch.send({ cmd: 'pubrec', messageId: packetId });
    return;
  }
  // The clock was read once when this packet arrived (Channel.handlePacket); the quota and
  // the message's timestamp share that read.
  const now = ch.lastActivity;
  if (!checkQuota(ch, packet, packetId, now)) return;
  checkCapabilities(ch, packet);
  const topic = resolveTopicAlias(ch, packet);
  checkTopic(ch, topic, frame);
  checkReceiveMaximum(ch, packet);

  const v5 = ch.version === 5;
  // SECURITY: authorization is asked for every PUBLISH; a denial is data, not an exception.
  // v3.1.1 has no code to say so: the message is dropped and logged, and QoS 1/2 is still
  // acknowledged (as Mosquitto does), or the client would resend it forever.
  const verdict = ch.broker.authorizer.authorizePublish(ch.client!, topic, packet.qos, packet.retain);
  if (!verdict.ok) {
    ch.broker.logger.info({ clientId: ch.clientId, topic, qos: packet.qos, retain: packet.retain, reason: verdict.reason }, 'publish denied');
    emitDenied(ch, 'publish', topic, verdict.reason);
    acknowledge(ch, packet, packetId, v5 ? verdict.reasonCode : ReasonCode.Success, false, verdict.reason);
    return;
  }
  const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
  ch.broker.activity?.published(ch.client!, topic, topic.length + payload.length);
  if (v5 && packet.properties?.payloadFormatIndicator === true && !isUtf8Payload(payload)) {
    acknowledge(ch, packet, packetId, ReasonCode.PayloadFormatInvalid, false);
    return;
  }
  // A request to a service of the broker itself ($bastion/…): answered, not routed.
  const service = ch.broker.services.ownerOf(topic);
  if (service !== null) {
    if (packet.qos === 2) session.incomingQos2.add(packetId);
    service.handle(ch.client!, topic, payload, replyTo(session));
    acknowledge(ch, packet, packetId, ReasonCode.Success, false);
    return;
  }
  // The cluster carries topics as NATS subjects, which have a length limit.
  const clusterRefusal = ch.broker.cluster?.topicRefusal(topic) ?? null;
  if (clusterRefusal !== null) {
    ch.broker.logger.warn({ clientId: ch.clientId, qos: packet.qos, reason: clusterRefusal }, 'publish refused by the cluster');
    acknowledge(ch, packet, packetId, v5 ? ReasonCode.TopicNameInvalid : ReasonCode.Success, false, clusterRefusal);
    return;
  }
  const message = messageFromPublish(packet, topic, ch.clientId, now);
  const outcome = ch.broker.publish(message, ch.topicLevels(topic));
  if (packet.qos === 2) {
    session.incomingQos2.add(packetId);
    if (session.persistent) ch.broker.store?.addIncomingQos2(ch.clientId, packetId);
  }
  if (outcome.stored !== undefined) {
    acknowledgeWhenStored(ch, packet, packetId, outcome.stored);
    return;
  }
  if (packet.qos !== 0) acknowledge(ch, packet, packetId, v5 && outcome.matched === 0 ? ReasonCode.NoMatchingSubscribers : ReasonCode.Success, true);
  if (outcome.congested !== null) {
    // Stop reading from this publisher until the slow subscriber catches up.
    ch.conn.pauseReading();
    outcome.congested.onDrain(() => ch.conn.resumeReading());
  }
}

/**
 * PUBACK/PUBREC. When the store has unflushed writes (a persistent session took the
 * message), the acknowledgement waits until they are durable; acknowledgements keep
 * their order [MQTT-4.6.0-2].
 */
function acknowledge(ch: Channel, packet: PublishPacket, packetId: number, reasonCode: number, routed: boolean, reason?: string): void {
  const qos = packet.qos;
  if (qos === 0) return;
  if (ch.ackChain !== null) {
    // Acknowledgements wait behind the cluster's store: keep their order.
    chainAck(ch, qos, packetId, null, () => sendAck(ch, qos, packetId, reasonCode, reason));
    return;
  }
  const store = ch.broker.store;
  if (store !== null && ((routed && store.dirty) || ch.pendingAcks > 0)) {
    // Only a deferred acknowledgement pays for a closure; the common path allocates none.
    ch.pendingAcks++;
    store.afterFlush(() => {
      ch.pendingAcks--;
      sendAck(ch, qos, packetId, reasonCode, reason);
    });
    return;
  }
  sendAck(ch, qos, packetId, reasonCode, reason);
}

/**
 * Cluster: the acknowledgement of an accepted message waits until the cluster stored it
 * (and the local store flushed what the session recorded), in order. SECURITY: a message
 * the cluster could not store is never acknowledged as accepted: v5 gets 0x83 with the
 * reason; a v3.1.1 client, which has no code for it, is disconnected and resends it after
 * reconnecting. A QoS 0 message that could not be sent is counted as dropped.
 */
function acknowledgeWhenStored(ch: Channel, packet: PublishPacket, packetId: number, stored: Promise<void>): void {
  const qos = packet.qos;
  if (qos === 0) {
    stored.catch(() => ch.broker.counters.refusedCluster++);
    return;
  }
  chainAck(ch, qos, packetId, stored, () => sendAck(ch, qos, packetId, ReasonCode.Success, undefined));
}

/** Queues one acknowledgement behind the channel's earlier ones; `stored` (when given) must settle first. */
function chainAck(ch: Channel, qos: 1 | 2, packetId: number, stored: Promise<void> | null, send: () => void): void {
  ch.pendingAcks++;
  const store = ch.broker.store;
  const flushed = store !== null && store.dirty ? new Promise<void>((resolve) => store.afterFlush(resolve)) : null;
  const ready = Promise.all([stored, flushed]).then(
    () => null,
    (err: unknown) => (err instanceof Error ? err.message : String(err)),
  );
  const chain = (ch.ackChain ?? Promise.resolve()).then(() => ready).then((failure) => {
    ch.pendingAcks--;
    if (ch.ackChain === chain) ch.ackChain = null;
    if (ch.state === 'closed') return;
    if (failure === null) {
      send();
      return;
    }
    ch.broker.counters.refusedCluster++;
    ch.broker.logger.warn({ clientId: ch.clientId, packetId, err: failure }, 'message not stored by the cluster; refused to its publisher');
    if (qos === 2) ch.session?.incomingQos2.delete(packetId);
    if (ch.version === 5) sendAck(ch, qos, packetId, ReasonCode.ImplementationSpecificError, `not stored: ${failure}`);
    else ch.kick(ReasonCode.UnspecifiedError, `message not stored: ${failure}`);
  });
  ch.ackChain = chain;
}

function sendAck(ch: Channel, qos: 1 | 2, packetId: number, reasonCode: number, reason: string | undefined): void {
  const cmd = qos === 1 ? 'puback' : 'pubrec';
  if (ch.version === 5 && reasonCode !== ReasonCode.Success) {
    const properties = reason !== undefined ? ch.reasonString(reason) : undefined;
    ch.send({ cmd, messageId: packetId, reasonCode, ...(properties !== undefined ? { properties } : {}) });
  } else ch.send({ cmd, messageId: packetId });
}

export function handlePubrel(ch: Channel, packet: PubrelPacket): void {
  const session = ch.session!;
  const packetId = packet.messageId ?? 0;
  const known = session.incomingQos2.delete(packetId);
  if (known && session.persistent) ch.broker.store?.removeIncomingQos2(ch.clientId, packetId);
  if (ch.version === 5 && !known) ch.send({ cmd: 'pubcomp', messageId: packetId, reasonCode: ReasonCode.PacketIdentifierNotFound });
  else ch.send({ cmd: 'pubcomp', messageId: packetId });
}
