/**
 * The end-to-end window shared by a worker's publishers. Owns: bounding the deliveries in
 * flight between publishers and subscribers, and presuming stalled ones dropped.
 * Must not: touch sockets.
 */
import { Counter } from './worker-api.js';
import { C } from './worker-context.js';

/** How long the end-to-end window waits without any delivery before presuming the rest dropped. */
const STALL_MS = 200;

/**
 * Keeps (sent × fanout − received − forgiven) under a bound shared by all publishers, so
 * the broker is never asked to buffer more than it has to. If deliveries stop for
 * STALL_MS while the window is full, the missing ones are presumed dropped (counted in
 * Counter.Forgiven) and publishing resumes; if they arrive later, the count is taken back.
 */
export class EndToEndWindow {
  private stallSince = 0;
  private stallReceived = -1;

  constructor(
    private readonly fanout: number,
    private readonly limit: number,
  ) {}

  private gap(): number {
    return Atomics.load(C, Counter.Sent) * this.fanout - Atomics.load(C, Counter.Received) - Atomics.load(C, Counter.Forgiven);
  }

  open(): boolean {
    const gap = this.gap();
    if (gap < 0) {
      // Deliveries presumed dropped arrived after all (a broker pause, not a drop): take them back.
      const forgiven = Atomics.load(C, Counter.Forgiven);
      Atomics.compareExchange(C, Counter.Forgiven, forgiven, Math.max(0, forgiven + gap));
    }
    if (gap <= this.limit) {
      this.stallSince = 0;
      return true;
    }
    const now = performance.now();
    const received = Atomics.load(C, Counter.Received);
    if (this.stallSince === 0 || received !== this.stallReceived) {
      this.stallSince = now;
      this.stallReceived = received;
      Atomics.add(C, Counter.GateWaits, 1);
      return false;
    }
    if (now - this.stallSince < STALL_MS) return false;
    const forgiven = Atomics.load(C, Counter.Forgiven);
    const target = Atomics.load(C, Counter.Sent) * this.fanout - received;
    if (target > forgiven) Atomics.compareExchange(C, Counter.Forgiven, forgiven, target);
    this.stallSince = 0;
    return true;
  }
}
