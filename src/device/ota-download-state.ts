/**
 * The files of one image download on the device: `<stateDir>/<digest>.part` (the image,
 * each block written at its offset) and `<stateDir>/<digest>.bitmap` (the blocks had, with
 * the image size and block size they are counted in). Owns: opening, resuming, writing,
 * persisting and discarding them, and hashing the finished part. Must not: talk MQTT,
 * decide which blocks to ask for (ota-blocks.ts), or judge the image (the UpdateVerifier).
 *
 * SECURITY / durability:
 * - The part is flushed to disk (datasync) before a bitmap naming its blocks is written, and
 *   the bitmap is replaced as one unit (temporary file, fsync, rename), so after a power cut
 *   the bitmap never claims a block the part does not hold. A block had but not yet in the
 *   persisted bitmap is only fetched again.
 * - A bitmap that does not match the image (digest, size) or cannot be read starts the
 *   download over: a wrong resume costs a download, never a bad install, because the
 *   whole image is checked against the signed manifest before install.
 * - Files are 0600 in a 0700 directory: an image being installed is not for other users.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { BlockBitmap, blockCountOf, isValidBlockSize } from './ota-blocks.js';

interface BitmapFile {
  digest: string;
  size: number;
  blockSize: number;
  /** base64 of the have-bitmap. */
  have: string;
}

export function partPathOf(stateDir: string, digest: string): string {
  return join(stateDir, `${digest}.part`);
}

export function bitmapPathOf(stateDir: string, digest: string): string {
  return join(stateDir, `${digest}.bitmap`);
}

/** Writes `data` to `path` as one unit: a temporary file, fsync, rename, then the directory. */
export async function writeAtomic(dir: string, path: string, data: string | Buffer): Promise<void> {
  const temp = join(dir, `.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const h = await open(temp, 'wx', 0o600);
    try {
      await h.writeFile(data);
      await h.sync();
    } finally {
      await h.close();
    }
    await rename(temp, path);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
  try {
    const d = await open(dir, 'r');
    await d.sync().finally(() => d.close());
  } catch {
    // Directory fsync is not supported everywhere.
  }
}

/** The persisted have-bitmap of `digest`, or null when there is none or it does not fit this image. */
export async function readPersistedBitmap(stateDir: string, digest: string, size: number): Promise<{ blockSize: number; have: BlockBitmap } | null> {
  let value: unknown;
  try {
    value = JSON.parse(await readFile(bitmapPathOf(stateDir, digest), 'utf8'));
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null) return null;
  const o = value as Partial<BitmapFile>;
  if (o.digest !== digest || o.size !== size || typeof o.blockSize !== 'number' || !isValidBlockSize(o.blockSize) || typeof o.have !== 'string') return null;
  try {
    return { blockSize: o.blockSize, have: new BlockBitmap(blockCountOf(size, o.blockSize), Buffer.from(o.have, 'base64')) };
  } catch {
    return null;
  }
}

export class DownloadFiles {
  private dirty = 0;

  private constructor(
    readonly stateDir: string,
    readonly digest: string,
    readonly size: number,
    readonly blockSize: number,
    readonly have: BlockBitmap,
    private handle: FileHandle | null,
    /** Blocks taken from a persisted bitmap when this was opened (0: a fresh start). */
    readonly resumedBlocks: number,
  ) {}

  get partPath(): string {
    return partPathOf(this.stateDir, this.digest);
  }

  /**
   * Resumes the persisted download of `digest` when its bitmap and part fit, else starts
   * one with `blockSize` (the persisted block size wins: the bitmap counts in it).
   */
  static async open(stateDir: string, digest: string, size: number, blockSize: number): Promise<DownloadFiles> {
    await mkdir(stateDir, { recursive: true, mode: 0o700 });
    const part = partPathOf(stateDir, digest);
    const persisted = await readPersistedBitmap(stateDir, digest, size);
    let partSize = -1;
    try {
      partSize = (await stat(part)).size;
    } catch {
      // No part yet.
    }
    if (persisted !== null && partSize === size) {
      const handle = await open(part, 'r+');
      return new DownloadFiles(stateDir, digest, size, persisted.blockSize, persisted.have, handle, persisted.have.count);
    }
    if (!isValidBlockSize(blockSize)) throw new RangeError(`block size ${blockSize} is not a multiple of 256 from 256 to 131072`);
    await rm(bitmapPathOf(stateDir, digest), { force: true });
    const handle = await open(part, 'w+', 0o600);
    // The part has the image's size from the start, so every block lands at its offset.
    await handle.truncate(size);
    const files = new DownloadFiles(stateDir, digest, size, blockSize, new BlockBitmap(blockCountOf(size, blockSize)), handle, 0);
    await files.persist();
    return files;
  }

  /** Writes a checked block at its offset and records it (in memory; `persist` makes it durable). */
  async writeBlock(index: number, data: Buffer): Promise<boolean> {
    if (this.handle === null) throw new Error('the download files are closed');
    if (this.have.has(index)) return false;
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.handle.write(data, done, data.length - done, index * this.blockSize + done);
      done += bytesWritten;
    }
    this.have.set(index);
    this.dirty++;
    return true;
  }

  /** Blocks written since the last persist. */
  get unpersisted(): number {
    return this.dirty;
  }

  /** The part's data on disk first, then the bitmap that names it. */
  async persist(): Promise<void> {
    if (this.handle !== null) await this.handle.datasync();
    const body: BitmapFile = { digest: this.digest, size: this.size, blockSize: this.blockSize, have: this.have.bytes.toString('base64') };
    await writeAtomic(this.stateDir, bitmapPathOf(this.stateDir, this.digest), `${JSON.stringify(body)}\n`);
    this.dirty = 0;
  }

  async close(): Promise<void> {
    const h = this.handle;
    this.handle = null;
    if (h !== null) await h.close();
  }

  /** Persists what was had (best effort) and closes: a later open resumes from there. */
  async suspend(): Promise<void> {
    try {
      if (this.handle !== null && this.dirty > 0) await this.persist();
    } finally {
      await this.close();
    }
  }

  /** Removes the part and the bitmap (a refused or installed image). */
  async discard(): Promise<void> {
    await this.close();
    await discardDownload(this.stateDir, this.digest);
  }

  /** SHA-256 (hex) and size of the part as it is on disk. */
  async hash(): Promise<{ digest: string; size: number }> {
    return hashFile(this.partPath);
  }
}

export async function discardDownload(stateDir: string, digest: string): Promise<void> {
  await rm(partPathOf(stateDir, digest), { force: true });
  await rm(bitmapPathOf(stateDir, digest), { force: true });
}

/** Removes the part, bitmap and finished image files of every image but `keep`. */
export async function discardOtherDownloads(stateDir: string, keep: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(stateDir);
  } catch {
    return;
  }
  for (const name of names) {
    const m = /^([0-9a-f]{64})\.(part|bitmap|img)$/.exec(name);
    if (m !== null && m[1] !== keep) await rm(join(stateDir, name), { force: true });
  }
}

export async function hashFile(path: string): Promise<{ digest: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(path)) {
    const b = chunk as Buffer;
    size += b.length;
    h.update(b);
  }
  return { digest: h.digest('hex'), size };
}
