/**
 * A throughput subscriber of a load-generating worker. Owns: counting the PUBLISHes it
 * receives and acknowledging QoS 1 ones in batches.
 * Must not: decode more of a PUBLISH than its packet id.
 */
import { PacketType, type FrameVisitor } from './frames.js';
import { Counter } from './worker-api.js';
import type { Client } from './worker-client.js';
import { C } from './worker-context.js';

/**
 * PUBACKs are written in batches: at once when this many are pending, else after at most
 * ACK_DELAY_MS. Both brokers allow 100 unacknowledged deliveries per client, so this
 * never stalls them, and it spares a loopback write (~5-8 µs of CPU the broker would
 * otherwise compete for) per message when the broker sends one message per write.
 */
const ACK_BATCH = 32;
const ACK_DELAY_MS = 1;

export class Subscriber implements FrameVisitor {
  private received = 0;
  private acks: number[] = [];
  private ackTimer: NodeJS.Timeout | null = null;

  constructor(private readonly client: Client) {
    client.attach(this);
  }

  private readonly flushAcks = (): void => {
    if (this.ackTimer !== null) {
      clearTimeout(this.ackTimer);
      this.ackTimer = null;
    }
    const n = this.acks.length;
    if (n === 0) return;
    const out = Buffer.allocUnsafe(4 * n);
    for (let i = 0; i < n; i++) {
      const id = this.acks[i]!;
      out[4 * i] = 0x40;
      out[4 * i + 1] = 2;
      out[4 * i + 2] = id >> 8;
      out[4 * i + 3] = id & 0xff;
    }
    this.acks.length = 0;
    if (!this.client.closed) this.client.socket.write(out);
  };

  onFrame(first: number, buf: Buffer, bodyStart: number): void {
    if (first >> 4 !== PacketType.Publish) return;
    this.received++;
    if ((first & 0x06) !== 0) this.acks.push(buf.readUInt16BE(bodyStart + 2 + buf.readUInt16BE(bodyStart)));
  }

  onChunkEnd(): void {
    if (this.received > 0) {
      Atomics.add(C, Counter.Received, this.received);
      this.received = 0;
    }
    const n = this.acks.length;
    if (n >= ACK_BATCH) this.flushAcks();
    else if (n > 0 && this.ackTimer === null) this.ackTimer = setTimeout(this.flushAcks, ACK_DELAY_MS);
  }
}
