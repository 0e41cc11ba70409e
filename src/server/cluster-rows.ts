/**
 * One SQLite file's rows mirrored as entries of the cluster's shared state bucket, both
 * ways (issue 14 item 6; the provisioning replica's pattern made generic for OTA's files).
 * Owns: entries in (joined into the file), rows out (published as the join with the
 * bucket's entry), the `PRAGMA data_version` poll that finds other processes' writes (the
 * CLI, the campaign engine's connection), and the compare-and-set that decides a change
 * once in the cluster. Must not: interpret a row (the RowKind does: decode, key, join) or
 * talk to NATS except through SharedState.
 *
 * The replica writes the file through its own connection on purpose: SQLite's data_version
 * then moves for every other connection to the file, so the OTA side's tick (which already
 * pushes notify-next when the file changed, JobsMqttService.storeChanged) and the campaign
 * side's tick see another node's changes as they see the CLI's.
 *
 * SECURITY: fail closed. An entry that fails validation is logged and ignored; a
 * compare-and-set that cannot reach NATS rejects (the caller refuses the request), it is
 * never decided on this node's file alone.
 */
import type { SharedKind, SharedState } from '../cluster/shared-state.js';
import type { Logger } from '../core/logger.js';

/** How often the file is checked for other processes' writes. */
const POLL_MS = 250;
/** Rows held until their parent row arrives (an execution before its job), at most. */
const MAX_WAITING = 100_000;
/** An incremental poll also reads rows stamped this long before its previous look (a writer's clock read before its commit waited on a lock). */
const SLACK_MS = 10_000;
/** Whatever the stamps say, every row is compared this often (a safety net; also after rows of our own). */
const FULL_SCAN_MS = 10 * 60_000;
/** A publication that failed is tried again this much later. */
const RETRY_MS = 1000;
/** Publications in flight at once: a CLI command that queued 10 000 devices is sent in a steady stream, not one burst. */
const MAX_PUBLISHING = 32;

/** What a replica needs to know of one file's rows. */
export interface RowKind<R> {
  readonly prefix: string;
  /** What the logs call these rows. */
  readonly what: string;
  decode(key: string, bytes: Uint8Array): R | { why: string };
  keyOf(r: R): string;
  text(r: R): string;
  join(a: R, b: R): R;
  /** This file's version of the record `like` is a version of. */
  read(like: R): R | null;
  /** Writes a row; false when it cannot be written yet (its parent row is missing). */
  put(r: R): boolean;
  all(): R[];
  /** The rows whose own time says they changed at or after `since`; absent: every poll reads all rows. */
  changedSince?(since: number): R[];
  dataVersion(): number;
  /** After a row from the cluster was written: consequences in this file (true: it wrote some). */
  afterPut?(r: R): boolean;
}

function refused(x: unknown): x is { why: string } {
  return typeof x === 'object' && x !== null && 'why' in x && typeof (x as { why: unknown }).why === 'string' && Object.keys(x).length === 1;
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class RowReplica<R> implements SharedKind {
  /** The file's rows as last published or written here, by key. */
  private known = new Map<string, string>();
  /** Rows from the cluster whose parent has not arrived yet. */
  private readonly waiting = new Map<string, R>();
  private seenVersion = -1;
  /** This replica wrote consequences of its own (afterPut): the next poll compares every row. */
  private rescan = false;
  /** A publication failed: the poll compares every row again from this time on (0: none). */
  private retryAfter = 0;
  /** Publications fail (logged once until one succeeds). */
  private failing = false;
  /** Rows whose publication failed, sent again at the retry. */
  private readonly failed = new Map<string, R>();
  /** When the poll last read the file, and last read all of it (0: never). */
  private lastLook = 0;
  private lastFull = 0;
  private timer: NodeJS.Timeout | null = null;
  private state: SharedState | null = null;
  /** Rows to publish by key (a row of the record: its key may be a hash), and how many publications are in flight. */
  private readonly toPublish = new Map<string, R>();
  private publishing = 0;
  /** Whether the bucket was read and the poll runs (compare-and-set needs it). */
  attached = false;

  constructor(
    readonly kind: RowKind<R>,
    private readonly logger: Logger,
  ) {}

  register(state: SharedState): void {
    this.state = state;
    state.register(this.kind.prefix, this);
  }

  /** After the bucket was read: publishes what only this file holds (or holds newer), then follows the file. */
  attach(): void {
    this.attached = true;
    this.poll();
    this.timer = setInterval(() => this.poll(), POLL_MS);
    this.timer.unref();
  }

  stop(): void {
    this.attached = false;
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  // --- SharedKind: entries other nodes wrote ---

  apply(key: string, value: Uint8Array | null): void {
    // Rows are never deleted (a job, an execution, a campaign stays as its history).
    if (value === null) return;
    const incoming = this.kind.decode(key, value);
    if (refused(incoming)) {
      this.logger.error({ key, why: incoming.why }, `${this.kind.what}: an entry from the cluster is malformed; ignored`);
      return;
    }
    this.take(key, incoming);
  }

  settled(): void {
    if (this.waiting.size === 0) return;
    for (const [key, r] of [...this.waiting]) {
      this.waiting.delete(key);
      this.take(key, r);
    }
  }

  // --- this node's changes ---

  /**
   * A change decided once in the cluster: `change` makes the new row from the current one
   * (the join of the bucket's entry and this file's row), or null when it may not be made.
   * The new row when this node's compare-and-set wrote it (and the file has it), else null
   * (the file then has the bucket's version). Rejects when NATS does not answer.
   */
  async update(like: R, change: (current: R) => R | null): Promise<R | null> {
    const state = this.state;
    if (state === null || !this.attached) throw new Error(`${this.kind.what}: the cluster replica is not attached`);
    const key = this.kind.keyOf(like);
    const box: { out: R | null; seen: R | null } = { out: null, seen: null };
    const wrote = await state.compareAndSet(key, (current) => {
      box.out = null;
      const mine = this.kind.read(like);
      const decoded = current === null ? null : this.kind.decode(key, current);
      const theirs = decoded === null || refused(decoded) ? null : decoded;
      const base = theirs !== null ? (mine !== null ? this.kind.join(theirs, mine) : theirs) : mine;
      box.seen = base;
      if (base === null) return null;
      box.out = change(base);
      return box.out === null ? null : Buffer.from(this.kind.text(box.out));
    });
    const result = wrote ? box.out : box.seen;
    if (result !== null) this.writeJoined(key, result);
    return wrote ? result : null;
  }

  /** A row this node decided (a retry after a won update): into the file joined, then to the bucket. */
  put(r: R): void {
    const key = this.kind.keyOf(r);
    const merged = this.writeJoined(key, r);
    if (merged !== null) this.publish(key, merged);
  }

  /** Writes the join of `r` and this file's row; remembers it as known. */
  private writeJoined(key: string, r: R): R | null {
    const here = this.kind.read(r);
    const merged = here === null ? r : this.kind.join(r, here);
    const text = this.kind.text(merged);
    if (here === null || this.kind.text(here) !== text) {
      if (!this.kind.put(merged)) return null;
    }
    this.known.set(key, text);
    return merged;
  }

  private take(key: string, incoming: R): void {
    const merged = this.writeJoined(key, incoming);
    if (merged === null) {
      if (this.waiting.size < MAX_WAITING) this.waiting.set(key, incoming);
      else this.logger.error({ key }, `${this.kind.what}: too many entries wait for their parent; this one is dropped until the next re-read`);
      return;
    }
    if (this.kind.afterPut?.(merged) === true) this.rescan = true;
    // This file had moved past the entry (a change not yet sent, say): the bucket gets the join.
    if (this.kind.text(merged) !== this.kind.text(incoming)) this.publish(key, merged);
  }

  /** Queues `key` to be published (a key queued twice is published once, from the file as it is then). */
  private publish(key: string, like: R): void {
    this.toPublish.set(key, like);
    this.pump();
  }

  private pump(): void {
    while (this.publishing < MAX_PUBLISHING && this.toPublish.size > 0) {
      const [key, like] = this.toPublish.entries().next().value!;
      this.toPublish.delete(key);
      this.publishing++;
      void this.publishNow(key, like).finally(() => {
        this.publishing--;
        this.pump();
      });
    }
  }

  /** Writes the join of this file's row and the bucket's entry of `key`, unless the bucket has it already. */
  private async publishNow(key: string, like: R): Promise<void> {
    const state = this.state;
    if (state === null) return;
    await state
      .compareAndSet(key, (current) => {
        const mine = this.kind.read(like);
        if (mine === null) return null;
        const decoded = current === null ? null : this.kind.decode(key, current);
        const theirs = decoded === null || refused(decoded) ? null : decoded;
        const joined = theirs !== null ? this.kind.join(theirs, mine) : mine;
        const text = this.kind.text(joined);
        return theirs !== null && this.kind.text(theirs) === text ? null : Buffer.from(text);
      })
      .then(() => {
        if (this.failing) this.logger.info({}, `${this.kind.what}: rows are shared with the cluster again`);
        this.failing = false;
      })
      .catch((err: unknown) => {
        // Sent again by the poll a second later (and then every second while NATS is away).
        this.failed.set(key, like);
        if (!this.failing) this.logger.error({ key, err: errText(err) }, `${this.kind.what}: a row was not shared with the cluster; retrying every second`);
        this.failing = true;
        this.retryAfter = Date.now() + RETRY_MS;
      });
  }

  /** Other processes' writes to the file (the CLI, the OTA side's and the campaign engine's connections). */
  private poll(): void {
    try {
      const version = this.kind.dataVersion();
      const at = Date.now();
      const retry = this.retryAfter !== 0 && at >= this.retryAfter;
      if (version === this.seenVersion && !this.rescan && !retry) return;
      if (retry) {
        this.retryAfter = 0;
        const again = [...this.failed];
        this.failed.clear();
        for (const [key, like] of again) this.publish(key, like);
      }
      if (version === this.seenVersion && !this.rescan) return;
      const full = this.rescan || this.kind.changedSince === undefined || this.lastFull === 0 || at - this.lastFull >= FULL_SCAN_MS;
      this.seenVersion = version;
      this.rescan = false;
      // Rows are never deleted, so an incremental look only adds to what is known.
      const rows = full ? this.kind.all() : this.kind.changedSince!(this.lastLook - SLACK_MS);
      const now = full ? new Map<string, string>() : this.known;
      for (const r of rows) {
        const key = this.kind.keyOf(r);
        const text = this.kind.text(r);
        if (this.known.get(key) !== text) this.publish(key, r);
        now.set(key, text);
      }
      this.known = now;
      this.lastLook = at;
      if (full) this.lastFull = at;
    } catch (err) {
      this.logger.error({ err: errText(err) }, `${this.kind.what}: cannot read this data directory's file; retrying`);
    }
  }
}
