/**
 * One token bucket per key (a device identity, say), for the request rates of the broker's
 * own services (OTA jobs, block transfer). Owns: the map of buckets and its bound. Must
 * not: read the clock itself (callers pass `now`) or decide what a refusal means.
 *
 * SECURITY: memory is bounded: past `maxKeys`, buckets that are full (idle long enough
 * that forgetting them changes nothing) are dropped before a new key is added; a key that
 * finds the map still full of busy buckets is refused rather than let the map grow.
 */
import { TokenBucket } from './token-bucket.js';

export class KeyedTokenBuckets {
  private readonly buckets = new Map<string, TokenBucket>();

  constructor(
    /** Tokens per second, per key. */
    private readonly rate: number,
    /** The burst a key may take after idling. */
    private readonly burst: number,
    private readonly maxKeys = 4096,
  ) {}

  /** Takes one token from `key`'s bucket; false when it is empty (or no room is left for a new key). */
  take(key: string, now: number): boolean {
    let bucket = this.buckets.get(key);
    if (bucket === undefined) {
      if (this.buckets.size >= this.maxKeys) {
        for (const [k, b] of this.buckets) if (b.isFull(now)) this.buckets.delete(k);
        if (this.buckets.size >= this.maxKeys) return false;
      }
      bucket = new TokenBucket(this.rate, this.burst, now);
      this.buckets.set(key, bucket);
    }
    return bucket.take(now);
  }

  get size(): number {
    return this.buckets.size;
  }
}
