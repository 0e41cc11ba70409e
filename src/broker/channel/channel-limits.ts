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
 * Per-role quotas: the quota is chosen once per connection, on its first PUBLISH (after
 * CONNECT, so the identity is known): when the broker's authorizer is also a
 * `ClientQuotaSource` (the rule engine is, security/authz/engine.ts) it may give this
 * client its role's quota; otherwise, or when no role quota is bound, the broker-wide
 * factory (limits.client) applies. Every later PUBLISH charges the same buckets: no lookup
 * per message. A policy change applies to connections made after it.
 */
import type { TimerHandle } from '../../core/clock.js';
import type { LimitsConfig } from '../../core/limits-config.js';
import type { LimitName, SecurityEvent } from '../../core/security-events.js';
import { ReasonCode } from '../../protocol/reason-codes.js';
import type { PublishLimit, PublishQuota } from '../broker.js';
import type { AuthorizedClient } from '../ports.js';
import { CongestionWatch, type CongestionSource } from '../session/congestion-watch.js';
import type { Channel } from './channel.js';

type LimitAction = Extract<SecurityEvent, { type: 'limit.hit' }>['action'];

/**
 * The port through which a client's own publish quota is found (declared by its user,
 * ARCHITECTURE idea 3). Asked once per connection.
 */
export interface ClientQuotaSource {
  /** The quota of `client` (its buckets full at `now`); undefined: the broker-wide limits.client applies. */
  clientPublishQuota(client: AuthorizedClient, defaults: LimitsConfig['client'], now: number): PublishQuota | undefined;
}

/** The authorizer as a quota source, when it is one (the broker holds it as a DeliveryAuthorizer). */
function quotaSourceOf(authorizer: object): ClientQuotaSource | null {
  return typeof (authorizer as Partial<ClientQuotaSource>).clientPublishQuota === 'function' ? (authorizer as ClientQuotaSource) : null;
}

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
  /** The publish quota; undefined until the first PUBLISH asks, null when unlimited. */
  private quota: PublishQuota | null | undefined = undefined;
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

  /** This client's role quota, else the broker-wide one; null: not limited. Once per connection. */
  private chooseQuota(now: number): PublishQuota | null {
    const broker = this.ch.broker;
    // No broker-wide factory: limits are off (or no rate is set), and then role quotas are off too.
    if (broker.publishQuota === null) return null;
    const client = this.ch.client;
    const own = client === null ? undefined : quotaSourceOf(broker.authorizer)?.clientPublishQuota(client, broker.limits.client, now);
    return own ?? broker.publishQuota(now);
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
