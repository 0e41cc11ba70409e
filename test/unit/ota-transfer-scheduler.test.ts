/**
 * The OTA transfer scheduler with a test clock: the global byte budget (token bucket),
 * round-robin fairness across downloads, per-device backpressure (unacknowledged
 * messages, a congested socket), one get per device (a new one replaces the old), a
 * disconnected device's blocks dropped, blocks in index order with reads that resolve
 * later, and a stopped scheduler holding nothing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Clock, TimerHandle } from '../../src/core/clock.js';
import { TransferScheduler, type BlockDownload, type DropReason } from '../../src/ota/transfer/scheduler.js';

const T0 = 1_000_000;

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
    const end = this.t + ms;
    for (;;) {
      const due = this.timers.filter((t) => t.live && t.at <= end).sort((a, b) => a.at - b.at)[0];
      if (due === undefined) break;
      this.t = Math.max(this.t, due.at);
      due.live = false;
      due.fn();
    }
    this.t = end;
  }
}

/** A device's link: what it received, an acknowledgement count it controls, and its state. */
class FakeLink {
  received: Array<{ topic: string; index: number }> = [];
  unacked = 0;
  autoAck = true;
  socketCongested = false;
  gone = false;
  subscribed = true;
  send(topic: string, payload: Buffer): boolean {
    if (!this.subscribed) return false;
    this.received.push({ topic, index: payload.readUInt32BE(0) });
    if (!this.autoAck) this.unacked++;
    return true;
  }
  backlog(): number {
    return this.unacked;
  }
  congested(): boolean {
    return this.socketCongested;
  }
  closed(): boolean {
    return this.gone;
  }
}

const BLOCK = 1000;

function download(identity: string, link: FakeLink, indices: number[], opts: { read?: (i: number) => Buffer | Promise<Buffer>; topic?: string } = {}): BlockDownload {
  return {
    identity,
    link,
    topic: opts.topic ?? `t/${identity}`,
    indices,
    sizeOf: () => BLOCK,
    read: opts.read ?? ((i) => block(i)),
  };
}

function block(i: number): Buffer {
  const b = Buffer.alloc(BLOCK);
  b.writeUInt32BE(i, 0);
  return b;
}

const range = (from: number, n: number): number[] => Array.from({ length: n }, (_, k) => from + k);

function setUp(opts: { rate?: number; maxBacklog?: number } = {}): { clock: ManualClock; s: TransferScheduler; sent: Map<string, number>; drops: Array<{ identity: string; reason: DropReason; unsent: number }> } {
  const clock = new ManualClock();
  const sent = new Map<string, number>();
  const drops: Array<{ identity: string; reason: DropReason; unsent: number }> = [];
  const s = new TransferScheduler({
    maxBytesPerSecond: opts.rate ?? 100_000,
    clock,
    maxBacklog: opts.maxBacklog ?? 1_000_000,
    pollMs: 5,
    onSent: (id, bytes) => sent.set(id, (sent.get(id) ?? 0) + bytes),
    onDropped: (identity, reason, unsent) => drops.push({ identity, reason, unsent }),
  });
  return { clock, s, sent, drops };
}

test('the byte budget: a 5 ms burst at once, then maxBytesPerSecond, whatever the number of downloads', () => {
  const { clock, s, sent } = setUp({ rate: 1_000_000 });
  const links = [new FakeLink(), new FakeLink(), new FakeLink()];
  links.forEach((l, k) => s.submit(download(`d${k}`, l, range(0, 400))));
  const total = (): number => [...sent.values()].reduce((a, b) => a + b, 0);
  // The bucket holds 5 ms (5,000 bytes): five 1,000-byte blocks go before the first refill.
  assert.equal(total(), 5 * BLOCK);
  clock.advance(100);
  // 100 ms later: the burst plus about 100 ms' worth (the last block may go into debt).
  const after100 = total();
  assert.ok(after100 >= 5 * BLOCK + 99_000 && after100 <= 5 * BLOCK + 100_000 + BLOCK, `sent ${after100}`);
  clock.advance(200);
  const after300 = total();
  assert.ok(Math.abs(after300 - after100 - 200_000) <= 2 * BLOCK, `sent ${after300 - after100} in 200 ms`);
  s.stop();
});

test('round-robin: downloads share the budget within one block of each other, and a later one joins in', () => {
  const { clock, s, sent } = setUp({ rate: 50_000 });
  const a = new FakeLink();
  const b = new FakeLink();
  const c = new FakeLink();
  s.submit(download('a', a, range(0, 300)));
  s.submit(download('b', b, range(0, 300)));
  // The first download took the initial burst alone; from then on they alternate.
  const lead = (sent.get('a') ?? 0) - (sent.get('b') ?? 0);
  for (let i = 0; i < 10; i++) {
    clock.advance(100);
    assert.ok(Math.abs((sent.get('a') ?? 0) - (sent.get('b') ?? 0) - lead) <= BLOCK, `a ${sent.get('a')} b ${sent.get('b')}`);
  }
  assert.ok((sent.get('b') ?? 0) >= 20 * BLOCK, 'b had its half of one second');
  const before = { a: sent.get('a')!, b: sent.get('b')! };
  s.submit(download('c', c, range(0, 300)));
  clock.advance(1200);
  const since = { a: sent.get('a')! - before.a, b: sent.get('b')! - before.b, c: sent.get('c') ?? 0 };
  // Three ways now: each about a third of 60,000 bytes.
  for (const v of Object.values(since)) assert.ok(v >= 18 * BLOCK && v <= 22 * BLOCK, JSON.stringify(since));
  // In index order, each once.
  assert.deepEqual(a.received.map((r) => r.index), range(0, a.received.length));
  s.stop();
});

test('backpressure: a device with maxBacklog unacknowledged messages, or a congested socket, waits; others go on', () => {
  const { clock, s, sent } = setUp({ rate: 1_000_000, maxBacklog: 4 });
  const slow = new FakeLink();
  slow.autoAck = false;
  const fast = new FakeLink();
  s.submit(download('slow', slow, range(0, 50)));
  s.submit(download('fast', fast, range(0, 50)));
  clock.advance(200);
  assert.equal(slow.received.length, 4, 'the slow device got its window and no more');
  assert.equal(fast.received.length, 50, 'the other device was not held back');
  // Acknowledgements open the window again (seen at the next poll).
  slow.unacked = 0;
  clock.advance(5);
  assert.equal(slow.received.length, 8);
  // A congested socket holds the device too, even with nothing unacknowledged.
  slow.unacked = 0;
  slow.socketCongested = true;
  clock.advance(100);
  assert.equal(slow.received.length, 8);
  slow.socketCongested = false;
  clock.advance(5);
  assert.equal(slow.received.length, 12);
  assert.equal(sent.get('fast'), 50 * BLOCK);
  s.stop();
});

test('one get per device: a new get replaces the pending one, whose unsent blocks are dropped', () => {
  const { clock, s, drops } = setUp({ rate: 10_000 });
  const l = new FakeLink();
  s.submit(download('d', l, range(0, 100), { topic: 'old' }));
  clock.advance(100);
  const oldCount = l.received.length;
  assert.ok(oldCount > 0 && oldCount < 100);
  s.submit(download('d', l, [90, 95, 99], { topic: 'new' }));
  assert.deepEqual(drops, [{ identity: 'd', reason: 'replaced', unsent: 100 - oldCount }]);
  clock.advance(1000);
  assert.equal(l.received.filter((r) => r.topic === 'old').length, oldCount, 'nothing more of the old get');
  assert.deepEqual(l.received.filter((r) => r.topic === 'new').map((r) => r.index), [90, 95, 99]);
  assert.equal(s.active, 0);
  // An empty get (a bitmap wanting nothing) cancels the pending one and sends nothing.
  s.submit(download('d', l, range(0, 100)));
  s.submit(download('d', l, []));
  assert.equal(s.active, 0);
  assert.equal(clock.armed, 0, 'no timer left with nothing to send');
});

test('a disconnected device: its pending blocks are dropped at the next turn; an unsubscribed one too', () => {
  const { clock, s, drops } = setUp({ rate: 10_000 });
  const gone = new FakeLink();
  const unsub = new FakeLink();
  s.submit(download('gone', gone, range(0, 100)));
  s.submit(download('unsub', unsub, range(0, 100)));
  clock.advance(100);
  const got = gone.received.length;
  gone.gone = true;
  unsub.subscribed = false;
  clock.advance(1000);
  assert.equal(gone.received.length, got);
  assert.deepEqual(drops.map((d) => `${d.identity}:${d.reason}`).sort(), ['gone:disconnected', 'unsub:unsubscribed']);
  assert.equal(s.active, 0);
});

test('reads that resolve later: one at a time per download, still in index order; a failed read ends that download only', async () => {
  // A budget whose 5 ms burst covers every block: the test clock never advances.
  const { s, drops } = setUp({ rate: 10_000_000 });
  const l = new FakeLink();
  let inFlight = 0;
  let maxInFlight = 0;
  const read = async (i: number): Promise<Buffer> => {
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    await new Promise<void>((r) => setImmediate(r));
    inFlight--;
    return block(i);
  };
  const done = new Promise<void>((resolve) => {
    const orig = l.send.bind(l);
    l.send = (topic, payload) => {
      const ok = orig(topic, payload);
      if (l.received.length === 20) resolve();
      return ok;
    };
  });
  s.submit(download('d', l, range(5, 20), { read }));
  const bad = new FakeLink();
  s.submit(download('bad', bad, range(0, 5), { read: () => Promise.reject(new Error('EIO')) }));
  await done;
  assert.deepEqual(l.received.map((r) => r.index), range(5, 20));
  assert.equal(maxInFlight, 1);
  assert.deepEqual(drops.map((d) => `${d.identity}:${d.reason}`), ['bad:read-failed']);
  assert.equal(bad.received.length, 0);
  s.stop();
});

test('stop drops everything and arms nothing; a submit after stop is ignored', () => {
  const { clock, s, drops } = setUp({ rate: 1000 });
  const l = new FakeLink();
  s.submit(download('d', l, range(0, 100)));
  s.stop();
  assert.deepEqual(drops.map((d) => d.reason), ['stopped']);
  s.submit(download('d', l, range(0, 100)));
  assert.equal(s.active, 0);
  const before = l.received.length;
  clock.advance(10_000);
  assert.equal(l.received.length, before);
});
