/**
 * One channel's per-client limits (limits.client, limits.slowClient): its publish quota,
 * the pause of a slowed-down v3.1.1 publisher, and the slow-consumer clock; plus the
 * `limit.hit` events channels emit. Owns: when a client is over a limit and the one timer
 * each of these may arm. Must not: answer the client (the handlers choose the reason code
 * for the protocol version) or touch sockets.
 *
 * Built on the channel's first PUBLISH or first congestion: an idle connection pays for
 * none of it.
 *
 * Per-role quotas: chosen once per connection, when its session opens (the identity is
 * known then): the broker's `ClientQuotaSource` (the rule engine) may give this client its
 * role's publish quota, subscription cap and queue size; otherwise, or when no role quota
 * is bound, limits.client and mqtt.maxQueued apply. Every PUBLISH charges the same
 * buckets: no lookup per message. A policy change applies to connections made after it.
 */
import type { TimerHandle } from '../../core/clock.js';
import type { LimitName, SecurityEvent } from '../../core/security-events.js';
import { ReasonCode } from '../../protocol/reason-codes.js';
import type { Broker, PublishLimit, PublishQuota } from '../broker.js';
import type { ClientQuota } from '../ports.js';

/** The subscription cap: a role's when it has one, limits.client's otherwise, none with limits off. */
export function maxSubscriptionsOf(broker: Broker, own: number | undefined): number {
  return broker.limits.enabled ? (own ?? broker.limits.client.maxSubscriptions) : Infinity;
}
import { CongestionWatch, type CongestionSource } from '../session/congestion-watch.js';
import type { Channel } from './channel.js';

type LimitAction = Extract<SecurityEvent, { type: 'limit.hit' }>['action'];

/** One `limit.hit` (count 1) for this channel's client; nothing is built when nobody listens. */
export function emitLimitHit(ch: Channel, limit: LimitName, action: LimitAction, detail?: string): void {
  const events = ch.broker.events;
  if (!events.active) return;
  events.emit({
    type: 'limit.hit',
    limit,
    listener: ch.conn.listenerName,
    remoteAddress: ch.conn.remoteAddress,
    ...(ch.clientId !== '' ? { clientId: ch.clientId } : {}),
    action,
    count: 1,
    ...(detail !== undefined ? { detail } : {}),
  });
}

/** The reason string a slow consumer is cut with (v5 DISCONNECT). */
export const SLOW_CONSUMER = 'slow consumer';

export class ChannelLimits {
  /** The publish quota; undefined until the session opens (or the first PUBLISH asks), null when unlimited. */
  private quota: PublishQuota | null | undefined = undefined;
  /** A role's subscription cap (adopt); undefined: limits.client's. */
  private ownMaxSubscriptions: number | undefined = undefined;
  /** The pause of a slowed-down publisher; at most one. */
  private slowTimer: TimerHandle | null = null;
  private watch: CongestionWatch | null = null;

  constructor(private readonly ch: Channel) {}

  /** Charges a PUBLISH of `bytes` (topic + payload) to the quota: null when it fits, else the limit exceeded. */
  checkPublish(now: number, bytes: number): PublishLimit | null {
    let quota = this.quota;
    if (quota === undefined) quota = this.quota = this.chooseQuota(now);
    return quota === null ? null : quota.take(now, bytes);
  }

  /**
   * Takes a role quota (chosen when the session opened, handlers/open-session.ts): its
   * publish buckets and subscription cap replace limits.client's for this connection.
   * Only clients with a role quota build this object at CONNECT; the others keep the
   * broker-wide limits, built on first need.
   */
  adopt(own: ClientQuota): void {
    this.ownMaxSubscriptions = own.maxSubscriptions;
    // No broker-wide factory: limits are off (or no rate is set), and then role quotas are off too.
    this.quota = this.ch.broker.publishQuota === null ? null : own.publish;
  }

  /** A quota set on the live connection (a throttle, or its release with null), replacing whatever it had. */
  replaceQuota(quota: PublishQuota | null): void {
    this.quota = quota;
  }

  /** SUBSCRIBE's cap on this session's subscriptions: the role's, else limits.client's (none with limits off). */
  get maxSubscriptions(): number {
    return maxSubscriptionsOf(this.ch.broker, this.ownMaxSubscriptions);
  }

  /** The broker-wide publish quota (limits.client), for a client without a role quota. */
  private chooseQuota(now: number): PublishQuota | null {
    const broker = this.ch.broker;
    return broker.publishQuota === null ? null : broker.publishQuota(now);
  }

  /**
   * A v3.1.1 QoS 1/2 publisher over its quota has no code to be told so: the message in
   * hand goes through, reading pauses until the quota holds it, and it is charged then.
   * Nothing is lost; the publisher just waits (TCP flow control does the rest).
   */
  slowDown(now: number, bytes: number): void {
    const quota = this.quota;
    if (quota == null || this.slowTimer !== null) return;
    const ch = this.ch;
    ch.broker.counters.slowedQuota++;
    ch.conn.pauseReading();
    this.slowTimer = ch.broker.clock.setTimeout(() => {
      this.slowTimer = null;
      quota.take(ch.broker.clock.now(), bytes);
      ch.conn.resumeReading();
    }, quota.waitMs(now, bytes));
  }

  /** `action: disconnect`: the client went over `limit` and is closed (v5 DISCONNECT 0x96; v3.1.1: closed). */
  disconnectOverQuota(limit: PublishLimit, reason: string): void {
    const ch = this.ch;
    emitLimitHit(ch, limit, 'disconnected');
    ch.expel(ReasonCode.MessageRateTooHigh, reason);
  }

  /** The subscriber is behind at `source`: starts the slow-consumer clock (limits.slowClient). */
  congested(source: CongestionSource): void {
    const ch = this.ch;
    if (ch.state !== 'connected' || !ch.broker.limits.enabled) return;
    this.watch ??= new CongestionWatch(ch.broker.clock, ch.broker.limits.slowClient.maxCongestedSeconds * 1000, (src, ms) =>
      this.cutSlowConsumer(`${src === 'socket' ? 'socket not drained' : 'queue not acknowledged'} for ${ms} ms`),
    );
    this.watch.congested(source);
  }

  eased(source: CongestionSource): void {
    this.watch?.eased(source);
  }

  /**
   * SECURITY: a subscriber that does not drain cannot be allowed to hold broker memory or
   * stall its publishers: it is disconnected (v5 DISCONNECT 0x97 Quota Exceeded, the code
   * MQTT 5 gives an implementation-imposed limit; v3.1.1: closed), and publishers it
   * paused resume when its connection ends.
   */
  cutSlowConsumer(detail: string): void {
    const ch = this.ch;
    if (ch.state === 'closed') return;
    ch.broker.logger.warn({ clientId: ch.clientId, remote: ch.conn.remoteAddress, detail }, 'slow consumer disconnected');
    emitLimitHit(ch, 'slow-client', 'disconnected', detail);
    if (ch.state !== 'connected') {
      ch.abort();
      return;
    }
    ch.expel(ReasonCode.QuotaExceeded, SLOW_CONSUMER);
  }

  /** The channel closed: no timer outlives it. */
  stop(): void {
    this.slowTimer?.cancel();
    this.slowTimer = null;
    this.watch?.stop();
  }
}
