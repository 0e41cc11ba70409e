/**
 * Security state shared by every node of a cluster (issue 12): one JetStream KV bucket
 * (`bmq_state`, history 1) of small entries whose keys start with their kind (`crl.…`,
 * `ban.…`). Owns: the bucket, the watch that hands every node's changes to the kinds in
 * the bucket's order, the full re-read at start and after each NATS reconnect, this node's
 * writes (queued per key and retried until they land) and compare-and-set updates. Must
 * not: interpret an entry (each kind's handler, in server/, validates and applies it) or
 * decide whom to admit.
 *
 * SECURITY: fail closed. `start()` rejects when the bucket cannot be read in full, so a
 * node never runs as if nothing were revoked or banned; from a NATS disconnect until the
 * re-read after the reconnect has been applied, `ready` is false (the server refuses
 * CONNECTs meanwhile). The re-read is a new watch from the bucket's current values, not
 * the old watch carried on: a change made while this node was away is read again, and a
 * key that vanished is handed over as deleted. While this node has a write of a key in
 * flight, a re-read does not apply that key: the write lands after it, and its echo
 * (which the watch delivers) is the key's value.
 */
import { StorageType } from '@nats-io/jetstream';
import { Kvm, type KV, type KvWatchEntry } from '@nats-io/kv';
import type { QueuedIterator } from '@nats-io/transport-node';
import type { Logger } from '../core/logger.js';
import type { ClusterNatsConnection } from './nats-connection.js';
import { isConflict } from './session-registry.js';

/** The KV bucket of shared security state. */
export const STATE_BUCKET = 'bmq_state';
/** How long a (re-)read may take before it counts as failed. */
const READ_DEADLINE_MS = 10_000;
/** A write that failed while NATS is connected is tried again this much later. */
const RETRY_MS = 1000;

/** A read that a stop or a later read made moot; its watch was stopped. */
class OvertakenRead extends Error {
  constructor() {
    super('shared state stopped or read again meanwhile');
  }
}

/** One kind of entry (all keys `<prefix>.…`). */
export interface SharedKind {
  /**
   * A key of this kind changed: its new value, or null when it was deleted. Called in the
   * bucket's order; must validate the value (a throw is logged and the entry ignored).
   */
  apply(key: string, value: Uint8Array | null): void;
  /**
   * After the initial read, each re-read and each live change: act on what `apply` took
   * in. The read counts as applied (`ready`) only once the returned promise settles.
   */
  settled?(): void | Promise<void>;
}

export interface SharedStateOptions {
  conn: ClusterNatsConnection;
  replicas: number;
  logger: Logger;
  /** How long a (re-)read may take (default 10 s). */
  readDeadlineMs?: number;
}

export class SharedState {
  private readonly kinds = new Map<string, SharedKind>();
  /** The revision each key shows (also of a deletion), so an older value never replaces a newer one. */
  private readonly revisions = new Map<string, number>();
  /** This node's writes not yet sent, per key (null: delete); the last one per key wins. */
  private readonly queued = new Map<string, Uint8Array | null>();
  private readonly inFlight = new Set<string>();
  private watch: QueuedIterator<KvWatchEntry> | null = null;
  /** Bumped by every read(): a read overtaken by a later one (or by stop) drops its watch. */
  private generation = 0;
  private connected = true;
  private stopped = false;
  private retryTimer: NodeJS.Timeout | null = null;
  /** The next attempt of a failed re-read; cleared by stop() so none starts a watch after it. */
  private rereadTimer: NodeJS.Timeout | null = null;
  private readonly readyListeners: Array<() => void> = [];
  private readonly stopStatus: () => void;
  /** Whether the bucket's state has been read and applied since the last disconnect. */
  ready = false;
  /** Entries that failed validation (logged and ignored). */
  malformed = 0;

  private constructor(
    private readonly kv: KV,
    private readonly opts: SharedStateOptions,
  ) {
    this.stopStatus = opts.conn.onStatus((event) => {
      if (event.type === 'disconnect' || event.type === 'close') {
        this.connected = false;
        this.ready = false;
      } else if (event.type === 'reconnect') {
        this.connected = true;
        this.ready = false;
        this.flushAll();
        void this.reread();
      }
    });
  }

  /** Creates (or opens) the bucket; throws when JetStream refuses it. */
  static async open(opts: SharedStateOptions): Promise<SharedState> {
    const kv = await new Kvm(opts.conn.nc).create(STATE_BUCKET, { replicas: opts.replicas, history: 1, storage: StorageType.File });
    return new SharedState(kv, opts);
  }

  /** Hands the keys `<prefix>.…` to `kind`; before `start()`. */
  register(prefix: string, kind: SharedKind): void {
    if (!/^[a-z]+$/.test(prefix) || this.kinds.has(prefix)) throw new Error(`shared state kind "${prefix}" is invalid or taken`);
    this.kinds.set(prefix, kind);
  }

  /** `cb` runs each time a re-read after a reconnect has been applied (to send again what failed meanwhile). */
  onReady(cb: () => void): void {
    this.readyListeners.push(cb);
  }

  /** Reads the whole bucket into the kinds, then follows its changes. Rejects (fail closed) when it cannot. */
  async start(): Promise<void> {
    await this.read();
    this.ready = true;
  }

  /**
   * Sets (value) or deletes (null) `key` in the bucket: queued behind this node's write of
   * the same key in flight (the last one wins), retried until it lands. The caller has
   * applied the change itself already.
   */
  write(key: string, value: Uint8Array | null): void {
    if (this.stopped) return;
    this.queued.set(key, value);
    this.send(key);
  }

  /**
   * Reads `key` and writes what `next` makes of its current value (null: the key is absent
   * or deleted), only if nobody wrote it meanwhile, else reads again. `next` returning null
   * leaves the key as it is. Resolves whether it wrote; rejects when NATS does not answer.
   */
  async compareAndSet(key: string, next: (current: Uint8Array | null) => Uint8Array | null | Promise<Uint8Array | null>, attempts = 5): Promise<boolean> {
    for (let i = 0; i < attempts; i++) {
      const entry = await this.kv.get(key);
      const live = entry !== null && entry.operation === 'PUT';
      const value = await next(live ? entry.value : null);
      if (value === null) return false;
      try {
        if (entry === null) await this.kv.create(key, value);
        else await this.kv.update(key, value, entry.revision);
        return true;
      } catch (err) {
        if (!isConflict(err)) throw err;
      }
    }
    throw new Error(`${key} kept changing under ${attempts} compare-and-set attempts`);
  }

  /** Stops the watch and the retries; queued writes that did not land are dropped (logged). */
  stop(): void {
    this.stopped = true;
    this.ready = false;
    this.stopStatus();
    this.watch?.stop();
    this.watch = null;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    if (this.rereadTimer !== null) clearTimeout(this.rereadTimer);
    this.rereadTimer = null;
    if (this.queued.size > 0) this.opts.logger.warn({ keys: [...this.queued.keys()] }, 'shared security state: writes not sent to the cluster before the stop');
  }

  private send(key: string): void {
    if (this.inFlight.has(key) || !this.connected || this.stopped) return;
    const value = this.queued.get(key);
    if (value === undefined) return;
    this.queued.delete(key);
    this.inFlight.add(key);
    const done = value === null ? this.kv.delete(key) : this.kv.put(key, value);
    done.then(
      () => {
        this.inFlight.delete(key);
        this.send(key);
      },
      (err: unknown) => {
        this.inFlight.delete(key);
        // A newer write of the key waits already; else this one goes again.
        if (!this.queued.has(key)) this.queued.set(key, value);
        this.opts.logger.warn({ key, err: err instanceof Error ? err.message : String(err) }, 'shared security state: write failed; retrying');
        this.scheduleRetry();
      },
    );
  }

  private flushAll(): void {
    for (const key of [...this.queued.keys()]) this.send(key);
  }

  private scheduleRetry(): void {
    if (this.retryTimer !== null || this.stopped) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.flushAll();
    }, RETRY_MS);
    this.retryTimer.unref();
  }

  /** A re-read after a reconnect; retried while it fails and NATS stays connected. */
  private async reread(): Promise<void> {
    if (this.rereadTimer !== null) clearTimeout(this.rereadTimer);
    this.rereadTimer = null;
    try {
      await this.read();
      if (!this.connected || this.stopped) return;
      this.ready = true;
      this.opts.logger.info({}, 'shared security state re-read after the NATS reconnect');
      for (const cb of this.readyListeners) {
        try {
          cb();
        } catch (err) {
          this.opts.logger.error({ err: err instanceof Error ? err.message : String(err) }, 'shared security state: a ready listener threw');
        }
      }
    } catch (err) {
      // Stopped, disconnected, or a later re-read took over (it will say when it is done).
      if (this.stopped || !this.connected || err instanceof OvertakenRead) return;
      this.opts.logger.error({ err: err instanceof Error ? err.message : String(err) }, 'shared security state could not be re-read; CONNECTs stay refused; retrying');
      this.rereadTimer = setTimeout(() => {
        this.rereadTimer = null;
        void this.reread();
      }, RETRY_MS);
      this.rereadTimer.unref();
    }
  }

  /**
   * A new watch from every key's current value; resolves once those are applied (and the
   * kinds settled). Keys this node shows that the bucket no longer has are deleted.
   */
  private async read(): Promise<void> {
    this.watch?.stop();
    this.watch = null;
    const generation = ++this.generation;
    const deadline = this.opts.readDeadlineMs ?? READ_DEADLINE_MS;
    // Stopped: no new watch (the connection may be closing; see nats-connection.ts).
    if (this.stopped) throw new OvertakenRead();
    const status = await this.kv.status();
    if (this.stopped || generation !== this.generation) throw new OvertakenRead();
    const iter = await this.opts.conn.consumer(
      () => this.kv.watch({ key: '>' }),
      (w) => w.stop(),
    );
    // Stopped (or read again) while the watch was being made: this one must not outlive
    // that, or its heartbeat timer keeps resetting a consumer on a closed connection.
    if (this.stopped || generation !== this.generation) {
      iter.stop();
      throw new OvertakenRead();
    }
    this.watch = iter;
    let seen: Set<string> | null = new Set<string>();
    let initialDone!: () => void;
    const initial = new Promise<void>((resolve) => (initialDone = resolve));
    // Every key's current value comes first; the client marks the last of them as an update.
    let snapshot = status.values > 0;
    if (!snapshot) initialDone();
    void (async () => {
      for await (const entry of iter) {
        if (this.watch !== iter) break;
        if (snapshot) {
          seen?.add(entry.key);
          this.take(entry, true);
          if (entry.delta === 0 || entry.isUpdate) {
            snapshot = false;
            initialDone();
          }
          continue;
        }
        // Changed since the snapshot: present (or deleted) at a newer revision, not vanished.
        seen?.add(entry.key);
        this.take(entry, false);
        await this.settle();
      }
    })().catch((err: unknown) => this.opts.logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'shared security state watch ended'));
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        initial,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`the ${STATE_BUCKET} bucket was not read within ${deadline} ms`)), deadline);
        }),
      ]);
    } catch (err) {
      iter.stop();
      if (this.watch === iter) this.watch = null;
      throw err;
    } finally {
      clearTimeout(timer);
    }
    // A key that was removed for good (no deletion marker left) while this node was away.
    const present = seen;
    seen = null;
    for (const [key, revision] of [...this.revisions]) {
      if (present.has(key) || this.blocked(key) || revision === -1) continue;
      this.revisions.set(key, -1);
      this.deliver(key, null);
    }
    await this.settle();
  }

  private blocked(key: string): boolean {
    return this.queued.has(key) || this.inFlight.has(key);
  }

  /** Applies one entry if it is newer than what the key shows (a re-read skips keys this node is writing). */
  private take(entry: KvWatchEntry, snapshot: boolean): void {
    if (snapshot && this.blocked(entry.key)) return;
    const shown = this.revisions.get(entry.key) ?? 0;
    if (entry.revision <= shown) return;
    this.revisions.set(entry.key, entry.revision);
    this.deliver(entry.key, entry.operation === 'PUT' ? entry.value : null);
  }

  private deliver(key: string, value: Uint8Array | null): void {
    const dot = key.indexOf('.');
    const kind = dot > 0 ? this.kinds.get(key.slice(0, dot)) : undefined;
    if (kind === undefined) {
      this.malformed++;
      this.opts.logger.warn({ key }, 'shared security state: an entry of no known kind; ignored');
      return;
    }
    try {
      kind.apply(key, value);
    } catch (err) {
      this.malformed++;
      this.opts.logger.error({ key, err: err instanceof Error ? err.message : String(err) }, 'shared security state: an entry could not be applied; ignored');
    }
  }

  private async settle(): Promise<void> {
    for (const kind of this.kinds.values()) {
      try {
        await kind.settled?.();
      } catch (err) {
        this.opts.logger.error({ err: err instanceof Error ? err.message : String(err) }, 'shared security state: applying changes failed');
      }
    }
  }
}
