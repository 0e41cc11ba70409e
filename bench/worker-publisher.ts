/**
 * A throughput publisher of a load-generating worker. Owns: writing pre-encoded PUBLISH
 * batches (QoS 0, or QoS 1 within a window of packet ids) and counting PUBACKs.
 * Must not: write past the end-to-end window or ignore socket backpressure.
 */
import { PacketType, encodedPacketIdOffset, type FrameVisitor } from './frames.js';
import { Counter, type PublisherRole } from './worker-api.js';
import type { Client } from './worker-client.js';
import { C, stopped } from './worker-context.js';
import type { EndToEndWindow } from './worker-e2e-window.js';

const YIELD_EVERY_WRITES = 8;
/** Publishers stop here whatever the clock says (the shared counters are 32-bit). */
const MAX_SENT = 1_000_000_000;

export class Publisher implements FrameVisitor {
  private blocked = false;
  private scheduled = false;
  private running = false;
  private readonly idOffset: number;
  private readonly inflight = new Uint8Array(65536);
  private inflightCount = 0;
  private nextId = 1;
  private acked = 0;
  private readonly qos0Batch: Buffer;

  constructor(
    private readonly client: Client,
    private readonly publish: Uint8Array,
    private readonly role: PublisherRole,
    private readonly gate: EndToEndWindow,
  ) {
    this.idOffset = role.qos === 1 ? encodedPacketIdOffset(publish) : 0;
    this.qos0Batch = Buffer.allocUnsafe(publish.length * role.batch);
    for (let i = 0; i < role.batch; i++) this.qos0Batch.set(publish, i * publish.length);
    client.socket.on('drain', () => {
      this.blocked = false;
      this.pump();
    });
    client.attach(this);
  }

  start(): void {
    this.running = true;
    this.pump();
  }

  private schedule(delayMs: number): void {
    if (this.scheduled) return;
    this.scheduled = true;
    const run = (): void => {
      this.scheduled = false;
      this.pump();
    };
    if (delayMs === 0) setImmediate(run);
    else setTimeout(run, delayMs);
  }

  pump(): void {
    if (!this.running || this.blocked || this.client.closed) return;
    const socket = this.client.socket;
    for (let writes = 0; writes < YIELD_EVERY_WRITES; writes++) {
      if (stopped() || Atomics.load(C, Counter.Sent) >= MAX_SENT) return;
      if (!this.gate.open()) {
        this.schedule(1);
        return;
      }
      let ok: boolean;
      if (this.role.qos === 0) {
        ok = socket.write(this.qos0Batch);
        Atomics.add(C, Counter.Sent, this.role.batch);
      } else {
        const room = Math.min(this.role.batch, this.role.window - this.inflightCount);
        if (room <= 0) return; // PUBACKs will call pump()
        ok = socket.write(this.qos1Batch(room));
        Atomics.add(C, Counter.Sent, room);
      }
      if (!ok) {
        this.blocked = true;
        return;
      }
    }
    this.schedule(0);
  }

  private qos1Batch(count: number): Buffer {
    const len = this.publish.length;
    const out = Buffer.allocUnsafe(len * count);
    for (let i = 0; i < count; i++) {
      let id = this.nextId;
      while (this.inflight[id] === 1) id = id === 65535 ? 1 : id + 1;
      this.nextId = id === 65535 ? 1 : id + 1;
      this.inflight[id] = 1;
      const at = i * len;
      out.set(this.publish, at);
      out[at + this.idOffset] = id >> 8;
      out[at + this.idOffset + 1] = id & 0xff;
    }
    this.inflightCount += count;
    return out;
  }

  onFrame(first: number, buf: Buffer, bodyStart: number): void {
    if (first >> 4 === PacketType.Puback) {
      const id = buf.readUInt16BE(bodyStart);
      if (this.inflight[id] === 1) {
        this.inflight[id] = 0;
        this.inflightCount--;
        this.acked++;
      }
    }
  }

  onChunkEnd(): void {
    if (this.acked > 0) {
      Atomics.add(C, Counter.Puback, this.acked);
      this.acked = 0;
      if (this.inflightCount <= this.role.window - this.role.batch) this.pump();
    }
  }
}
