/**
 * Flow control of OTA block transfer (issue 14 item 4): the blocks of the active gets are
 * written round-robin, one block per download per turn, within one global byte budget (a
 * token bucket of `maxBytesPerSecond`), and to each device only while its connection is
 * not backpressured (its unacknowledged messages under `maxBacklog`, its socket buffer
 * under the high-water mark). A device has at most one active get: a new one replaces the
 * old, whose unsent blocks are dropped; so are a device's blocks once its connection is
 * gone. Owns: that order and pacing, and the timer that drives it. Must not: parse
 * requests, decide what a device may fetch (transfer-service.ts) or read files itself
 * (the download's `read` does).
 *
 * SECURITY: what many devices downloading at once may cost the broker is bounded: bytes a
 * second globally, and per device at most `maxBacklog` unacknowledged messages plus one
 * block being read; nothing is queued for a device beyond that, so a slow or vanished
 * device holds no memory, and ordinary traffic keeps its share of the sockets.
 */
import type { Clock, TimerHandle } from '../../core/clock.js';

/** The flow-control view of a requester (a subset of the broker's ServiceReply). */
export interface TransferLink {
  send(topic: string, payload: Buffer): boolean;
  backlog(): number;
  congested(): boolean;
  closed(): boolean;
}

/** One get: the blocks still to send, in order. */
export interface BlockDownload {
  /** The device (one active download each). */
  identity: string;
  link: TransferLink;
  /** Where each block goes (`…/data`). */
  topic: string;
  /** Block indices to send, in index order. */
  indices: readonly number[];
  /** The bytes a block's message costs the budget (header included). */
  sizeOf(index: number): number;
  /** The whole data message of a block (header and bytes). */
  read(index: number): Buffer | Promise<Buffer>;
}

/** Why a download ended before its last block. */
export type DropReason = 'replaced' | 'disconnected' | 'unsubscribed' | 'read-failed' | 'stopped';

export interface SchedulerOptions {
  maxBytesPerSecond: number;
  clock: Clock;
  /** A device is not sent more while this many of its messages are unacknowledged (default 16). */
  maxBacklog?: number;
  /** How often a backpressured device is looked at again, ms (default 5). */
  pollMs?: number;
  /** A block went out (its message's bytes). */
  onSent?(identity: string, bytes: number): void;
  /** A download ended early. */
  onDropped?(identity: string, reason: DropReason, unsent: number, err?: unknown): void;
}

interface Active {
  d: BlockDownload;
  /** Position in d.indices of the next block to start. */
  next: number;
  /** A block's read is pending (at most one per download). */
  reading: boolean;
  done: boolean;
}

export const DEFAULT_MAX_BACKLOG = 16;
const DEFAULT_POLL_MS = 5;

export class TransferScheduler {
  private readonly ring: Active[] = [];
  private readonly byIdentity = new Map<string, Active>();
  /** Where the next turn starts, so a budget cut mid-turn does not favour the first devices. */
  private cursor = 0;
  private tokens: number;
  private readonly capacity: number;
  private refilledAt: number;
  private timer: TimerHandle | null = null;
  private pumping = false;
  private pumpAgain = false;
  private stopped = false;
  private readonly maxBacklog: number;
  private readonly pollMs: number;

  constructor(private readonly opts: SchedulerOptions) {
    if (!(opts.maxBytesPerSecond > 0)) throw new RangeError('maxBytesPerSecond must be positive');
    // A 5 ms burst: each pump writes a few blocks and returns to the event loop, so the
    // other clients' packets are read and routed between them (with a 50 ms burst the bench
    // saw the loop busy for 50-130 ms at a time and telemetry wait behind it).
    this.capacity = Math.max(1, opts.maxBytesPerSecond / 200);
    this.tokens = this.capacity;
    this.refilledAt = opts.clock.now();
    this.maxBacklog = opts.maxBacklog ?? DEFAULT_MAX_BACKLOG;
    this.pollMs = opts.pollMs ?? DEFAULT_POLL_MS;
  }

  /** Downloads with blocks still to send. */
  get active(): number {
    return this.ring.length;
  }

  /** Starts `d`, replacing the device's pending download (its unsent blocks are dropped). */
  submit(d: BlockDownload): void {
    if (this.stopped) return;
    this.cancel(d.identity, 'replaced');
    if (d.indices.length === 0) return;
    const a: Active = { d, next: 0, reading: false, done: false };
    this.byIdentity.set(d.identity, a);
    this.ring.push(a);
    this.pump();
  }

  /** Drops the device's pending download; false when it had none. */
  cancel(identity: string, reason: DropReason = 'replaced'): boolean {
    const a = this.byIdentity.get(identity);
    if (a === undefined) return false;
    this.finish(a, reason);
    return true;
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = null;
    for (const a of [...this.ring]) this.finish(a, 'stopped');
  }

  /** Sends what the budget and the devices' connections allow now, then arms the timer for the rest. */
  pump(): void {
    if (this.stopped) return;
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    try {
      do {
        this.pumpAgain = false;
        this.turns();
      } while (this.pumpAgain && !this.stopped);
    } finally {
      this.pumping = false;
    }
    this.arm();
  }

  private refill(): void {
    const now = this.opts.clock.now();
    if (now > this.refilledAt) {
      this.tokens = Math.min(this.capacity, this.tokens + ((now - this.refilledAt) / 1000) * this.opts.maxBytesPerSecond);
      this.refilledAt = now;
    }
  }

  /** Round-robin turns, one block per ready download each, until the budget or every download is held. */
  private turns(): void {
    this.refill();
    for (;;) {
      let started = false;
      for (let n = this.ring.length; n > 0 && this.ring.length > 0; n--) {
        // A block may go into debt (the budget is positive before it): a block larger than the burst still goes.
        if (this.tokens <= 0) return;
        if (this.cursor >= this.ring.length) this.cursor = 0;
        const a = this.ring[this.cursor]!;
        this.cursor++;
        if (a.d.link.closed()) {
          this.finish(a, 'disconnected');
          continue;
        }
        if (a.reading || a.next >= a.d.indices.length) continue;
        if (a.d.link.backlog() >= this.maxBacklog || a.d.link.congested()) continue;
        const index = a.d.indices[a.next++]!;
        this.tokens -= a.d.sizeOf(index);
        this.start(a, index);
        started = true;
      }
      if (!started) return;
    }
  }

  private start(a: Active, index: number): void {
    let data: Buffer | Promise<Buffer>;
    try {
      data = a.d.read(index);
    } catch (err) {
      this.finish(a, 'read-failed', err);
      return;
    }
    if (Buffer.isBuffer(data)) {
      this.deliver(a, data);
      return;
    }
    a.reading = true;
    data.then(
      (buf) => {
        a.reading = false;
        if (a.done) return;
        this.deliver(a, buf);
        this.pump();
      },
      (err: unknown) => {
        a.reading = false;
        if (!a.done) this.finish(a, 'read-failed', err);
        this.pump();
      },
    );
  }

  private deliver(a: Active, data: Buffer): void {
    if (a.d.link.closed()) {
      this.finish(a, 'disconnected');
      return;
    }
    // No subscription of the device matches any more: nobody would read the rest.
    if (!a.d.link.send(a.d.topic, data)) {
      this.finish(a, 'unsubscribed');
      return;
    }
    this.opts.onSent?.(a.d.identity, data.length);
    if (a.next >= a.d.indices.length && !a.reading) this.finish(a, null);
  }

  /** Removes a download: complete (`reason` null) or dropped. */
  private finish(a: Active, reason: DropReason | null, err?: unknown): void {
    if (a.done) return;
    a.done = true;
    const i = this.ring.indexOf(a);
    if (i >= 0) {
      this.ring.splice(i, 1);
      if (i < this.cursor) this.cursor--;
    }
    if (this.byIdentity.get(a.d.identity) === a) this.byIdentity.delete(a.d.identity);
    // Nothing left to send: no timer keeps running for nothing.
    if (this.ring.length === 0 && this.timer !== null) {
      this.timer.cancel();
      this.timer = null;
    }
    if (reason !== null) this.opts.onDropped?.(a.d.identity, reason, a.d.indices.length - a.next + (a.reading ? 1 : 0), err);
  }

  private arm(): void {
    this.timer?.cancel();
    this.timer = null;
    if (this.stopped || this.ring.length === 0) return;
    // Every download waiting on a read: its completion pumps again.
    if (this.ring.every((a) => a.reading)) return;
    const wait = this.tokens <= 0 ? Math.max(1, Math.ceil((-this.tokens / this.opts.maxBytesPerSecond) * 1000) + 1) : this.pollMs;
    this.timer = this.opts.clock.setTimeout(() => {
      this.timer = null;
      this.pump();
    }, wait);
  }
}
