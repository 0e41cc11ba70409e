/**
 * One image download by the block protocol (docs/OTA.md "Block transfer"): ask for a
 * window of missing blocks (`…/get` with a bitmap), write each checked block at its
 * offset, persist the have-bitmap every few blocks, ask for the next window, and ask again
 * for what is missing after a timeout without data (bounded, then give up). Owns: that
 * loop, its timer and its retry count. Must not: describe the image or judge it (the agent
 * does, with the UpdateVerifier), or subscribe (the agent did).
 *
 * SECURITY: a block is written only after `checkBlock` (this image's digest, the request's
 * block size, an index asked for, the right length); anything else is reported and
 * dropped. Blocks are written one at a time, in arrival order, so the bitmap and the part
 * never disagree about a block being written.
 */
import type { BastionDevice } from './device.js';
import { checkBlock, filesPrefix, planWindow, type BlockRefusal, type DataBlock } from './ota-blocks.js';
import type { DownloadFiles } from './ota-download-state.js';
import { newClientToken, type JsonObject } from './protocol.js';

export const DEFAULT_BLOCK_TIMEOUT_MS = 10_000;
export const DEFAULT_MAX_RETRIES = 5;
/** The bitmap is persisted after this many new blocks (and when a window ends). */
export const PERSIST_EVERY_BLOCKS = 8;

/** `discard`: the files cannot be resumed (e.g. the broker refuses their block size). */
export type DownloadOutcome = { kind: 'complete' } | { kind: 'aborted' } | { kind: 'failed'; reason: 'DownloadTimeout' | 'TransferRejected' | 'StorageError'; message: string; discard?: boolean };

export interface BlockDownloadOptions {
  device: BastionDevice;
  identity: string;
  files: DownloadFiles;
  maxBlocksPerRequest: number;
  blockTimeoutMs?: number;
  maxRetries?: number;
  /** After each written block. */
  onBlock(have: number): void;
  /** A block refused (not written). */
  onRefused(reason: BlockRefusal, message: string): void;
  /** Each get, as it is sent (or, offline, would be). */
  onRequest?(window: { firstBlock: number; blockCount: number; wanted: readonly number[]; clientToken: string }): void;
}

export class BlockDownload {
  private readonly asked = new Set<number>();
  /** Accepted blocks whose write is under way (a redelivery of one is a duplicate, not a refusal). */
  private readonly pending = new Set<number>();
  private window: { firstBlock: number; wanted: number[] } | null = null;
  private timer: NodeJS.Timeout | undefined;
  private retries = 0;
  private chain: Promise<void> = Promise.resolve();
  private getToken = '';
  private finish: ((o: DownloadOutcome) => void) | null = null;
  private done = false;
  /** Blocks written by this run (not those resumed from disk). */
  written = 0;
  /** get requests sent by this run. */
  gets = 0;

  constructor(private readonly o: BlockDownloadOptions) {}

  private get files(): DownloadFiles {
    return this.o.files;
  }

  /** Runs until the image is complete, the download fails, or `abort()`. Never throws. */
  run(): Promise<DownloadOutcome> {
    return new Promise<DownloadOutcome>((resolve) => {
      this.finish = resolve;
      if (this.files.have.complete) {
        this.end({ kind: 'complete' });
        return;
      }
      this.requestNext(0);
    });
  }

  /** Stops asking; what was written is persisted by the caller (files.suspend). */
  abort(): void {
    this.end({ kind: 'aborted' });
  }

  /** A parsed `…/data` block of this device (any image: refused here when not this one's). */
  onData(block: DataBlock): void {
    if (this.done) return;
    if (this.pending.has(block.index) && block.digest === this.files.digest) return;
    const c = checkBlock(block, { digest: this.files.digest, size: this.files.size, blockSize: this.files.blockSize, asked: this.asked, have: this.files.have });
    if (!c.ok) {
      if (!c.duplicate) this.o.onRefused(c.reason, c.message);
      return;
    }
    // Taken now (a redelivery while the write is pending is then refused as not asked).
    this.asked.delete(block.index);
    this.pending.add(block.index);
    this.retries = 0;
    this.arm();
    this.chain = this.chain.then(() => this.accept(block)).finally(() => this.pending.delete(block.index));
  }

  /** A `…/rejected` answer carrying this download's get token. */
  onRejected(body: JsonObject): boolean {
    if (this.done || body.clientToken !== this.getToken) return false;
    const code = typeof body.errorCode === 'string' ? body.errorCode : 'Unknown';
    // Throttled or a passing failure: the timer asks again (counted as a retry).
    if (code === 'Throttled' || code === 'InternalError') return true;
    // InvalidRequest: the persisted block size (or its bitmap) does not suit this broker; a
    // resume would be refused the same way, so the next try starts over.
    this.end({ kind: 'failed', reason: 'TransferRejected', message: `get rejected: ${code} (${String(body.statusCode)}): ${typeof body.errorMessage === 'string' ? body.errorMessage : ''}`, discard: code === 'InvalidRequest' });
    return true;
  }

  private async accept(block: DataBlock): Promise<void> {
    if (this.done) return;
    try {
      await this.files.writeBlock(block.index, block.data);
      this.written++;
      if (this.files.unpersisted >= PERSIST_EVERY_BLOCKS) await this.files.persist();
    } catch (err) {
      this.end({ kind: 'failed', reason: 'StorageError', message: `cannot write block ${block.index}: ${(err as Error).message}` });
      return;
    }
    if (this.done) return;
    this.o.onBlock(this.files.have.count);
    if (this.files.have.complete) {
      clearTimeout(this.timer);
      try {
        await this.files.persist();
      } catch (err) {
        this.end({ kind: 'failed', reason: 'StorageError', message: `cannot persist the download: ${(err as Error).message}` });
        return;
      }
      this.end({ kind: 'complete' });
      return;
    }
    const w = this.window;
    if (w !== null && w.wanted.every((i) => this.files.have.has(i))) {
      // The window is done: persist, then the next one.
      try {
        if (this.files.unpersisted > 0) await this.files.persist();
      } catch (err) {
        this.end({ kind: 'failed', reason: 'StorageError', message: `cannot persist the download: ${(err as Error).message}` });
        return;
      }
      if (!this.done) this.requestNext(w.firstBlock);
    }
  }

  /** Asks for the next window of missing blocks from `from`. */
  private requestNext(from: number): void {
    const w = planWindow(this.files.have, this.o.maxBlocksPerRequest, from);
    if (w === null) return;
    this.window = { firstBlock: w.firstBlock, wanted: w.wanted };
    for (const i of w.wanted) this.asked.add(i);
    this.getToken = newClientToken();
    this.gets++;
    const body: JsonObject = { blockSize: this.files.blockSize, firstBlock: w.firstBlock, blockCount: w.blockCount, clientToken: this.getToken, ...(w.bitmap !== undefined ? { bitmap: w.bitmap } : {}) };
    this.arm();
    this.o.onRequest?.({ firstBlock: w.firstBlock, blockCount: w.blockCount, wanted: w.wanted, clientToken: this.getToken });
    // Only while connected: the agent aborts this download on a disconnect and resumes after.
    if (this.o.device.connected) {
      this.o.device.publish(`${filesPrefix(this.o.identity, this.files.digest)}get`, JSON.stringify(body), { qos: 1 }).catch(() => {
        // A refused or lost request: the timer asks again.
      });
    }
  }

  /** (Re)starts the wait for the next block. */
  private arm(): void {
    clearTimeout(this.timer);
    if (this.done) return;
    this.timer = setTimeout(() => this.timedOut(), this.o.blockTimeoutMs ?? DEFAULT_BLOCK_TIMEOUT_MS);
  }

  private timedOut(): void {
    if (this.done) return;
    this.retries++;
    const max = this.o.maxRetries ?? DEFAULT_MAX_RETRIES;
    if (this.retries > max) {
      this.end({ kind: 'failed', reason: 'DownloadTimeout', message: `no block for ${max + 1} waits of ${this.o.blockTimeoutMs ?? DEFAULT_BLOCK_TIMEOUT_MS} ms (${this.files.have.count}/${this.files.have.blockCount} blocks had)` });
      return;
    }
    // Wait for writes under way, then ask for what is still missing of this window onwards.
    const from = this.window?.firstBlock ?? 0;
    this.chain = this.chain.then(() => {
      if (!this.done) this.requestNext(from);
    });
  }

  private end(outcome: DownloadOutcome): void {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.timer);
    const finish = this.finish;
    this.finish = null;
    // Settles after the writes under way, so the caller may close the files at once.
    void this.chain.then(() => finish?.(outcome));
  }
}
