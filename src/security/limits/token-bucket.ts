/**
 * A token bucket: `rate` tokens per second, holding at most `burst`. Owns: the arithmetic.
 * Must not: read the clock itself (callers pass `now`, so one clock read serves several
 * buckets and tests drive time).
 *
 * Refill is lazy (computed at take time), so an idle bucket costs nothing and there is no
 * timer per client.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    /** Tokens added per second. */
    private readonly rate: number,
    /** Capacity: the largest burst allowed after idling. */
    private readonly burst: number,
    now: number,
  ) {
    this.tokens = burst;
    this.last = now;
  }

  private refill(now: number): void {
    const elapsed = now - this.last;
    if (elapsed <= 0) return;
    this.last = now;
    const tokens = this.tokens + (elapsed * this.rate) / 1000;
    this.tokens = tokens > this.burst ? this.burst : tokens;
  }

  /** Takes `n` tokens when there are that many; false (and nothing taken) otherwise. */
  take(now: number, n = 1): boolean {
    this.refill(now);
    if (this.tokens < n) return false;
    this.tokens -= n;
    return true;
  }

  /** Milliseconds until `n` tokens will be there (0 when they are now). */
  waitMs(now: number, n = 1): number {
    this.refill(now);
    if (this.tokens >= n) return 0;
    return Math.ceil(((n - this.tokens) * 1000) / this.rate);
  }

  /** True when the bucket has been full long enough that dropping it loses nothing (for map pruning). */
  isFull(now: number): boolean {
    this.refill(now);
    return this.tokens >= this.burst;
  }
}
