/**
 * A plain snapshot of the broker's state and traffic counters, for the metrics endpoint and
 * the $SYS topics. Owns: what "connected", "sessions", "subscriptions" and "queued" mean
 * when counted. Must not: change anything, or run on a per-message path (it walks every
 * session: it is for scrapes and timers).
 */
import type { Broker, BrokerCounters } from '../broker.js';

export interface BrokerStats {
  /** Sessions with a connected client. */
  connected: number;
  /** Persistent sessions whose client is away. */
  disconnected: number;
  /** Every session, connected or not. */
  sessions: number;
  subscriptions: number;
  retained: number;
  /** Messages queued (not yet in flight) over all sessions, and the largest one queue. */
  queued: number;
  queuedMax: number;
  inflight: number;
  /** A copy of the counters (monotonic since start). */
  counters: Readonly<BrokerCounters>;
}

/** The counts that need no walk over the sessions. */
export type BrokerCounts = Pick<BrokerStats, 'connected' | 'sessions' | 'subscriptions'>;

/**
 * connected, sessions and subscriptions without walking every session (the router keeps
 * the subscription count): for a sampler that runs every second, where brokerStats' walk
 * over 50,000 sessions would stall delivery each time.
 */
export function brokerCounts(broker: Broker): BrokerCounts {
  return { connected: broker.owners.size, sessions: broker.sessions.size, subscriptions: broker.router.size };
}

export function brokerStats(broker: Broker): BrokerStats {
  let subscriptions = 0;
  let queued = 0;
  let queuedMax = 0;
  let inflight = 0;
  for (const session of broker.sessions.values()) {
    subscriptions += session.subscriptions.size;
    const q = session.queuedCount;
    queued += q;
    if (q > queuedMax) queuedMax = q;
    inflight += session.inflightCount;
  }
  const c = broker.counters;
  const connected = broker.owners.size;
  return {
    connected,
    disconnected: Math.max(0, broker.sessions.size - connected),
    sessions: broker.sessions.size,
    subscriptions,
    retained: broker.retained.size,
    queued,
    queuedMax,
    inflight,
    counters: { ...c, received: [c.received[0], c.received[1], c.received[2]], sent: [c.sent[0], c.sent[1], c.sent[2]] },
  };
}
