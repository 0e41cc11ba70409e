/**
 * The latency roles of a load-generating worker. Owns: publishing at a fixed rate with a
 * send timestamp in each payload, and collecting the end-to-end latency samples.
 * Must not: take samples outside the measured window.
 */
import { PacketType, encodedPayloadOffset, publishPayloadAt, type FrameVisitor } from './frames.js';
import { Counter, type LatencyPublisherRole, type LatencySummary } from './worker-api.js';
import type { Client } from './worker-client.js';
import { C, stopped } from './worker-context.js';

export class LatencySubscriber implements FrameVisitor {
  private readonly samples: Float64Array;
  private count = 0;
  private overflow = 0;
  private received = 0;
  private now = 0n;

  constructor(
    client: Client,
    capacity: number,
    private readonly v5: boolean,
  ) {
    this.samples = new Float64Array(capacity);
    client.attach(this);
  }

  onFrame(first: number, buf: Buffer, bodyStart: number): void {
    if (first >> 4 !== PacketType.Publish) return;
    this.received++;
    if (Atomics.load(C, Counter.Measuring) === 0) return;
    if (this.now === 0n) this.now = process.hrtime.bigint();
    const at = publishPayloadAt(buf, first, bodyStart, this.v5);
    const sentAt = buf.readBigUInt64LE(at);
    if (this.count < this.samples.length) this.samples[this.count++] = Number(this.now - sentAt) / 1000;
    else this.overflow++;
  }

  onChunkEnd(): void {
    this.now = 0n;
    if (this.received > 0) {
      Atomics.add(C, Counter.Received, this.received);
      this.received = 0;
    }
  }

  summary(): LatencySummary {
    const s = this.samples.slice(0, this.count).sort();
    const at = (q: number): number => (s.length === 0 ? 0 : s[Math.min(s.length - 1, Math.floor(q * s.length))]!);
    let sum = 0;
    for (const v of s) sum += v;
    return { count: s.length, p50: at(0.5), p90: at(0.9), p99: at(0.99), p999: at(0.999), max: s.length === 0 ? 0 : s[s.length - 1]!, mean: s.length === 0 ? 0 : sum / s.length, overflow: this.overflow };
  }
}

/** Sends `rate` messages per second, paced by elapsed time, each stamped at write time. */
export class LatencyPublisher implements FrameVisitor {
  private readonly payloadOffset: number;
  private startedAt = 0;
  private sent = 0;
  /** Messages skipped because the timer fell behind by more than a burst. */
  behind = 0;

  constructor(
    private readonly client: Client,
    private readonly role: LatencyPublisherRole,
  ) {
    this.payloadOffset = encodedPayloadOffset(role.publish, role.version === 5);
    client.attach(this);
  }

  start(): void {
    this.startedAt = performance.now();
    this.tick();
  }

  private tick = (): void => {
    if (stopped() || this.client.closed) return;
    const maxBurst = Math.max(1, Math.ceil(this.role.rate / 100));
    let due = Math.floor(((performance.now() - this.startedAt) * this.role.rate) / 1000) - this.sent;
    if (due > maxBurst) {
      this.behind += due - maxBurst;
      this.sent += due - maxBurst;
      due = maxBurst;
    }
    if (due > 0) {
      const len = this.role.publish.length;
      const out = Buffer.allocUnsafe(len * due);
      for (let i = 0; i < due; i++) {
        out.set(this.role.publish, i * len);
        out.writeBigUInt64LE(process.hrtime.bigint(), i * len + this.payloadOffset);
      }
      this.client.socket.write(out);
      this.sent += due;
      Atomics.add(C, Counter.Sent, due);
    }
    setTimeout(this.tick, 1);
  };

  onFrame(): void {}
  onChunkEnd(): void {}
}
