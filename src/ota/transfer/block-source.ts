/**
 * Reads blocks of stored firmware images for OTA block transfer (issue 14 item 4): the
 * content-addressed store `<dataDir>/ota/images/<sha256>` that `bastion ota release
 * create` fills (releases.ts), and the data message each block travels in. Owns: the open
 * file handles (a bounded few, shared by every download of an image, closed when idle
 * and at stop) and the block message format. Must not: decide who may read an image
 * (transfer-service.ts asks the fence first) or pace anything (scheduler.ts).
 *
 * SECURITY: the file name is a digest the topic parser checked (64 hex digits), so no
 * path can be smuggled in; a stored file whose size is not the release's is refused
 * (the store is content-addressed: its name is its SHA-256, checked when it was stored).
 */
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { IMAGES_DIR, OtaError, otaDirOf } from '../ota-files.js';
import { isImageDigest } from './topics.js';

/** The block message format version (byte 0). */
export const BLOCK_FORMAT_VERSION = 0x01;
/** Version, digest (32), block index (4), block size (4). */
export const BLOCK_HEADER_BYTES = 41;

/** The data message of block `index` of `digest` (hex), requested with `blockSize`. */
export function blockMessage(digest: string, index: number, blockSize: number, bytes: Buffer): Buffer {
  const out = Buffer.allocUnsafe(BLOCK_HEADER_BYTES + bytes.length);
  out[0] = BLOCK_FORMAT_VERSION;
  out.write(digest, 1, 32, 'hex');
  out.writeUInt32BE(index, 33);
  out.writeUInt32BE(blockSize, 37);
  bytes.copy(out, BLOCK_HEADER_BYTES);
  return out;
}

/** The header fields of a data message (tests and devices check every block with them). */
export function parseBlockMessage(msg: Buffer): { version: number; digest: string; index: number; blockSize: number; bytes: Buffer } | null {
  if (msg.length < BLOCK_HEADER_BYTES) return null;
  return { version: msg[0]!, digest: msg.subarray(1, 33).toString('hex'), index: msg.readUInt32BE(33), blockSize: msg.readUInt32BE(37), bytes: msg.subarray(BLOCK_HEADER_BYTES) };
}

/** How many blocks of `blockSize` an image of `size` bytes has. */
export function blockCountOf(size: number, blockSize: number): number {
  return Math.ceil(size / blockSize);
}

interface OpenImage {
  handle: Promise<FileHandle>;
  /** Reads under way. */
  users: number;
  lastUsed: number;
}

export interface BlockSourceOptions {
  /** Idle handles kept open at most (default 16). */
  maxIdle?: number;
  /** A handle unused this long is closed (default 30 s). */
  idleMs?: number;
  now?: () => number;
}

export class BlockSource {
  private readonly dir: string;
  private readonly images = new Map<string, OpenImage>();
  private readonly maxIdle: number;
  private readonly idleMs: number;
  private readonly now: () => number;
  private sweeper: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(dataDir: string, opts: BlockSourceOptions = {}) {
    this.dir = join(otaDirOf(dataDir), IMAGES_DIR);
    this.maxIdle = opts.maxIdle ?? 16;
    this.idleMs = opts.idleMs ?? 30_000;
    this.now = opts.now ?? Date.now;
  }

  /** Open handles (tests: bounded, and none after close). */
  get openCount(): number {
    return this.images.size;
  }

  /** `length` bytes at `offset` of the stored image `digest`, whose size must be `size`. */
  async read(digest: string, size: number, offset: number, length: number): Promise<Buffer> {
    if (this.closed) throw new OtaError('the block source is closed');
    if (!isImageDigest(digest)) throw new OtaError(`not an image digest: ${digest}`);
    if (offset < 0 || length < 0 || offset + length > size) throw new OtaError(`block ${offset}+${length} is outside the image (${size} bytes)`);
    const img = this.acquire(digest, size);
    try {
      const h = await img.handle;
      const buf = Buffer.allocUnsafe(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await h.read(buf, done, length - done, offset + done);
        if (bytesRead === 0) throw new OtaError(`the stored image ${digest} ended early`);
        done += bytesRead;
      }
      return buf;
    } finally {
      img.users--;
      img.lastUsed = this.now();
      this.trim();
    }
  }

  /** Closes every handle; later reads fail. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.sweeper !== null) clearInterval(this.sweeper);
    this.sweeper = null;
    const all = [...this.images.values()];
    this.images.clear();
    await Promise.all(all.map((i) => closeQuietly(i.handle)));
  }

  private acquire(digest: string, size: number): OpenImage {
    let img = this.images.get(digest);
    if (img === undefined) {
      img = { handle: this.openChecked(digest, size), users: 0, lastUsed: this.now() };
      this.images.set(digest, img);
      // A handle that failed to open is forgotten, so the next read tries again.
      const opened = img;
      img.handle.catch(() => {
        if (this.images.get(digest) === opened) this.images.delete(digest);
      });
      this.startSweeper();
    }
    img.users++;
    return img;
  }

  private async openChecked(digest: string, size: number): Promise<FileHandle> {
    const path = join(this.dir, digest);
    const h = await open(path, 'r');
    try {
      const st = await h.stat();
      if (!st.isFile() || st.size !== size) throw new OtaError(`the stored image ${path} is ${st.size} bytes, not the release's ${size}`);
      return h;
    } catch (err) {
      await h.close().catch(() => undefined);
      throw err;
    }
  }

  /** Closes idle handles beyond the bound and those idle too long. */
  private trim(): void {
    const now = this.now();
    const idle = [...this.images.entries()].filter(([, i]) => i.users === 0).sort((x, y) => x[1].lastUsed - y[1].lastUsed);
    let extra = idle.length - this.maxIdle;
    for (const [digest, i] of idle) {
      if (extra > 0 || now - i.lastUsed >= this.idleMs) {
        this.images.delete(digest);
        void closeQuietly(i.handle);
        extra--;
      }
    }
    if (this.images.size === 0 && this.sweeper !== null) {
      clearInterval(this.sweeper);
      this.sweeper = null;
    }
  }

  private startSweeper(): void {
    if (this.sweeper !== null || this.closed) return;
    this.sweeper = setInterval(() => this.trim(), Math.max(1000, Math.floor(this.idleMs / 2)));
    this.sweeper.unref();
  }
}

async function closeQuietly(handle: Promise<FileHandle>): Promise<void> {
  try {
    await (await handle).close();
  } catch {
    // Never opened, or already closed: nothing to release.
  }
}
