/**
 * The device's outgoing messages until they are done: queued while offline, sent in
 * publish order once connected, and (QoS 1) kept until the broker's PUBACK, so a message
 * in flight when the connection drops is sent again after the reconnect, in its place.
 * Owns: the order, the bound and what happens at the bound. Must not: do I/O (device.ts
 * sends), or time anything.
 *
 * Limits before memory: at most `limit` messages are held (queued and in flight together);
 * beyond that a new message is refused (`reject`, the default) or the oldest one not yet
 * sent is dropped to make room (`drop-oldest`).
 */
import { DeviceError } from './errors.js';

export type OverflowPolicy = 'reject' | 'drop-oldest';

export interface OfflineQueueOptions {
  /** Messages held at most (queued plus in flight), default 1000. */
  limit?: number;
  overflow?: OverflowPolicy;
}

export const DEFAULT_QUEUE_LIMIT = 1000;

/**
 * Messages in publish order. A message is either waiting (not sent on this connection) or
 * in flight (sent, not yet done). `T` is the caller's message object (compared by identity).
 */
export class OfflineQueue<T extends object> {
  readonly limit: number;
  readonly overflow: OverflowPolicy;
  /** Insertion order is publish order; the value says whether it is in flight. */
  private readonly items = new Map<T, boolean>();
  private inFlightCount = 0;

  constructor(options: OfflineQueueOptions = {}) {
    const limit = options.limit ?? DEFAULT_QUEUE_LIMIT;
    if (!Number.isInteger(limit) || limit < 1) throw new DeviceError('ERR_DEVICE_INVALID_INPUT', `the offline queue limit must be a positive integer, not ${String(limit)}`);
    this.limit = limit;
    this.overflow = options.overflow ?? 'reject';
  }

  /** Messages held (waiting and in flight). */
  get size(): number {
    return this.items.size;
  }

  get inFlight(): number {
    return this.inFlightCount;
  }

  get waiting(): number {
    return this.items.size - this.inFlightCount;
  }

  has(item: T): boolean {
    return this.items.has(item);
  }

  /**
   * Appends a message. At the bound: `reject` throws ERR_DEVICE_QUEUE_FULL; `drop-oldest`
   * removes the oldest waiting message and returns it (so its sender can be told), or
   * throws when every held message is in flight.
   */
  add(item: T): T | undefined {
    let dropped: T | undefined;
    if (this.items.size >= this.limit) {
      if (this.overflow === 'drop-oldest') {
        for (const [held, inFlight] of this.items) {
          if (!inFlight) {
            dropped = held;
            break;
          }
        }
      }
      if (dropped === undefined) throw new DeviceError('ERR_DEVICE_QUEUE_FULL', `the offline queue holds its limit of ${this.limit} messages`);
      this.items.delete(dropped);
    }
    this.items.set(item, false);
    return dropped;
  }

  /** Up to `max` waiting messages, oldest first, now marked in flight. */
  take(max: number): T[] {
    const out: T[] = [];
    if (max <= 0) return out;
    for (const [item, inFlight] of this.items) {
      if (inFlight) continue;
      // Setting an existing key keeps its place in the order.
      this.items.set(item, true);
      this.inFlightCount++;
      out.push(item);
      if (out.length >= max) break;
    }
    return out;
  }

  /** The message is done (acknowledged, or failed for good): it leaves the queue. */
  done(item: T): boolean {
    const inFlight = this.items.get(item);
    if (inFlight === undefined) return false;
    if (inFlight) this.inFlightCount--;
    this.items.delete(item);
    return true;
  }

  /** The connection is gone: every in-flight message waits again, in its original place. */
  requeueInFlight(): void {
    for (const [item, inFlight] of this.items) if (inFlight) this.items.set(item, false);
    this.inFlightCount = 0;
  }

  /** Empties the queue and returns what it held, in order. */
  clear(): T[] {
    const all = [...this.items.keys()];
    this.items.clear();
    this.inFlightCount = 0;
    return all;
  }
}
