/**
 * Metrics read from broker state at scrape time: connections per listener, sessions,
 * subscriptions, retained messages, queues, the traffic counters (messages and bytes in and
 * out by QoS, sessions opened, messages dropped) and the bans in force. Owns: those
 * families. Must not: be updated per message (the broker's integer counters are; this
 * reads them when Prometheus asks), or change anything.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { BrokerStats } from '../../broker/sys/broker-stats.js';

/** What the state metrics read, filled in by the composition root. */
export interface StateSources {
  stats(): BrokerStats;
  /** Open connections (sockets) per listener. */
  listeners(): ReadonlyArray<{ name: string; connections: number }>;
  /** The ban and allow-list entries, or null when no ban list runs. */
  bans(): ReadonlyArray<{ kind: string; list?: string; expiresAt: number | null }> | null;
}

const QOS = ['0', '1', '2'] as const;

export class StateMetrics {
  private readonly connections: Gauge<'listener'>;
  private readonly accepted: Counter;
  private readonly received: Counter<'qos'>;
  private readonly sent: Counter<'qos'>;
  private readonly receivedBytes: Counter;
  private readonly sentBytes: Counter;
  private readonly dropped: Counter<'cause'>;
  private readonly sessions: Gauge<'state'>;
  private readonly subscriptions: Gauge;
  private readonly retained: Gauge;
  private readonly queued: Gauge;
  private readonly queuedMax: Gauge;
  private readonly inflight: Gauge;
  private readonly bans: Gauge<'kind' | 'list'>;

  constructor(
    registry: Registry,
    private readonly sources: StateSources,
  ) {
    const registers = [registry];
    this.connections = new Gauge({ name: 'bastion_connections', help: 'Open client connections, by listener.', labelNames: ['listener'], registers });
    this.accepted = new Counter({ name: 'bastion_connections_accepted_total', help: 'Connections accepted into a session (CONNACK success); rate() of it is the connection rate.', registers });
    this.received = new Counter({ name: 'bastion_messages_received_total', help: 'PUBLISH packets received from clients, by QoS.', labelNames: ['qos'], registers });
    this.sent = new Counter({ name: 'bastion_messages_sent_total', help: 'PUBLISH packets sent to clients, by QoS.', labelNames: ['qos'], registers });
    this.receivedBytes = new Counter({ name: 'bastion_messages_received_bytes_total', help: 'Bytes of the PUBLISH packets received from clients.', registers });
    this.sentBytes = new Counter({ name: 'bastion_messages_sent_bytes_total', help: 'Bytes of the PUBLISH packets sent to clients.', registers });
    this.dropped = new Counter({
      name: 'bastion_messages_dropped_total',
      help: 'Messages not delivered, by cause (queue_full, expired, too_large, denied_at_delivery, rate_limit, bandwidth, ...).',
      labelNames: ['cause'],
      registers,
    });
    this.sessions = new Gauge({ name: 'bastion_sessions', help: 'Sessions, by state (online: a client is connected; offline: persistent, client away).', labelNames: ['state'], registers });
    this.subscriptions = new Gauge({ name: 'bastion_subscriptions', help: 'Subscriptions over all sessions.', registers });
    this.retained = new Gauge({ name: 'bastion_retained_messages', help: 'Retained messages held.', registers });
    this.queued = new Gauge({ name: 'bastion_queued_messages', help: 'Messages queued for delivery over all sessions (not yet in flight).', registers });
    this.queuedMax = new Gauge({ name: 'bastion_session_queue_max_messages', help: 'The longest queue of one session.', registers });
    this.inflight = new Gauge({ name: 'bastion_inflight_messages', help: 'QoS 1/2 messages sent and not yet acknowledged, over all sessions.', registers });
    this.bans = new Gauge({ name: 'bastion_bans', help: 'Ban (deny) and allow-list entries in force, by kind and list.', labelNames: ['kind', 'list'], registers });
  }

  /** Reads the broker and the listeners into the families; `droppedByLimits` adds the causes counted from events. */
  refresh(now: number, droppedByLimits: ReadonlyMap<string, number>): void {
    const s = this.sources.stats();
    const c = s.counters;
    this.connections.reset();
    for (const l of this.sources.listeners()) this.connections.set({ listener: l.name }, l.connections);
    setCounter(this.accepted, c.connectionsAccepted);
    this.received.reset();
    this.sent.reset();
    QOS.forEach((qos, i) => {
      this.received.inc({ qos }, c.received[i]!);
      this.sent.inc({ qos }, c.sent[i]!);
    });
    setCounter(this.receivedBytes, c.receivedBytes);
    setCounter(this.sentBytes, c.sentBytes);
    this.dropped.reset();
    this.dropped.inc({ cause: 'queue_full' }, c.droppedQueueFull);
    this.dropped.inc({ cause: 'expired' }, c.droppedExpired);
    this.dropped.inc({ cause: 'too_large' }, c.droppedTooLarge);
    this.dropped.inc({ cause: 'denied_at_delivery' }, c.deniedAtDelivery);
    for (const cause of ['rate_limit', 'bandwidth', 'slow_client']) this.dropped.inc({ cause }, droppedByLimits.get(cause) ?? 0);
    for (const [cause, n] of droppedByLimits) if (!DECLARED_CAUSES.has(cause)) this.dropped.inc({ cause }, n);
    this.sessions.set({ state: 'online' }, s.connected);
    this.sessions.set({ state: 'offline' }, s.disconnected);
    this.subscriptions.set(s.subscriptions);
    this.retained.set(s.retained);
    this.queued.set(s.queued);
    this.queuedMax.set(s.queuedMax);
    this.inflight.set(s.inflight);
    this.bans.reset();
    const bans = this.sources.bans();
    if (bans !== null) {
      const counts = new Map<string, { kind: string; list: string; n: number }>();
      for (const b of bans) {
        if (b.expiresAt !== null && b.expiresAt <= now) continue;
        const list = b.list ?? 'deny';
        const key = `${b.kind}\u0000${list}`;
        const entry = counts.get(key) ?? { kind: b.kind, list, n: 0 };
        entry.n++;
        counts.set(key, entry);
      }
      for (const { kind, list, n } of counts.values()) this.bans.set({ kind, list }, n);
    }
  }
}

const DECLARED_CAUSES = new Set(['queue_full', 'expired', 'too_large', 'denied_at_delivery', 'rate_limit', 'bandwidth', 'slow_client']);

/** A counter whose value lives elsewhere (a broker counter): shown as read. */
function setCounter(counter: Counter, value: number): void {
  counter.reset();
  counter.inc(value);
}
