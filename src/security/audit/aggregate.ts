/**
 * Which security events become audit records one by one, which are summed, and which are
 * not audited. Owns: the aggregation keys and the summing window's contents.
 * Must not: keep time or schedule flushes (the audit side drains it on its interval).
 *
 * - `limit.hit`: summed per (limit, clientId or remoteAddress, listener, action) into one
 *   record whose `count` is the total, so a flood of dropped messages is one record per
 *   window, not one per message.
 * - `tls.handshake` ok=false: summed per (listener, remoteAddress, reason) the same way.
 * - `connection.refused` at stage `accept` (an address list or ban refusing the socket
 *   before TLS): summed per (listener, remoteAddress, reason) the same way. A flood from a
 *   banned address costs the broker one reset per socket; one record per socket would make
 *   the audit log the most expensive part of refusing it.
 * - `authz.denied` for a publish, a subscribe or a delivery (`receive`): summed per
 *   (clientId, principal, remoteAddress, action, topic, reason). A client publishing to a
 *   denied topic in a loop, or a wildcard subscriber refused at each delivery, is one
 *   record per window with its `count`. A denied will stays one record: it refuses the
 *   connection, and its record belongs before that refusal's.
 * - `tls.handshake` ok=true: not audited (metrics count them; there are too many).
 * - everything else: one record each.
 */
import type { SecurityEvent } from '../../core/security-events.js';

type LimitHit = Extract<SecurityEvent, { type: 'limit.hit' }>;
type TlsHandshake = Extract<SecurityEvent, { type: 'tls.handshake' }>;
type Refused = Extract<SecurityEvent, { type: 'connection.refused' }>;
type Denied = Extract<SecurityEvent, { type: 'authz.denied' }>;
type Summed = LimitHit | TlsHandshake | Refused | Denied;

/** Distinct keys one window holds before further sources are summed into one overflow record per limit/listener. */
export const MAX_AGGREGATE_KEYS = 10_000;

export type AggregateVerdict = 'record' | 'absorbed' | 'ignored';

interface Pending {
  ts: number;
  event: Summed;
}

export class AuditAggregator {
  private pending = new Map<string, Pending>();

  constructor(private readonly maxKeys: number = MAX_AGGREGATE_KEYS) {}

  /** Whether `event` is recorded as is, was summed into the window, or is not audited. */
  offer(event: SecurityEvent, at: number): AggregateVerdict {
    if (event.type === 'limit.hit') {
      this.add(`L\0${event.limit}\0${event.clientId ?? ''}\0${event.clientId === undefined ? (event.remoteAddress ?? '') : ''}\0${event.listener ?? ''}\0${event.action}`, event, at, event.count);
      return 'absorbed';
    }
    if (event.type === 'tls.handshake') {
      if (event.ok) return 'ignored';
      this.add(`T\0${event.listener}\0${event.remoteAddress}\0${event.reason ?? ''}`, event, at, event.count ?? 1);
      return 'absorbed';
    }
    if (event.type === 'connection.refused' && event.stage === 'accept') {
      this.add(`R\0${event.listener}\0${event.remoteAddress}\0${event.reason}`, event, at, event.count ?? 1);
      return 'absorbed';
    }
    if (event.type === 'authz.denied' && event.action !== 'will') {
      this.add(`D\0${event.clientId}\0${event.principal ?? ''}\0${event.remoteAddress}\0${event.action}\0${event.topic}\0${event.reason}`, event, at, event.count ?? 1);
      return 'absorbed';
    }
    return 'record';
  }

  /** Number of sums waiting. */
  get size(): number {
    return this.pending.size;
  }

  /** The window's sums, oldest key first, and an empty window. */
  drain(): Array<{ ts: number; event: SecurityEvent }> {
    if (this.pending.size === 0) return [];
    const out = [...this.pending.values()];
    this.pending = new Map();
    return out;
  }

  private add(key: string, event: Summed, at: number, count: number): void {
    let p = this.pending.get(key);
    if (p === undefined && this.pending.size >= this.maxKeys) {
      // SECURITY: a spray from many addresses or client ids must not grow memory without
      // bound: past the cap, the window sums them into one record without the identity.
      const overflow = overflowOf(event, this.maxKeys);
      key = `O\0${overflow.type}\0${overflowKey(overflow)}`;
      p = this.pending.get(key);
      if (p === undefined) {
        this.pending.set(key, { ts: at, event: { ...overflow, count } });
        return;
      }
    }
    if (p === undefined) {
      // A copy: the emitter's object is not ours to change.
      this.pending.set(key, { ts: at, event: { ...event, count } });
      return;
    }
    p.event.count = (p.event.count ?? 1) + count;
  }
}

function overflowKey(overflow: Summed): string {
  if (overflow.type === 'limit.hit') return `${overflow.limit}\0${overflow.action}`;
  if (overflow.type === 'authz.denied') return overflow.action;
  return overflow.listener;
}

function overflowOf(event: Summed, maxKeys: number): Summed {
  if (event.type === 'limit.hit') {
    return { type: 'limit.hit', limit: event.limit, action: event.action, count: 0, detail: `summed over more than ${maxKeys} distinct sources in this window` };
  }
  if (event.type === 'authz.denied') {
    return { type: 'authz.denied', clientId: '*', principal: null, remoteAddress: '*', action: event.action, topic: '*', reason: `summed over more than ${maxKeys} distinct clients and topics in this window` };
  }
  if (event.type === 'connection.refused') {
    return { type: 'connection.refused', stage: 'accept', listener: event.listener, remoteAddress: '*', reason: `summed over more than ${maxKeys} distinct sources in this window` };
  }
  return { type: 'tls.handshake', listener: event.listener, remoteAddress: '*', ok: false, resumed: false, reason: `summed over more than ${maxKeys} distinct sources in this window` };
}
