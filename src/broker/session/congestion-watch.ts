/**
 * The slow-consumer clock of one connection (limits.slowClient.maxCongestedSeconds). Owns:
 * how long a subscriber has been congested without catching up, in its socket (bytes over
 * the high-water mark, no drain) or in its session queue (over half full: it does not
 * acknowledge). Must not: decide what to do about it (the channel cuts the client) or
 * read the clock on a healthy path.
 *
 * One timer at most, armed when a congestion starts and never cancelled and re-armed on
 * every drain: a congestion that eases only clears a timestamp, and the timer, when it
 * fires, re-arms for the rest of a newer congestion or lapses. A healthy connection has no
 * watch at all (the channel builds one on its first congestion).
 */
import type { Clock, TimerHandle } from '../../core/clock.js';

/** Where a subscriber is behind: its socket's write buffer, or its session's queue. */
export type CongestionSource = 'socket' | 'queue';

export class CongestionWatch {
  /** When each congestion started (ms since the epoch); 0: not congested there. */
  private socketSince = 0;
  private queueSince = 0;
  private timer: TimerHandle | null = null;

  constructor(
    private readonly clock: Clock,
    private readonly maxMs: number,
    /** Called once the subscriber has been congested for `maxMs` without catching up. */
    private readonly onStuck: (source: CongestionSource, ms: number) => void,
  ) {}

  /** The subscriber is behind at `source`; starts counting unless it already is. */
  congested(source: CongestionSource): void {
    if ((source === 'socket' ? this.socketSince : this.queueSince) !== 0) return;
    const now = this.clock.now();
    if (source === 'socket') this.socketSince = now;
    else this.queueSince = now;
    if (this.timer === null) this.arm(this.maxMs);
  }

  /** The subscriber caught up at `source` (its socket drained, its queue fell to a quarter). */
  eased(source: CongestionSource): void {
    if (source === 'socket') this.socketSince = 0;
    else this.queueSince = 0;
  }

  /** True while a congestion is being counted. */
  get active(): boolean {
    return this.socketSince !== 0 || this.queueSince !== 0;
  }

  /** Stops counting (the connection closed). */
  stop(): void {
    this.timer?.cancel();
    this.timer = null;
    this.socketSince = 0;
    this.queueSince = 0;
  }

  private arm(ms: number): void {
    this.timer = this.clock.setTimeout(() => this.check(), ms);
  }

  private check(): void {
    this.timer = null;
    const s = this.socketSince;
    const q = this.queueSince;
    if (s === 0 && q === 0) return;
    // The older of the two congestions decides.
    const source: CongestionSource = q === 0 || (s !== 0 && s <= q) ? 'socket' : 'queue';
    const since = source === 'socket' ? s : q;
    const elapsed = this.clock.now() - since;
    if (elapsed >= this.maxMs) this.onStuck(source, elapsed);
    else this.arm(this.maxMs - elapsed);
  }
}
