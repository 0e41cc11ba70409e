/**
 * Services that answer clients in the broker itself, on `$bastion/…` topics they own
 * (device provisioning and certificate renewal, issue 13): a request PUBLISH goes to the
 * service instead of being routed, and the answer goes to the requesting connection only.
 * Owns: the registry of services, finding the one a topic belongs to, and the reply path
 * (a direct delivery to the requester's session, on a topic it subscribed to). Must not:
 * authorize (the authorizer decides who may publish to or subscribe to a service's topics,
 * before the service sees anything) or know any service's protocol.
 *
 * SECURITY: an answer never goes through the router, so nobody but the requester receives
 * it (a certificate, an ownership token), whatever they subscribed to; and the requester
 * receives it only on a topic its own subscriptions match.
 */
import type { QoS } from '../protocol/packets.js';
import { topicMatches } from '../protocol/topic.js';
import type { AuthorizedClient } from './ports.js';
import type { Session } from './session/session.js';

/** The prefix of every service topic: `$` keeps wildcard subscribers out [MQTT-4.7.2-1]. */
export const SERVICE_TOPIC_PREFIX = '$bastion/';

/** How a service answers the connection that asked. */
export interface ServiceReply {
  /** Delivers to the requester at QoS 1 (or lower, as it subscribed); false when no subscription of it matches `topic`. */
  send(topic: string, payload: Buffer): boolean;
  /**
   * Flow control for a service that answers with many messages (OTA block transfer): the
   * requester's QoS 1/2 messages not yet acknowledged, in flight or queued in its session
   * (whatever their origin). 0 once it is offline.
   */
  backlog(): number;
  /** True while the requester's socket write buffer is over its high-water mark. */
  congested(): boolean;
  /** True once the connection that asked is gone (disconnected, or its session taken by a newer connection). */
  closed(): boolean;
  /** The largest packet the requester accepts (its v5 Maximum Packet Size; Number.MAX_SAFE_INTEGER when it set none, or offline). */
  maxPacketSize(): number;
}

export interface ClientService {
  /** Whether `topic` (under `$bastion/`) is this service's. */
  owns(topic: string): boolean;
  /** A request `client` published (already authorized). Must not throw: a failure is answered on the service's own error topic. */
  handle(client: AuthorizedClient, topic: string, payload: Buffer, reply: ServiceReply): void;
  /** After a SUBACK: the filters `client` was granted (to push what is due, e.g. a renewal notice). */
  subscribed?(client: AuthorizedClient, filters: readonly string[], reply: ServiceReply): void;
  /** v5 CONNACK user properties for `client` (e.g. that its certificate is due for renewal). */
  connackProperties?(client: AuthorizedClient): Record<string, string> | null;
  /** A client's session opened (e.g. a renewed certificate's first use). */
  connected?(client: AuthorizedClient): void;
}

export class ClientServices {
  private readonly services: ClientService[] = [];

  add(service: ClientService): void {
    this.services.push(service);
  }

  get size(): number {
    return this.services.length;
  }

  /** The service owning `topic`, or null (most topics: one prefix test). */
  ownerOf(topic: string): ClientService | null {
    if (this.services.length === 0 || !topic.startsWith(SERVICE_TOPIC_PREFIX)) return null;
    for (const s of this.services) if (s.owns(topic)) return s;
    return null;
  }

  subscribed(client: AuthorizedClient, filters: readonly string[], session: Session): void {
    if (this.services.length === 0 || !filters.some((f) => f.startsWith(SERVICE_TOPIC_PREFIX))) return;
    const reply = replyTo(session);
    for (const s of this.services) s.subscribed?.(client, filters, reply);
  }

  connackProperties(client: AuthorizedClient): Record<string, string> | null {
    let out: Record<string, string> | null = null;
    for (const s of this.services) {
      const p = s.connackProperties?.(client);
      if (p != null) out = { ...(out ?? {}), ...p };
    }
    return out;
  }

  connected(client: AuthorizedClient): void {
    for (const s of this.services) s.connected?.(client);
  }
}

/** Answers go straight to `session`, at the QoS of its best matching subscription (at most 1). */
export function replyTo(session: Session): ServiceReply {
  // The connection that asked: a reconnect of the same session is another one (its own requests).
  const askedAt = session.connectedAt;
  const current = (): boolean => session.online && session.connectedAt === askedAt;
  return {
    backlog: () => (current() ? session.inflightCount + session.queuedCount : 0),
    congested: () => (current() ? (session.link?.congested ?? false) : false),
    closed: () => !current(),
    maxPacketSize: () => (current() ? (session.link?.maxPacketSize ?? Number.MAX_SAFE_INTEGER) : Number.MAX_SAFE_INTEGER),
    send(topic, payload) {
      let qos = -1;
      for (const sub of session.subscriptions.values()) {
        if (sub.qos > qos && topicMatches(sub.filter, topic)) qos = sub.qos;
      }
      if (qos < 0) return false;
      const delivered: QoS = qos >= 1 ? 1 : 0;
      session.deliver({ topic, payload, qos: delivered, retain: false, properties: undefined, expiresAt: 0, origin: '$bastion' }, delivered, false, [], null);
      return true;
    },
  };
}
