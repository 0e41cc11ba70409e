/**
 * The fan-out of one published message to the local sessions whose subscriptions match it.
 * Owns: merging the overlapping subscriptions of one session into one delivery (highest
 * QoS, every subscription id, retain-as-published if any asks) [MQTT-3.3.4-2], the
 * authorization at delivery, and the verdict whether a subscriber is behind (the publisher
 * then waits). Must not: update retained messages or count publishes (broker.ts does
 * both before it fans out), or touch sockets.
 *
 * Hot path (per PUBLISH, per matching session): one subscriber costs no Map and no shared
 * encoding cache; several share one encode per variant.
 */
import type { SecurityEvents } from '../core/security-events.js';
import type { QoS } from '../protocol/packets.js';
import type { Message } from './message.js';
import type { AuthorizedClient, ClusterDeliveryScope, DeliveryAuthorizer } from './ports.js';
import { MatchList, type TopicRouter } from './router/topic-router.js';
import { SlotPublishCache } from './session/outbound.js';
import type { Session } from './session/session.js';

/** Something a publisher can wait on until it has caught up. */
export interface Congestion {
  onDrain(cb: () => void): void;
}

export interface PublishOutcome {
  /** Number of sessions the message was delivered or queued to; -1 when not known here (a cluster delivers on every node). */
  matched: number;
  /** A subscriber (its socket or its queue) that is behind; the publisher should wait. */
  congested: Congestion | null;
  /**
   * In a cluster: settles when the message is stored (QoS 1/2, retained) or sent (QoS 0);
   * the acknowledgement waits for it, and a rejection refuses the message. Absent on a single node.
   */
  stored?: Promise<void>;
}

/** What the fan-out reads from the broker (the Broker itself is one). */
export interface FanOutSource {
  readonly router: TopicRouter<Session>;
  /** Last known identity per session, for delivery-time authorization. */
  readonly clients: ReadonlyMap<Session, AuthorizedClient>;
  /** Which connection owns each online session: its socket may be behind. */
  readonly owners: ReadonlyMap<Session, Congestion & { readonly congested: boolean }>;
  readonly authorizer: DeliveryAuthorizer;
  readonly counters: { delivered: number; deniedAtDelivery: number };
  readonly events: SecurityEvents;
}

interface MergedMatch {
  session: Session;
  qos: QoS;
  retainAsPublished: boolean;
  subscriptionIds: number[];
}

/** A delivery with no subscription identifier shares this array (never written to). */
const NO_SUBSCRIPTION_IDS: number[] = [];
Object.freeze(NO_SUBSCRIPTION_IDS);

/** One fan-out's matches and its tally so far. */
class FanOutWork extends MatchList<Session> {
  matched = 0;
  congested: Congestion | null = null;
}

/**
 * Work lists not in use. A delivery can publish again before its own fan-out returns (a
 * will message sent when a write fails): each fan-out takes its own.
 */
const idleWork: FanOutWork[] = [];

/** The outcomes without congestion, shared and frozen: the common result costs no object. */
const PLAIN_OUTCOMES: readonly PublishOutcome[] = Array.from({ length: 64 }, (_, matched) => Object.freeze({ matched, congested: null }));

function outcomeOf(work: FanOutWork): PublishOutcome {
  if (work.congested === null && work.matched < PLAIN_OUTCOMES.length) return PLAIN_OUTCOMES[work.matched]!;
  return { matched: work.matched, congested: work.congested };
}

/**
 * Delivers `message` (already authorized and retained) to every matching session, one
 * delivery per session. `scope` (a message that came through the cluster) narrows it to the
 * plain subscriptions, or to one member of one shared group; absent: all of them. `levels`
 * is the topic split at '/', when the publisher's channel had it already.
 */
export function fanOut(src: FanOutSource, message: Message, scope?: ClusterDeliveryScope, levels?: readonly string[]): PublishOutcome {
  const work = idleWork.pop() ?? new FanOutWork();
  try {
    if (scope?.kind === 'shared') {
      const entry = src.router.pickShared(scope.filter, scope.group);
      if (entry !== undefined) deliverTo(src, entry.subscriber, entry.options.qos, entry.options.retainAsPublished, idsOf(entry.options.subscriptionId), message, null, work);
      return outcomeOf(work);
    }
    src.router.match(message.topic, scope === undefined, work, levels);
    if (work.length === 1) {
      // The common case, one subscriber: no merge, and no shared encodings.
      const entry = work.entries[0]!;
      const opts = entry.options;
      if (work.shared[0] || !opts.noLocal || entry.subscriber.clientId !== message.origin) {
        deliverTo(src, entry.subscriber, opts.qos, opts.retainAsPublished, idsOf(opts.subscriptionId), message, null, work);
      }
    } else if (work.length > 1) {
      deliverMerged(src, mergeBySession(work, message.origin), message, work);
    }
    return outcomeOf(work);
  } finally {
    work.clear();
    work.matched = 0;
    work.congested = null;
    idleWork.push(work);
  }
}

function idsOf(subscriptionId: number): number[] {
  return subscriptionId !== 0 ? [subscriptionId] : NO_SUBSCRIPTION_IDS;
}

/** One delivery per session: its overlapping subscriptions merged [MQTT-3.3.4-2]. */
function mergeBySession(matches: MatchList<Session>, origin: string): Map<Session, MergedMatch> {
  const merged = new Map<Session, MergedMatch>();
  for (let i = 0; i < matches.length; i++) {
    const entry = matches.entries[i]!;
    const opts = entry.options;
    const session = entry.subscriber;
    if (!matches.shared[i] && opts.noLocal && session.clientId === origin) continue;
    const m = merged.get(session);
    if (m === undefined) {
      merged.set(session, { session, qos: opts.qos, retainAsPublished: opts.retainAsPublished, subscriptionIds: idsOf(opts.subscriptionId) });
      continue;
    }
    if (opts.qos > m.qos) m.qos = opts.qos;
    if (opts.retainAsPublished) m.retainAsPublished = true;
    if (opts.subscriptionId !== 0) m.subscriptionIds = m.subscriptionIds === NO_SUBSCRIPTION_IDS ? [opts.subscriptionId] : [...m.subscriptionIds, opts.subscriptionId];
  }
  return merged;
}

function deliverMerged(src: FanOutSource, merged: Map<Session, MergedMatch>, message: Message, work: FanOutWork): void {
  // Several subscribers share one encode per variant.
  const cache = merged.size > 1 ? new SlotPublishCache() : null;
  for (const m of merged.values()) deliverTo(src, m.session, m.qos, m.retainAsPublished, m.subscriptionIds, message, cache, work);
}

function deliverTo(src: FanOutSource, session: Session, subscribedQos: QoS, retainAsPublished: boolean, subscriptionIds: number[], message: Message, cache: SlotPublishCache | null, work: FanOutWork): void {
  const client = src.clients.get(session);
  // SECURITY: authorization again at delivery; a revoked right stops delivery at once. An
  // offline or recovered session is checked with the identity stored with it; without
  // one, nothing is delivered.
  if (client === undefined || !src.authorizer.canReceive(client, message.topic)) {
    src.counters.deniedAtDelivery++;
    emitReceiveDenied(src.events, session, client, message.topic);
    return;
  }
  const qos = (message.qos < subscribedQos ? message.qos : subscribedQos) as QoS;
  const retainFlag = retainAsPublished ? message.retain : false;
  session.deliver(message, qos, retainFlag, subscriptionIds, subscriptionIds.length === 0 ? cache : null);
  src.counters.delivered++;
  work.matched++;
  if (work.congested === null) {
    const owner = src.owners.get(session);
    if (owner !== undefined) {
      // Stop reading from publishers while a connected subscriber falls behind, in its
      // socket or in its queue, rather than filling the queue until it drops.
      if (owner.congested) work.congested = owner;
      else if (session.queueCongested) work.congested = session;
    }
  }
}

/** A delivery refused by authorization (only denials: the allowed path emits nothing). */
function emitReceiveDenied(events: SecurityEvents, session: Session, client: AuthorizedClient | undefined, topic: string): void {
  if (!events.active) return;
  const reason = client === undefined ? 'no known identity for the session' : 'not authorized to receive this topic';
  events.emit({ type: 'authz.denied', clientId: session.clientId, principal: client?.principal ?? null, remoteAddress: client?.identity.remoteAddress ?? '', action: 'receive', topic, reason });
}
