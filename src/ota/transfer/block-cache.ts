/**
 * The data messages of OTA block transfer kept in memory (issue 14): when a fleet
 * downloads one image, every device asks for the same blocks, so each block is read from
 * disk and framed once and its message is shared, not read, allocated and copied once per
 * device (the bench's profile: a quarter of the broker's busy time went into 32,000 reads
 * of the same 640 blocks for 50 devices). Owns: the least-recently-used bound in bytes and
 * sharing a read in progress. Must not: decide what a device may fetch or pace sending.
 *
 * SECURITY: bounded memory (`maxBytes`, 0 turns the cache off); a message is immutable once
 * made (the broker's encoder copies it into the PUBLISH, nothing writes into it), so
 * sharing it between devices shares no mutable state; a failed read is not cached.
 */

export class BlockCache {
  /** Insertion order is recency order: a hit moves the entry to the end. */
  private readonly entries = new Map<string, Buffer>();
  private readonly pending = new Map<string, Promise<Buffer>>();
  private bytes = 0;
  hits = 0;
  misses = 0;

  constructor(private readonly maxBytes: number) {}

  /** Bytes held. */
  get size(): number {
    return this.bytes;
  }

  /** The message of `key`: from memory when held (synchronously), else made by `load` once for all who ask meanwhile. */
  get(key: string, load: () => Promise<Buffer>): Buffer | Promise<Buffer> {
    const held = this.entries.get(key);
    if (held !== undefined) {
      this.hits++;
      this.entries.delete(key);
      this.entries.set(key, held);
      return held;
    }
    const inFlight = this.pending.get(key);
    if (inFlight !== undefined) {
      this.hits++;
      return inFlight;
    }
    this.misses++;
    const loading = load().then(
      (buf) => {
        this.pending.delete(key);
        this.put(key, buf);
        return buf;
      },
      (err: unknown) => {
        this.pending.delete(key);
        throw err;
      },
    );
    this.pending.set(key, loading);
    return loading;
  }

  clear(): void {
    this.entries.clear();
    this.bytes = 0;
  }

  private put(key: string, buf: Buffer): void {
    if (buf.length > this.maxBytes) return;
    this.entries.set(key, buf);
    this.bytes += buf.length;
    for (const [k, v] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(k);
      this.bytes -= v.length;
    }
  }
}
