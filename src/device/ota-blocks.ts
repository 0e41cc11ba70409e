/**
 * The pure half of the device's block download (docs/OTA.md "Block transfer"): the
 * `…/data` block header, the have-bitmap, planning the next `get` window, and deciding
 * whether a received block is one the device asked for. Owns: those rules and the wire
 * names of the transfer topics. Must not: do I/O, talk MQTT, or keep timers
 * (ota-download.ts does).
 *
 * SECURITY: every block is checked against the image being downloaded (its SHA-256 in the
 * header), the block size of the request and an index the device asked for; anything else
 * is refused as data, never written. The whole image is checked against the signed
 * manifest afterwards, so a block the checks let through can still not be installed.
 */

/** The only block format version this reads. */
export const BLOCK_FORMAT_VERSION = 0x01;
/** Version byte, 32-byte digest, uint32 index, uint32 block size. */
export const BLOCK_HEADER_BYTES = 41;
export const MIN_BLOCK_SIZE = 256;
export const MAX_BLOCK_SIZE = 131_072;

/** A block size the broker accepts: a multiple of 256 from 256 to 131072. */
export function isValidBlockSize(n: number): boolean {
  return Number.isSafeInteger(n) && n >= MIN_BLOCK_SIZE && n <= MAX_BLOCK_SIZE && n % MIN_BLOCK_SIZE === 0;
}

export function blockCountOf(size: number, blockSize: number): number {
  return Math.ceil(size / blockSize);
}

/** The bytes of block `index` of an image of `size` bytes (the last block is shorter). */
export function blockLengthOf(index: number, size: number, blockSize: number): number {
  return Math.max(0, Math.min(blockSize, size - index * blockSize));
}

export function filesPrefix(identity: string, digest: string): string {
  return `$bastion/ota/${identity}/files/${digest}/`;
}

/** What the agent subscribes to for every image of this device. */
export function filesFilter(identity: string): string {
  return `$bastion/ota/${identity}/files/+/+`;
}

/** `{digest, kind}` of a transfer topic of this device, or null. */
export function transferTopicOf(identity: string, topic: string): { digest: string; kind: string } | null {
  const prefix = `$bastion/ota/${identity}/files/`;
  if (!topic.startsWith(prefix)) return null;
  const rest = topic.slice(prefix.length).split('/');
  if (rest.length !== 2) return null;
  return { digest: rest[0]!, kind: rest[1]! };
}

export interface DataBlock {
  /** The image's SHA-256, lower-case hex. */
  digest: string;
  index: number;
  blockSize: number;
  data: Buffer;
}

/** A `…/data` payload, or the reason it is not one. */
export function parseBlock(payload: Buffer): { ok: true; block: DataBlock } | { ok: false; message: string } {
  if (payload.length < BLOCK_HEADER_BYTES) return { ok: false, message: `a data block is at least ${BLOCK_HEADER_BYTES} bytes, got ${payload.length}` };
  if (payload[0] !== BLOCK_FORMAT_VERSION) return { ok: false, message: `block format version ${payload[0]!} is not ${BLOCK_FORMAT_VERSION}` };
  return {
    ok: true,
    block: {
      digest: payload.subarray(1, 33).toString('hex'),
      index: payload.readUInt32BE(33),
      blockSize: payload.readUInt32BE(37),
      data: payload.subarray(BLOCK_HEADER_BYTES),
    },
  };
}

/** The blocks a device has, one bit each (bit i = byte[i >> 3] >> (i & 7), as on the wire). */
export class BlockBitmap {
  readonly bytes: Buffer;
  private have = 0;

  constructor(
    readonly blockCount: number,
    bytes?: Buffer,
  ) {
    if (!Number.isSafeInteger(blockCount) || blockCount < 0) throw new RangeError('blockCount must be a whole number');
    const len = Math.ceil(blockCount / 8);
    this.bytes = Buffer.alloc(len);
    if (bytes !== undefined) {
      if (bytes.length !== len) throw new RangeError(`a bitmap of ${blockCount} blocks is ${len} bytes, not ${bytes.length}`);
      bytes.copy(this.bytes);
      // Bits past the last block mean nothing: cleared so counts and equality are exact.
      const spare = len * 8 - blockCount;
      if (spare > 0) this.bytes[len - 1]! &= 0xff >> spare;
      for (let i = 0; i < blockCount; i++) if (this.has(i)) this.have++;
    }
  }

  get count(): number {
    return this.have;
  }

  get complete(): boolean {
    return this.have === this.blockCount;
  }

  has(i: number): boolean {
    return i >= 0 && i < this.blockCount && ((this.bytes[i >> 3]! >> (i & 7)) & 1) === 1;
  }

  /** Sets bit i; false when it was already set (a duplicate) or out of range. */
  set(i: number): boolean {
    if (i < 0 || i >= this.blockCount || !Number.isInteger(i) || this.has(i)) return false;
    this.bytes[i >> 3]! |= 1 << (i & 7);
    this.have++;
    return true;
  }

  /** The first block not had at or after `from` (wrapping once), or -1 when complete. */
  firstMissing(from = 0): number {
    if (this.complete) return -1;
    for (let k = 0; k < this.blockCount; k++) {
      const i = (from + k) % this.blockCount;
      if (!this.has(i)) return i;
    }
    return -1;
  }

  missingIndices(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.blockCount; i++) if (!this.has(i)) out.push(i);
    return out;
  }
}

/** One `get` request: the range and, when not every block of it is wanted, the bitmap. */
export interface BlockWindow {
  firstBlock: number;
  blockCount: number;
  /** base64 of the wanted-bitmap, absent when every block of the range is wanted. */
  bitmap?: string;
  /** The indices wanted, in order. */
  wanted: number[];
}

/**
 * The next window: from the first missing block (at or after `from`), at most
 * `maxBlocks` blocks, ending at the last missing one inside that span. Null when complete.
 */
export function planWindow(have: BlockBitmap, maxBlocks: number, from = 0): BlockWindow | null {
  const first = have.firstMissing(from);
  if (first < 0) return null;
  const end = Math.min(have.blockCount, first + Math.max(1, Math.floor(maxBlocks)));
  const wanted: number[] = [];
  for (let i = first; i < end; i++) if (!have.has(i)) wanted.push(i);
  const last = wanted[wanted.length - 1]!;
  const blockCount = last - first + 1;
  const window: BlockWindow = { firstBlock: first, blockCount, wanted };
  if (wanted.length === blockCount) return window;
  const bits = Buffer.alloc(Math.ceil(blockCount / 8));
  for (const i of wanted) bits[(i - first) >> 3]! |= 1 << ((i - first) & 7);
  return { ...window, bitmap: bits.toString('base64') };
}

/** Why a received block is not written. */
export type BlockRefusal = 'ForeignImage' | 'WrongBlockSize' | 'UnexpectedBlock' | 'BadBlockLength' | 'MalformedBlock';

export interface ExpectedBlocks {
  digest: string;
  size: number;
  blockSize: number;
  /** Indices asked for and not received yet. */
  asked: ReadonlySet<number>;
  have: BlockBitmap;
}

/**
 * Whether `block` is one to write: `ok`, `duplicate` (had already: ignored quietly, QoS 1
 * may deliver twice), or a refusal with its reason.
 */
export function checkBlock(block: DataBlock, e: ExpectedBlocks): { ok: true } | { ok: false; duplicate: true } | { ok: false; duplicate: false; reason: BlockRefusal; message: string } {
  const refuse = (reason: BlockRefusal, message: string): { ok: false; duplicate: false; reason: BlockRefusal; message: string } => ({ ok: false, duplicate: false, reason, message });
  if (block.digest !== e.digest) return refuse('ForeignImage', `a block of image ${block.digest.slice(0, 16)}…, not of ${e.digest.slice(0, 16)}… being downloaded`);
  if (block.blockSize !== e.blockSize) return refuse('WrongBlockSize', `block size ${block.blockSize}, the request said ${e.blockSize}`);
  if (block.index >= e.have.blockCount) return refuse('UnexpectedBlock', `block ${block.index} is past the last block ${e.have.blockCount - 1}`);
  if (e.have.has(block.index)) return { ok: false, duplicate: true };
  if (!e.asked.has(block.index)) return refuse('UnexpectedBlock', `block ${block.index} was not asked for`);
  const want = blockLengthOf(block.index, e.size, e.blockSize);
  if (block.data.length !== want) return refuse('BadBlockLength', `block ${block.index} has ${block.data.length} bytes, expected ${want}`);
  return { ok: true };
}
