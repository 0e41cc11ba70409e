/**
 * SUBSCRIBE/SUBACK and UNSUBSCRIBE/UNSUBACK, with retained-message delivery by retain
 * handling [MQTT-3.3.1-9..-11] and shared subscriptions [MQTT-4.8.2].
 */
import { ProtocolViolation } from '../../../core/errors.js';
import type { QoS, SubscribePacket, UnsubscribePacket } from '../../../protocol/packets.js';
import { ReasonCode } from '../../../protocol/reason-codes.js';
import { isValidTopicFilter, parseSharedFilter } from '../../../protocol/topic.js';
import { decodedStringIsFaithful } from '../../../protocol/utf8.js';
import type { StoredSubscription } from '../../ports.js';
import type { Channel } from '../channel.js';
import { emitLimitHit } from '../channel-limits.js';
import { emitDenied } from '../security-emit.js';

const V3_FAILURE = 0x80;

export function handleSubscribe(ch: Channel, packet: SubscribePacket, frame: Buffer): void {
  const session = ch.session!;
  const broker = ch.broker;
  const v5 = ch.version === 5;
  const subscriptionId = v5 ? (packet.properties?.subscriptionIdentifier ?? 0) : 0;
  if (v5 && packet.properties?.subscriptionIdentifier === 0) throw new ProtocolViolation(ReasonCode.ProtocolError, 'subscription identifier 0');
  // The codec accepts a SUBSCRIBE with a packet id and no filters; the spec does not [MQTT-3.8.3-3].
  if (packet.subscriptions.length === 0) throw new ProtocolViolation(ReasonCode.ProtocolError, 'SUBSCRIBE without a topic filter');
  // SECURITY: subscriptions per session are capped (limits.client.maxSubscriptions, or the
  // client's role quota): each costs router memory and fan-out work on every matching PUBLISH.
  const maxSubscriptions = ch.maxSubscriptions;
  const granted: number[] = [];
  const retainedToSend: Array<{ sub: StoredSubscription }> = [];
  const grantedFilters: string[] = [];
  for (const req of packet.subscriptions) {
    const filter = req.topic;
    if (!decodedStringIsFaithful(filter, frame)) throw new ProtocolViolation(ReasonCode.MalformedPacket, 'topic filter is not valid UTF-8');
    const shared = parseSharedFilter(filter);
    const valid = shared !== null ? shared.filter !== '' : isValidTopicFilter(filter);
    if (!valid) {
      granted.push(v5 ? ReasonCode.TopicFilterInvalid : V3_FAILURE);
      continue;
    }
    // The cluster carries filters as NATS subjects, which have a length limit.
    const clusterRefusal = broker.cluster?.filterRefusal(shared !== null ? shared.filter : filter) ?? null;
    if (clusterRefusal !== null) {
      broker.logger.warn({ clientId: ch.clientId, reason: clusterRefusal }, 'subscribe refused by the cluster');
      granted.push(v5 ? ReasonCode.TopicFilterInvalid : V3_FAILURE);
      continue;
    }
    // No Local on a shared subscription is a protocol error [MQTT-3.8.3-4].
    if (shared !== null && req.nl === true) throw new ProtocolViolation(ReasonCode.ProtocolError, 'no local on a shared subscription');
    // Quota before authorization (ARCHITECTURE idea 2); re-subscribing a filter replaces it and costs nothing.
    if (session.subscriptions.size >= maxSubscriptions && !session.subscriptions.has(filter)) {
      emitLimitHit(ch, 'subscriptions', 'rejected', filter);
      granted.push(v5 ? ReasonCode.QuotaExceeded : V3_FAILURE);
      continue;
    }
    broker.activity?.subscribed(ch.client!, filter);
    // SECURITY: authorization of every filter at subscribe time (and again at delivery).
    // A shared subscription is authorized on the filter it matches with, not on the
    // `$share/{group}/` prefix: that prefix starts with `$`, so asking with the whole
    // string refused every shared subscription although CONNACK announces them
    // [MQTT-4.8.2]. `$share/g/$SYS/#` still reaches the authorizer as `$SYS/#`.
    // A rule's maxQos may grant less than asked (and than the broker's maximum).
    const verdict = broker.authorizer.authorizeSubscribe(ch.client!, shared !== null ? shared.filter : filter, Math.min(req.qos, broker.config.maxQos) as QoS);
    if (!verdict.ok) {
      broker.logger.info({ clientId: ch.clientId, filter, reason: verdict.reason }, 'subscribe denied');
      emitDenied(ch, 'subscribe', filter, verdict.reason);
      granted.push(v5 ? ReasonCode.NotAuthorized : V3_FAILURE);
      continue;
    }
    const qos = verdict.qos;
    const sub: StoredSubscription = {
      filter,
      qos,
      noLocal: req.nl === true,
      retainAsPublished: req.rap === true,
      retainHandling: (req.rh ?? 0) as 0 | 1 | 2,
      subscriptionId,
    };
    const isNew = !session.subscriptions.has(filter);
    session.subscriptions.set(filter, sub);
    broker.addRoute(session, sub);
    granted.push(qos);
    grantedFilters.push(filter);
    // Retained messages: not for shared subscriptions; rh 1 only for a new subscription.
    if (shared === null && (sub.retainHandling === 0 || (sub.retainHandling === 1 && isNew))) retainedToSend.push({ sub });
  }
  session.saveRecord();
  const ready = broker.cluster?.interestReady() ?? null;
  if (ready === null) {
    answerSubscribe(ch, packet.messageId ?? 0, granted, retainedToSend, grantedFilters);
    return;
  }
  // Cluster: SUBACK once NATS has the node's interest, so nothing published after it is
  // missed; the client's next packets wait (in order) until then. If NATS is away, the
  // interest is sent again when it returns.
  ch.holdIncoming();
  const answer = (): void => {
    if (ch.state !== 'closed') answerSubscribe(ch, packet.messageId ?? 0, granted, retainedToSend, grantedFilters);
    ch.releaseIncoming();
  };
  ready.then(answer, answer);
}

/** SUBACK, then the retained messages the new subscriptions asked for, then what services push on them. */
function answerSubscribe(ch: Channel, messageId: number, granted: number[], retainedToSend: Array<{ sub: StoredSubscription }>, grantedFilters: readonly string[]): void {
  const broker = ch.broker;
  const session = ch.session!;
  ch.send({ cmd: 'suback', messageId, granted });
  for (const { sub } of retainedToSend) {
    for (const message of broker.retained.match(sub.filter)) {
      if (!broker.authorizer.canReceive(ch.client!, message.topic)) continue;
      const qos = (message.qos < sub.qos ? message.qos : sub.qos) as QoS;
      // A retained message sent because of a subscription carries retain=1 [MQTT-3.3.1-8].
      // One subscriber per retained delivery: nothing to share, so no encoding cache.
      session.deliver(message, qos, true, sub.subscriptionId !== 0 ? [sub.subscriptionId] : [], null);
    }
  }
  broker.services.subscribed(ch.client!, grantedFilters, session);
}

export function handleUnsubscribe(ch: Channel, packet: UnsubscribePacket, frame: Buffer): void {
  const session = ch.session!;
  // An UNSUBSCRIBE without filters is a protocol violation [MQTT-3.10.3-2].
  if (packet.unsubscriptions.length === 0) throw new ProtocolViolation(ReasonCode.ProtocolError, 'UNSUBSCRIBE without a topic filter');
  const codes: number[] = [];
  for (const filter of packet.unsubscriptions) {
    if (!decodedStringIsFaithful(filter, frame)) throw new ProtocolViolation(ReasonCode.MalformedPacket, 'topic filter is not valid UTF-8');
    const existed = session.subscriptions.delete(filter);
    if (existed) ch.broker.removeRoute(session, filter);
    codes.push(existed ? ReasonCode.Success : ReasonCode.NoSubscriptionExisted);
  }
  session.saveRecord();
  if (ch.version === 5) ch.send({ cmd: 'unsuback', messageId: packet.messageId ?? 0, granted: codes });
  else ch.send({ cmd: 'unsuback', messageId: packet.messageId ?? 0, granted: [] });
}
