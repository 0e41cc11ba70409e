/**
 * Per-client publish quotas (security/limits/client-limits.ts) and the slow-consumer clock
 * (broker/session/congestion-watch.ts), driven by a hand-moved clock: no sleeping, no timing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Clock, TimerHandle } from '../../src/core/clock.js';
import { limitsSchema } from '../../src/core/limits-config.js';
import { ClientPublishQuota, publishQuotaFactory } from '../../src/security/limits/client-limits.js';
import { CongestionWatch, type CongestionSource } from '../../src/broker/session/congestion-watch.js';

const T0 = 1_700_000_000_000;

test('message rate: the burst passes, the next is refused with publish-rate, a refill lets one more through', () => {
  const q = new ClientPublishQuota({ perSecond: 20, burst: 20 }, { perSecond: 0, burst: 1 }, T0);
  for (let i = 0; i < 20; i++) assert.equal(q.take(T0, 100), null, `message ${i}`);
  assert.equal(q.take(T0, 100), 'publish-rate');
  assert.equal(q.waitMs(T0, 100), 50);
  assert.equal(q.take(T0 + 49, 100), 'publish-rate');
  assert.equal(q.take(T0 + 50, 100), null);
  assert.equal(q.take(T0 + 50, 100), 'publish-rate');
});

test('bandwidth: bytes are charged, a refused message costs nothing in either bucket', () => {
  const q = new ClientPublishQuota({ perSecond: 100, burst: 3 }, { perSecond: 1000, burst: 1000 }, T0);
  assert.equal(q.take(T0, 600), null);
  assert.equal(q.take(T0, 600), 'bandwidth');
  // The refused message took no message token: two more small ones still fit the burst of 3.
  assert.equal(q.take(T0, 100), null);
  assert.equal(q.take(T0, 100), null);
  assert.equal(q.take(T0, 100), 'publish-rate');
  // A rate refusal took no bytes: after one message token refills, 200 bytes remain.
  assert.equal(q.take(T0 + 10, 200), null);
});

test('a message larger than the bandwidth burst costs the whole burst instead of never passing', () => {
  const q = new ClientPublishQuota({ perSecond: 0, burst: 1 }, { perSecond: 1000, burst: 1000 }, T0);
  assert.equal(q.take(T0, 50_000), null);
  assert.equal(q.take(T0, 1), 'bandwidth');
  assert.equal(q.waitMs(T0, 50_000), 1000);
  assert.equal(q.take(T0 + 1000, 50_000), null);
});

test('the factory: null with limits off or no rate set, a quota otherwise', () => {
  assert.equal(publishQuotaFactory(limitsSchema.parse({ enabled: false })), null);
  assert.equal(publishQuotaFactory(limitsSchema.parse({ client: { publishRate: { perSecond: 0 }, bandwidth: { perSecond: 0 } } })), null);
  const make = publishQuotaFactory(limitsSchema.parse({ client: { publishRate: { perSecond: 1, burst: 1 } } }));
  assert.ok(make !== null);
  const q = make(T0)!;
  assert.equal(q.take(T0, 10), null);
  assert.equal(q.take(T0, 10), 'publish-rate');
});

/** A clock whose timers run when the test moves time. */
class ManualClock implements Clock {
  t = T0;
  timers: Array<{ at: number; fn: () => void; live: boolean }> = [];
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): TimerHandle {
    const timer = { at: this.t + ms, fn, live: true };
    this.timers.push(timer);
    return { cancel: () => (timer.live = false) };
  }
  get armed(): number {
    return this.timers.filter((t) => t.live).length;
  }
  advance(ms: number): void {
    this.t += ms;
    for (;;) {
      const due = this.timers.find((t) => t.live && t.at <= this.t);
      if (due === undefined) return;
      due.live = false;
      due.fn();
    }
  }
}

test('congestion watch: cut after the bound of continuous congestion, with one timer', () => {
  const clock = new ManualClock();
  const stuck: Array<[CongestionSource, number]> = [];
  const w = new CongestionWatch(clock, 1000, (s, ms) => stuck.push([s, ms]));
  assert.equal(clock.armed, 0, 'a healthy connection arms nothing');
  w.congested('socket');
  w.congested('socket');
  w.congested('queue');
  assert.equal(clock.armed, 1);
  clock.advance(999);
  assert.deepEqual(stuck, []);
  clock.advance(1);
  assert.deepEqual(stuck, [['socket', 1000]]);
});

test('congestion watch: a drain in between restarts the count; an eased watch lapses without a cut', () => {
  const clock = new ManualClock();
  const stuck: Array<[CongestionSource, number]> = [];
  const w = new CongestionWatch(clock, 1000, (s, ms) => stuck.push([s, ms]));
  w.congested('socket');
  clock.advance(600);
  w.eased('socket');
  clock.advance(100);
  w.congested('socket'); // a new congestion at +700
  clock.advance(300); // the first timer fires at +1000: 300 ms into the new one, re-armed
  assert.deepEqual(stuck, []);
  assert.equal(clock.armed, 1);
  clock.advance(699);
  assert.deepEqual(stuck, []);
  clock.advance(1);
  assert.deepEqual(stuck, [['socket', 1000]]);

  let cuts = 0;
  const healthy = new CongestionWatch(clock, 1000, () => cuts++);
  healthy.congested('queue');
  healthy.eased('queue');
  clock.advance(5000);
  assert.equal(cuts, 0, 'no cut once the queue caught up');
  assert.equal(clock.armed, 0, 'the timer lapsed instead of re-arming');
  assert.equal(healthy.active, false);
});

test('congestion watch: stop cancels the timer', () => {
  const clock = new ManualClock();
  let cuts = 0;
  const w = new CongestionWatch(clock, 1000, () => cuts++);
  w.congested('queue');
  w.stop();
  clock.advance(5000);
  assert.equal(cuts, 0);
  assert.equal(clock.armed, 0);
});
