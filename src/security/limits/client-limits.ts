/**
 * Per-client publish quotas: a message-rate bucket and a bandwidth bucket (topic + payload
 * bytes) per connection, built lazily on the client's first PUBLISH. Owns: the quota
 * arithmetic behind the broker's PublishQuota port. Must not: read the clock (the channel
 * passes one `now` per PUBLISH to both buckets), answer the client, or emit events (the
 * publish handler does, since only it knows the protocol version and QoS).
 */
import type { PublishLimit, PublishQuota, PublishQuotaFactory } from '../../broker/broker.js';
import type { LimitsConfig } from '../../core/limits-config.js';
import { TokenBucket } from './token-bucket.js';

interface Rate {
  perSecond: number;
  burst: number;
}

/** One client's two buckets; either may be absent (its `perSecond` is 0). */
export class ClientPublishQuota implements PublishQuota {
  private readonly messages: TokenBucket | null;
  private readonly bytes: TokenBucket | null;
  private readonly byteBurst: number;

  constructor(messages: Rate, bandwidth: Rate, now: number) {
    this.messages = messages.perSecond > 0 ? new TokenBucket(messages.perSecond, messages.burst, now) : null;
    this.bytes = bandwidth.perSecond > 0 ? new TokenBucket(bandwidth.perSecond, bandwidth.burst, now) : null;
    this.byteBurst = bandwidth.burst;
  }

  /**
   * A message larger than the bandwidth burst costs the whole burst: otherwise it could
   * never pass, and a v3.1.1 publisher slowed down for it would wait forever.
   */
  private cost(bytes: number): number {
    return bytes > this.byteBurst ? this.byteBurst : bytes;
  }

  take(now: number, bytes: number): PublishLimit | null {
    const messages = this.messages;
    const buckets = this.bytes;
    // Both must have room before either is charged: a refused message costs nothing.
    if (buckets === null) return messages === null || messages.take(now) ? null : 'publish-rate';
    const n = this.cost(bytes);
    if (messages !== null && messages.waitMs(now) > 0) return 'publish-rate';
    if (!buckets.take(now, n)) return 'bandwidth';
    messages?.take(now);
    return null;
  }

  /**
   * Milliseconds until a message of `bytes` fits in both buckets (0 when it does now). A
   * slowed-down v3.1.1 publisher stops reading that long, then the message let through
   * without a token is charged with `take`, so the long-run rate stays the configured one.
   */
  waitMs(now: number, bytes: number): number {
    const a = this.messages?.waitMs(now) ?? 0;
    const b = this.bytes?.waitMs(now, this.cost(bytes)) ?? 0;
    return a > b ? a : b;
  }
}

/**
 * The factory the composition root hands the broker. Null when limits are off or neither
 * rate is set, so the publish path pays nothing for quotas nobody configured.
 */
export function publishQuotaFactory(limits: LimitsConfig): PublishQuotaFactory | null {
  if (!limits.enabled) return null;
  const { publishRate, bandwidth } = limits.client;
  if (publishRate.perSecond <= 0 && bandwidth.perSecond <= 0) return null;
  return (now) => new ClientPublishQuota(publishRate, bandwidth, now);
}
