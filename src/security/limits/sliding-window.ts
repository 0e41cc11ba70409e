/**
 * Counting happenings per key (a source address, a client id) within a sliding time
 * window, with bounded memory. Owns: the counts and their pruning. Must not: decide what a
 * count means (brute-force.ts and flapping.ts do) or read the clock (callers pass `now`).
 *
 * SECURITY: an attacker can make up keys (random client ids), so the number of keys is
 * capped: past the cap, keys whose window has passed go first, then the least recently hit.
 * Dropping a key forgets its count, which only ever delays a ban; the per-address count,
 * whose keys an attacker cannot mint as cheaply, still runs.
 */

export const DEFAULT_MAX_KEYS = 100_000;

export class SlidingWindowCounter {
  /** Per key, the times of its last hits (at most `threshold`, oldest first), in insertion = recency order. */
  private readonly hits = new Map<string, number[]>();

  constructor(
    private readonly windowMs: number,
    /** Hits beyond this many are not remembered: the decision needs no more. */
    private readonly threshold: number,
    private readonly maxKeys = DEFAULT_MAX_KEYS,
  ) {}

  /** Records a hit of `key` at `now`; returns how many hits `key` had within the window, this one included. */
  hit(key: string, now: number): number {
    const since = now - this.windowMs;
    let times = this.hits.get(key);
    if (times === undefined) {
      if (this.hits.size >= this.maxKeys) this.makeRoom(now);
      times = [];
    } else {
      // Re-inserted below: the Map's order stays least recently hit first.
      this.hits.delete(key);
    }
    let stale = 0;
    while (stale < times.length && times[stale]! <= since) stale++;
    if (stale > 0) times.splice(0, stale);
    times.push(now);
    if (times.length > this.threshold) times.shift();
    this.hits.set(key, times);
    return times.length;
  }

  /** Forgets `key` (after it led to a ban, counting starts again). */
  clear(key: string): void {
    this.hits.delete(key);
  }

  get size(): number {
    return this.hits.size;
  }

  private makeRoom(now: number): void {
    const since = now - this.windowMs;
    for (const [key, times] of this.hits) if (times[times.length - 1]! <= since) this.hits.delete(key);
    // Make room for a tenth at once (least recently hit first), so a flood of new keys
    // pays one scan per tenth of the cap, not one per key.
    const target = Math.floor(this.maxKeys * 0.9);
    for (const key of this.hits.keys()) {
      if (this.hits.size <= target) break;
      this.hits.delete(key);
    }
  }
}
