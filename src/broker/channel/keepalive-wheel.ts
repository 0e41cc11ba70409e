/**
 * Keep-alive for every connection on one timer: connections are filed under the second in
 * which their keep-alive runs out, and one tick a second looks only at the seconds that
 * have passed. Owns: the filing and the tick. Must not: decide what an expired connection
 * gets (the channel does: DISCONNECT 0x8D and close) or read a connection's activity itself.
 *
 * Why not a timer per connection: a Node Timeout, its closure and the handle cost ~350
 * bytes of every idle connection (measured with heap snapshots, issue 17), and idle
 * connections are most of a fleet. Here a connection costs one entry in one Set. A
 * connection is closed within a second after its deadline, never before it [MQTT-3.1.2-24].
 */
import type { Clock, TimerHandle } from '../../core/clock.js';

/** What the wheel asks of a connection whose second has come. */
export interface KeepAliveWatched {
  /** The second (clock ms / 1000, rounded up) it is filed under; 0 when not filed. */
  keepAliveSlot: number;
  /**
   * Called in the second of its deadline: returns the new deadline in clock ms when the
   * connection was active meanwhile (it is filed again), or null when it expired (or closed).
   */
  keepAliveDue(now: number): number | null;
}

const TICK_MS = 1000;

export class KeepAliveWheel {
  private readonly slots = new Map<number, Set<KeepAliveWatched>>();
  /** The last second the tick went through. */
  private doneThrough: number;
  private watched = 0;
  private timer: TimerHandle | null = null;

  constructor(private readonly clock: Clock) {
    this.doneThrough = Math.floor(clock.now() / TICK_MS);
  }

  /** Connections filed now. */
  get size(): number {
    return this.watched;
  }

  /** Files `c` under the second of `deadlineMs` (clock ms), replacing an earlier filing. */
  watch(c: KeepAliveWatched, deadlineMs: number): void {
    this.unwatch(c);
    // Never in a second the tick already went through: it would wait for the next pass.
    const slot = Math.max(Math.ceil(deadlineMs / TICK_MS), this.doneThrough + 1);
    let set = this.slots.get(slot);
    if (set === undefined) this.slots.set(slot, (set = new Set()));
    set.add(c);
    c.keepAliveSlot = slot;
    if (this.watched++ === 0) this.arm();
  }

  unwatch(c: KeepAliveWatched): void {
    const slot = c.keepAliveSlot;
    if (slot === 0) return;
    c.keepAliveSlot = 0;
    const set = this.slots.get(slot);
    if (set === undefined || !set.delete(c)) return;
    if (set.size === 0) this.slots.delete(slot);
    if (--this.watched === 0) this.disarm();
  }

  /** Stops the tick (broker shutdown); filed connections stay filed. */
  stop(): void {
    this.disarm();
  }

  private arm(): void {
    if (this.timer !== null) return;
    // A new first connection starts from now: no pass over seconds nobody was filed in.
    const now = this.clock.now();
    this.doneThrough = Math.max(this.doneThrough, Math.floor(now / TICK_MS) - 1);
    // On the second's boundary: a connection filed under a second is asked as it begins.
    this.timer = this.clock.setTimeout(() => this.tick(), TICK_MS - (now % TICK_MS));
  }

  private disarm(): void {
    this.timer?.cancel();
    this.timer = null;
  }

  private tick(): void {
    this.timer = null;
    const now = this.clock.now();
    const current = Math.floor(now / TICK_MS);
    const due: Array<Set<KeepAliveWatched>> = [];
    const take = (slot: number): void => {
      const set = this.slots.get(slot);
      if (set === undefined) return;
      this.slots.delete(slot);
      this.watched -= set.size;
      due.push(set);
    };
    // Second by second; after a long stall (or a clock step) over the filed seconds instead.
    if (current - this.doneThrough <= this.slots.size) for (let slot = this.doneThrough + 1; slot <= current; slot++) take(slot);
    else for (const slot of [...this.slots.keys()]) if (slot <= current) take(slot);
    // Done before the connections are asked: one filed again goes after this second.
    this.doneThrough = current;
    for (const set of due) {
      for (const c of set) {
        // Unfiled meanwhile (closed while an earlier one of this pass was handled).
        if (c.keepAliveSlot === 0) continue;
        c.keepAliveSlot = 0;
        const next = c.keepAliveDue(now);
        if (next !== null) this.watch(c, next);
      }
    }
    if (this.watched > 0) this.arm();
  }
}
