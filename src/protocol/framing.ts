/**
 * Splits a byte stream into MQTT frames (fixed header + body) and enforces the maximum
 * packet size from the fixed header alone, before the body is buffered (ARCHITECTURE
 * idea 5). Owns: frame boundaries. Must not: decode packet contents.
 */
import { ProtocolViolation } from '../core/errors.js';
import { ReasonCode } from './reason-codes.js';

/**
 * Where frames go. An object, not two callbacks: a connection passes itself, so it holds
 * no closures for its framer (~150 bytes of every idle connection).
 */
export interface FrameTarget {
  /**
   * One complete frame: `bytes[start, end)`. No Buffer is made per frame: a view object
   * per PUBLISH was ~100 bytes of a routed message's garbage (issue 17).
   */
  frame(bytes: Buffer, start: number, end: number): void;
  /** Asked between frames: true keeps the rest for the next push (backpressure). */
  readingStopped(): boolean;
}

export class FrameReader {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Total size of the frame being assembled, or -1 while its header is incomplete. */
  private needed = -1;

  constructor(private readonly maxPacketSize: number) {}

  /** Bytes held for an incomplete frame (for memory accounting). */
  get bufferedBytes(): number {
    return this.pendingBytes;
  }

  /**
   * Feeds a chunk; calls `target.frame` for each complete frame, in order. Frames are ranges of
   * the chunk when possible (no copy). Throws ProtocolViolation on a malformed remaining
   * length or an oversized packet. When `target.readingStopped()` turns true after a frame, the rest is kept
   * for the next push (an empty chunk resumes it): backpressure that takes effect at once.
   */
  push(chunk: Buffer, target: FrameTarget): void {
    let buf = chunk;
    if (this.pendingBytes > 0) {
      this.pending.push(chunk);
      this.pendingBytes += chunk.length;
      if (this.needed !== -1 && this.pendingBytes < this.needed) return;
      buf = Buffer.concat(this.pending, this.pendingBytes);
      this.pending = [];
      this.pendingBytes = 0;
      this.needed = -1;
    }
    let offset = 0;
    const len = buf.length;
    while (offset < len) {
      const frameLen = this.frameLength(buf, offset);
      if (frameLen === -1 || offset + frameLen > len) {
        const rest = buf.subarray(offset);
        this.pending.push(rest);
        this.pendingBytes = rest.length;
        this.needed = frameLen;
        return;
      }
      target.frame(buf, offset, offset + frameLen);
      offset += frameLen;
      if (offset < len && target.readingStopped()) {
        const rest = buf.subarray(offset);
        this.pending.push(rest);
        this.pendingBytes = rest.length;
        this.needed = -1;
        return;
      }
    }
  }

  /** Whole frame length at `offset`, or -1 when the header is not complete yet. */
  private frameLength(buf: Buffer, offset: number): number {
    let multiplier = 1;
    let remaining = 0;
    let pos = offset + 1;
    for (let i = 0; i < 4; i++) {
      if (pos >= buf.length) return -1;
      const byte = buf[pos++]!;
      remaining += (byte & 0x7f) * multiplier;
      if ((byte & 0x80) === 0) {
        const total = pos - offset + remaining;
        if (total > this.maxPacketSize) {
          throw new ProtocolViolation(ReasonCode.PacketTooLarge, `packet of ${total} bytes exceeds the maximum of ${this.maxPacketSize}`);
        }
        return total;
      }
      multiplier *= 128;
    }
    throw new ProtocolViolation(ReasonCode.MalformedPacket, 'malformed remaining length');
  }
}
