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
import type { TopicRouter } from './router/topic-router.js';
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

/**
 * Delivers `message` (already authorized and retained) to every matching session, one
 * delivery per session. `scope` (a message that came through the cluster) narrows it to the
 * plain subscriptions, or to one member of one shared group; absent: all of them.
 */
export function fanOut(src: FanOutSource, message: Message, scope?: ClusterDeliveryScope): PublishOutcome {
  if (scope?.kind === 'shared') {
    const outcome: PublishOutcome = { matched: 0, congested: null };
    const entry = src.router.pickShared(scope.filter, scope.group);
    if (entry === undefined) return outcome;
    const opts = entry.options;
    deliverTo(src, { session: entry.subscriber, qos: opts.qos, retainAsPublished: opts.retainAsPublished, subscriptionIds: opts.subscriptionId !== 0 ? [opts.subscriptionId] : [] }, message, null, outcome);
    return outcome;
  }
  let single: MergedMatch | null = null;
  let many: Map<Session, MergedMatch> | null = null;
  src.router.match(message.topic, scope === undefined, (entry, shared) => {
    const opts = entry.options;
    const session = entry.subscriber;
    if (!shared && opts.noLocal && session.clientId === message.origin) return;
    let m: MergedMatch | undefined;
    if (single !== null && single.session === session) m = single;
    else if (many !== null) m = many.get(session);
    if (m === undefined) {
      m = { session, qos: opts.qos, retainAsPublished: opts.retainAsPublished, subscriptionIds: opts.subscriptionId !== 0 ? [opts.subscriptionId] : [] };
      if (single === null && many === null) single = m;
      else {
        if (many === null) {
          many = new Map();
          many.set(single!.session, single!);
        }
        many.set(session, m);
      }
      return;
    }
    if (opts.qos > m.qos) m.qos = opts.qos;
    if (opts.retainAsPublished) m.retainAsPublished = true;
    if (opts.subscriptionId !== 0) m.subscriptionIds.push(opts.subscriptionId);
  });
  const outcome: PublishOutcome = { matched: 0, congested: null };
  if (single === null) return outcome;
  // One subscriber needs no shared encodings; several share one encode per variant.
  if (many === null) deliverTo(src, single, message, null, outcome);
  else {
    const cache = new SlotPublishCache();
    for (const m of (many as Map<Session, MergedMatch>).values()) deliverTo(src, m, message, cache, outcome);
  }
  return outcome;
}

function deliverTo(src: FanOutSource, m: MergedMatch, message: Message, cache: SlotPublishCache | null, outcome: PublishOutcome): void {
  const session = m.session;
  const client = src.clients.get(session);
  // SECURITY: authorization again at delivery; a revoked right stops delivery at once. An
  // offline or recovered session is checked with the identity stored with it; without
  // one, nothing is delivered.
  if (client === undefined || !src.authorizer.canReceive(client, message.topic)) {
    src.counters.deniedAtDelivery++;
    emitReceiveDenied(src.events, session, client, message.topic);
    return;
  }
  const qos = (message.qos < m.qos ? message.qos : m.qos) as QoS;
  const retainFlag = m.retainAsPublished ? message.retain : false;
  session.deliver(message, qos, retainFlag, m.subscriptionIds, m.subscriptionIds.length === 0 ? cache : null);
  src.counters.delivered++;
  outcome.matched++;
  if (outcome.congested === null) {
    const owner = src.owners.get(session);
    if (owner !== undefined) {
      // Stop reading from publishers while a connected subscriber falls behind, in its
      // socket or in its queue, rather than filling the queue until it drops.
      if (owner.congested) outcome.congested = owner;
      else if (session.queueCongested) outcome.congested = session;
    }
  }
}

/** A delivery refused by authorization (only denials: the allowed path emits nothing). */
function emitReceiveDenied(events: SecurityEvents, session: Session, client: AuthorizedClient | undefined, topic: string): void {
  if (!events.active) return;
  const reason = client === undefined ? 'no known identity for the session' : 'not authorized to receive this topic';
  events.emit({ type: 'authz.denied', clientId: session.clientId, principal: client?.principal ?? null, remoteAddress: client?.identity.remoteAddress ?? '', action: 'receive', topic, reason });
}
