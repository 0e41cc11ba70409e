/**
 * The JSON-lines audit export: one ECS document per line, appended to a file that is
 * rotated by size (`path` → `path.1` → … → `path.<keep>`, the oldest deleted). Owns: the
 * file, its buffering, rotation and error handling. Must not: block or throw into the
 * broker: lines are queued and written by one async writer per event-loop turn; a write
 * error is logged once per kind and the writer keeps trying with backoff.
 *
 * SECURITY: audit lines name users, client ids and addresses: the file is created 0600
 * (and set to 0600 when it already existed), a missing directory 0700.
 */
import { mkdir, open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from '../../core/logger.js';

export interface JsonlSinkOptions {
  path: string;
  maxBytes: number;
  keep: number;
  /** Lines held while the file cannot be written; more are dropped and counted. */
  maxQueuedLines?: number;
}

const DEFAULT_MAX_QUEUED = 10_000;
const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 30_000;

export class JsonlSink {
  private readonly maxQueued: number;
  private queue: Buffer[] = [];
  private handle: FileHandle | null = null;
  private size = 0;
  private writing: Promise<void> | null = null;
  private scheduled = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private retryMs = RETRY_MIN_MS;
  private closed = false;
  /** Error codes already logged in the current outage (logged once each). */
  private readonly failing = new Set<string>();
  private dropped = 0;
  private failures = 0;

  constructor(
    private readonly opts: JsonlSinkOptions,
    private readonly logger: Logger,
  ) {
    this.maxQueued = opts.maxQueuedLines ?? DEFAULT_MAX_QUEUED;
  }

  /** Queues one line (a JSON document without its newline). */
  write(json: string): void {
    if (this.closed) return;
    if (this.queue.length >= this.maxQueued) {
      // Bounded: while the disk refuses, memory must not grow with the audit rate.
      if (this.dropped++ === 0) this.logger.error({ path: this.opts.path, queued: this.queue.length }, 'audit jsonl: queue full, dropping records until the file is writable again');
      return;
    }
    this.queue.push(Buffer.from(`${json}\n`, 'utf8'));
    this.schedule();
  }

  /** Lines dropped because the queue was full (for tests and metrics). */
  get droppedCount(): number {
    return this.dropped;
  }

  private schedule(): void {
    if (this.scheduled || this.writing !== null || this.retryTimer !== null) return;
    this.scheduled = true;
    // One write per event-loop turn for everything queued in it.
    setImmediate(() => {
      this.scheduled = false;
      this.kick();
    });
  }

  private kick(): void {
    if (this.writing !== null || this.queue.length === 0) return;
    this.writing = this.drain()
      .then(
        () => this.recovered(),
        (err: unknown) => this.failed(err),
      )
      .finally(() => {
        this.writing = null;
        if (this.queue.length > 0 && this.retryTimer === null && !this.closed) this.schedule();
      });
  }

  /** Writes queued lines until the queue is empty, rotating before a line would overflow the file. */
  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const handle = await this.ensureOpen();
      // Take as many whole lines as fit under maxBytes (at least one: a line longer than
      // maxBytes gets a file of its own rather than being lost).
      let bytes = 0;
      let n = 0;
      while (n < this.queue.length) {
        const len = this.queue[n]!.length;
        if (this.size + bytes + len > this.opts.maxBytes && (this.size > 0 || n > 0)) break;
        bytes += len;
        n++;
      }
      if (n === 0) {
        await this.rotate();
        continue;
      }
      const chunk = n === 1 ? this.queue[0]! : Buffer.concat(this.queue.slice(0, n), bytes);
      let off = 0;
      try {
        while (off < chunk.length) {
          const { bytesWritten } = await handle.write(chunk, off, chunk.length - off);
          off += bytesWritten;
        }
      } finally {
        // What reached the file leaves the queue even when a later part failed, so a retry
        // does not write it twice: whole lines written are removed, a partial line is kept
        // as its unwritten rest.
        this.size += off;
        this.consume(off);
      }
    }
  }

  /** Removes `bytes` written bytes from the head of the queue. */
  private consume(bytes: number): void {
    let left = bytes;
    let i = 0;
    while (left > 0 && i < this.queue.length) {
      const head = this.queue[i]!;
      if (head.length <= left) {
        left -= head.length;
        i++;
      } else {
        this.queue[i] = head.subarray(left);
        left = 0;
      }
    }
    if (i > 0) this.queue = this.queue.slice(i);
  }

  private async ensureOpen(): Promise<FileHandle> {
    if (this.handle !== null) return this.handle;
    await mkdir(dirname(this.opts.path), { recursive: true, mode: 0o700 });
    const handle = await open(this.opts.path, 'a', 0o600);
    try {
      await handle.chmod(0o600);
      this.size = (await handle.stat()).size;
    } catch (err) {
      await handle.close().catch(() => {});
      throw err;
    }
    this.handle = handle;
    return handle;
  }

  /** path.(keep-1) → path.keep, …, path → path.1; the old path.keep is replaced (deleted). */
  private async rotate(): Promise<void> {
    const handle = this.handle;
    this.handle = null;
    if (handle !== null) await handle.close();
    const p = this.opts.path;
    await unlink(`${p}.${this.opts.keep}`).catch(ignoreMissing);
    for (let i = this.opts.keep - 1; i >= 1; i--) await rename(`${p}.${i}`, `${p}.${i + 1}`).catch(ignoreMissing);
    await rename(p, `${p}.1`).catch(ignoreMissing);
    this.size = 0;
  }

  private recovered(): void {
    this.retryMs = RETRY_MIN_MS;
    if (this.failing.size === 0 && this.dropped === 0) return;
    this.logger.info({ path: this.opts.path, failedWrites: this.failures, dropped: this.dropped }, 'audit jsonl: writing again');
    this.failing.clear();
    this.failures = 0;
    this.dropped = 0;
  }

  private failed(err: unknown): void {
    this.failures++;
    const code = errorCode(err);
    if (!this.failing.has(code)) {
      this.failing.add(code);
      this.logger.error({ path: this.opts.path, code, err: err instanceof Error ? err.message : String(err) }, 'audit jsonl: write failed, retrying');
    }
    // Reopen on the next try: the handle may be the thing that broke (file removed, disk swapped).
    const handle = this.handle;
    this.handle = null;
    handle?.close().catch(() => {});
    if (this.closed) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.kick();
    }, this.retryMs);
    this.retryTimer.unref();
    this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
  }

  /** Writes what is queued, then closes the file; resolves within `timeoutMs` (about) whatever the file does. */
  async close(timeoutMs = 2000): Promise<void> {
    if (this.retryTimer !== null) {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
    }
    const deadline = Date.now() + timeoutMs;
    // One last attempt even after failures; stop at the deadline.
    while (this.queue.length > 0 || this.writing !== null) {
      if (this.writing === null) this.kick();
      const current = this.writing;
      if (current === null) break;
      const left = deadline - Date.now();
      if (left <= 0 || !(await settlesWithin(current, left))) break;
      if (this.retryTimer !== null) {
        clearTimeout(this.retryTimer);
        this.retryTimer = null;
        break;
      }
    }
    this.closed = true;
    if (this.queue.length > 0) this.logger.warn({ path: this.opts.path, lost: this.queue.length }, 'audit jsonl: closed with records unwritten');
    this.queue = [];
    const handle = this.handle;
    this.handle = null;
    // A write stuck in the kernel (a FIFO whose reader stopped reading, a hung network file
    // system) holds FileHandle.close() until it returns: the shutdown waits for that only
    // until the deadline, and the close finishes in the background if it ever can.
    if (handle !== null) await settlesWithin(handle.close().catch(() => {}), Math.max(0, deadline - Date.now()));
  }
}

function ignoreMissing(err: unknown): void {
  if (errorCode(err) !== 'ENOENT') throw err;
}

function errorCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : 'EUNKNOWN';
}

/** True when `p` settles within `ms`. */
async function settlesWithin(p: Promise<void>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([p.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
