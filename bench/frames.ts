/**
 * Frame scanning for the load generator. Owns: splitting a received byte stream into
 * MQTT frames without decoding them, and the few byte offsets the generator needs
 * (packet type, QoS, packet id, payload start). Must not: allocate per frame or depend
 * on a codec library (this runs on the hot path of every worker).
 */

export const PacketType = {
  Connect: 1,
  Connack: 2,
  Publish: 3,
  Puback: 4,
  Subscribe: 8,
  Suback: 9,
  Pingreq: 12,
  Pingresp: 13,
  Disconnect: 14,
} as const;

/** Receives each complete frame as a view: first header byte, the buffer, and the body's bounds. */
export interface FrameVisitor {
  onFrame(first: number, buf: Buffer, bodyStart: number, end: number): void;
  /** Called once after every chunk, when batched work (acks, counters) should be flushed. */
  onChunkEnd(): void;
}

/** Bytes borrowed from the next chunk to complete a frame split across chunks (frames here are small). */
const STITCH_BYTES = 1024;

/**
 * Scans chunks as they arrive and calls the visitor once per frame. A frame split across
 * chunks is stitched by copying only its own bytes, so a 64 KB read is never copied whole.
 */
export class FrameScanner {
  private rest: Buffer | null = null;

  constructor(public visitor: FrameVisitor) {}

  push(chunk: Buffer): void {
    let start = 0;
    const rest = this.rest;
    if (rest !== null) {
      this.rest = null;
      const head = chunk.length > STITCH_BYTES ? chunk.subarray(0, STITCH_BYTES) : chunk;
      const joined = Buffer.concat([rest, head]);
      const off = this.scan(joined, 0, rest.length);
      if (off < rest.length) {
        // The frame that started in `rest` is still incomplete.
        if (head === chunk) {
          this.rest = Buffer.from(joined.subarray(off));
        } else {
          const all = Buffer.concat([rest.subarray(off), chunk]);
          const end = this.scan(all, 0, all.length);
          if (end < all.length) this.rest = Buffer.from(all.subarray(end));
        }
        this.visitor.onChunkEnd();
        return;
      }
      start = off - rest.length;
    }
    const end = this.scan(chunk, start, chunk.length);
    if (end < chunk.length) this.rest = Buffer.from(chunk.subarray(end));
    this.visitor.onChunkEnd();
  }

  /** Visits every complete frame that starts before `limit`; returns where the first incomplete frame starts. */
  private scan(buf: Buffer, offset: number, limit: number): number {
    const len = buf.length;
    const visitor = this.visitor;
    let off = offset;
    while (off < limit) {
      let pos = off + 1;
      let remaining = 0;
      let multiplier = 1;
      let complete = false;
      for (let i = 0; i < 4; i++) {
        if (pos >= len) break;
        const byte = buf[pos++]!;
        remaining += (byte & 0x7f) * multiplier;
        if ((byte & 0x80) === 0) {
          complete = true;
          break;
        }
        multiplier *= 128;
      }
      if (!complete) {
        if (pos - off >= 5) throw new Error('malformed remaining length from broker');
        return off;
      }
      const end = pos + remaining;
      if (end > len) return off;
      visitor.onFrame(buf[off]!, buf, pos, end);
      off = end;
    }
    return off;
  }
}

/** Offset of the packet id of a QoS>0 PUBLISH whose body starts at `bodyStart`. */
export function publishPacketIdAt(buf: Buffer, bodyStart: number): number {
  return bodyStart + 2 + buf.readUInt16BE(bodyStart);
}

/** Offset of the payload of a PUBLISH (skips topic, packet id, and v5 properties). */
export function publishPayloadAt(buf: Buffer, first: number, bodyStart: number, v5: boolean): number {
  let pos = bodyStart + 2 + buf.readUInt16BE(bodyStart);
  if (((first >> 1) & 3) !== 0) pos += 2;
  if (v5) {
    let propLen = 0;
    let multiplier = 1;
    for (let i = 0; i < 4; i++) {
      const byte = buf[pos++]!;
      propLen += (byte & 0x7f) * multiplier;
      if ((byte & 0x80) === 0) break;
      multiplier *= 128;
    }
    pos += propLen;
  }
  return pos;
}

/** Offset of the payload inside a pre-encoded PUBLISH (for patching timestamps). */
export function encodedPayloadOffset(encoded: Uint8Array, v5: boolean): number {
  const buf = Buffer.from(encoded.buffer, encoded.byteOffset, encoded.byteLength);
  let pos = 1;
  while ((buf[pos]! & 0x80) !== 0) pos++;
  pos++;
  return publishPayloadAt(buf, buf[0]!, pos, v5);
}

/** Offset of the packet id inside a pre-encoded QoS>0 PUBLISH (for patching ids). */
export function encodedPacketIdOffset(encoded: Uint8Array): number {
  const buf = Buffer.from(encoded.buffer, encoded.byteOffset, encoded.byteLength);
  let pos = 1;
  while ((buf[pos]! & 0x80) !== 0) pos++;
  pos++;
  return publishPacketIdAt(buf, pos);
}
