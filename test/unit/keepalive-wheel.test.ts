/**
 * The keep-alive wheel with a manual clock: a connection is asked in the second its
 * deadline runs out (never before the deadline, at most a second after), an active one is
 * filed again, an unfiled one is never asked, one timer serves them all and stops when the
 * last one leaves, and a long stall (or a clock step) is caught up in one pass.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Clock, TimerHandle } from '../../src/core/clock.js';
import { KeepAliveWheel, type KeepAliveWatched } from '../../src/broker/channel/keepalive-wheel.js';

class StepClock implements Clock {
  t = 1_700_000_000_250;
  private timers: Array<{ at: number; fn: () => void; live: boolean }> = [];
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): TimerHandle {
    const timer = { at: this.t + ms, fn, live: true };
    this.timers.push(timer);
    return { cancel: () => void (timer.live = false) };
  }
  /** Live timers (the wheel should hold at most one). */
  get pending(): number {
    return this.timers.filter((x) => x.live).length;
  }
  /** Moves time on in 50 ms steps, firing what falls due at each step. */
  advance(ms: number): void {
    const end = this.t + ms;
    while (this.t < end) {
      this.t = Math.min(end, this.t + 50);
      const due = this.timers.filter((x) => x.live && x.at <= this.t);
      this.timers = this.timers.filter((x) => x.live && x.at > this.t);
      for (const x of due) x.fn();
    }
  }
  /** Jumps without firing on the way (a stalled event loop, a clock step). */
  jump(ms: number): void {
    this.t += ms;
    const due = this.timers.filter((x) => x.live && x.at <= this.t);
    this.timers = this.timers.filter((x) => x.live && x.at > this.t);
    for (const x of due) x.fn();
  }
}

/** A connection that expires at `deadline` unless `activeUntil` says it was heard from. */
class Conn implements KeepAliveWatched {
  keepAliveSlot = 0;
  asked: number[] = [];
  expiredAt: number | null = null;
  constructor(public deadline: number) {}
  keepAliveDue(now: number): number | null {
    this.asked.push(now);
    if (now < this.deadline) return this.deadline;
    this.expiredAt = now;
    return null;
  }
}

test('a silent connection is closed within a second after its deadline, never before, and the timer stops with the last one', () => {
  const clock = new StepClock();
  const wheel = new KeepAliveWheel(clock);
  const c = new Conn(clock.t + 1500);
  wheel.watch(c, c.deadline);
  assert.equal(clock.pending, 1);
  clock.advance(1400);
  assert.equal(c.expiredAt, null, 'not before the deadline');
  clock.advance(1200);
  assert.ok(c.expiredAt !== null && c.expiredAt >= c.deadline && c.expiredAt < c.deadline + 1000, `expired at +${(c.expiredAt ?? 0) - c.deadline} ms`);
  assert.equal(wheel.size, 0);
  assert.equal(c.keepAliveSlot, 0);
  clock.advance(5000);
  assert.equal(clock.pending, 0, 'no tick while nobody is filed');
});

test('an active connection is filed again at its new deadline; an unfiled one is never asked', () => {
  const clock = new StepClock();
  const wheel = new KeepAliveWheel(clock);
  const active = new Conn(clock.t + 2000);
  const gone = new Conn(clock.t + 2000);
  wheel.watch(active, active.deadline);
  wheel.watch(gone, gone.deadline);
  // Heard from at +1.5 s: its deadline moves to +3.5 s, which it reports when asked.
  clock.advance(1500);
  active.deadline = clock.t + 2000;
  wheel.unwatch(gone);
  clock.advance(1500);
  assert.equal(active.expiredAt, null);
  assert.equal(active.asked.length, 1, 'asked once, at its first deadline second');
  assert.deepEqual(gone.asked, []);
  clock.advance(1500);
  assert.ok(active.expiredAt !== null && active.expiredAt >= active.deadline && active.expiredAt < active.deadline + 1000);
  assert.equal(clock.pending, 0);
});

test('a thousand connections with spread deadlines share one timer and each expires in its own second', () => {
  const clock = new StepClock();
  const wheel = new KeepAliveWheel(clock);
  const conns = Array.from({ length: 1000 }, (_, i) => new Conn(clock.t + 1000 + i * 37));
  for (const c of conns) wheel.watch(c, c.deadline);
  assert.equal(wheel.size, 1000);
  assert.equal(clock.pending, 1);
  clock.advance(40_000);
  for (const c of conns) {
    assert.ok(c.expiredAt !== null && c.expiredAt >= c.deadline && c.expiredAt < c.deadline + 1000, `deadline ${c.deadline}, expired ${String(c.expiredAt)}`);
    assert.equal(c.asked.length, 1);
  }
  assert.equal(wheel.size, 0);
});

test('after a ten-hour stall every overdue connection is asked once, in one pass', () => {
  const clock = new StepClock();
  const wheel = new KeepAliveWheel(clock);
  const conns = [5_000, 60_000, 3_600_000].map((d) => new Conn(clock.t + d));
  const later = new Conn(clock.t + 20 * 3_600_000);
  for (const c of [...conns, later]) wheel.watch(c, c.deadline);
  clock.jump(10 * 3_600_000);
  for (const c of conns) assert.equal(c.asked.length, 1);
  assert.deepEqual(later.asked, []);
  assert.equal(wheel.size, 1);
});
