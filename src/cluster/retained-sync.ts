/**
 * Retained messages shared by every node: a JetStream KV bucket (one key per topic,
 * history 1) that every node watches into its broker's in-memory index. Owns: writing a
 * retained update (set, or clear with an empty payload [MQTT-3.3.1-10]), applying the
 * bucket's changes in revision order, and the full re-read after a NATS reconnect. Must
 * not: decide who may read a retained message (the broker authorizes at delivery).
 *
 * Ordering: each topic remembers the revision it shows. The writer applies its own write as
 * soon as the bucket confirms it, and the watch applies every change whose revision is newer
 * than what the topic shows, so all nodes converge on the bucket's last write per topic.
 */
import type { KV, KvEntry } from '@nats-io/kv';
import type { QueuedIterator } from '@nats-io/transport-node';
import type { Logger } from '../core/logger.js';
import type { Message } from '../broker/message.js';
import type { RetainedMessages } from '../broker/retain/retained-messages.js';
import { decodeEnvelope, encodeEnvelope } from './message-envelope.js';
import type { ClusterNatsConnection } from './nats-connection.js';
import { isCodecRefusal, retainedKeyToTopic, topicToRetainedKey } from './subject-codec.js';

/** The KV bucket of retained messages. */
export const RETAINED_BUCKET = 'bmq_retained';

/** The update that clears `topic`'s retained message [MQTT-3.3.1-10]. */
function cleared(topic: string): Message {
  return { topic, payload: Buffer.alloc(0), qos: 0, retain: true, properties: undefined, expiresAt: 0, origin: '' };
}

export class RetainedSync {
  /** Revision each topic shows (also of a clear), so an older change never overwrites a newer one. */
  private readonly revisions = new Map<string, number>();
  private watch: QueuedIterator<KvEntry> | null = null;
  /** Bumped by every start(): a start overtaken by a later one (or by stop) drops its watch. */
  private generation = 0;
  private stopped = false;
  private nextId = 0;
  malformed = 0;

  constructor(
    private readonly kv: KV,
    private readonly index: RetainedMessages,
    private readonly nodeId: string,
    private readonly logger: Logger,
    /** The connection's consumer gate: no watch is made once it closes (nats-connection.ts). */
    private readonly conn: Pick<ClusterNatsConnection, 'consumer'>,
  ) {}

  /** Stores a retained update cluster-wide; settles when the bucket confirmed it. */
  async store(message: Message): Promise<void> {
    const key = topicToRetainedKey(message.topic);
    if (isCodecRefusal(key)) throw new Error(key.message);
    if (message.payload.length === 0) {
      // A clear is a delete marker, so watchers (and a re-read) see that it went away.
      await this.kv.delete(key);
      const entry = await this.kv.get(key);
      if (entry !== null) this.apply(message.topic, entry.revision, null);
      return;
    }
    const stored: Message = { ...message, retain: true };
    const revision = await this.kv.put(key, encodeEnvelope(`${this.nodeId}.r${(this.nextId++).toString(36)}`, stored));
    this.apply(message.topic, revision, stored);
  }

  /**
   * Starts (or restarts, after a reconnect) the watch: every key's last value, then every
   * change. Resolves once the initial values are in the index, so a node serves retained
   * messages only after it has them all.
   */
  async start(): Promise<void> {
    this.watch?.stop();
    this.watch = null;
    const generation = ++this.generation;
    // Stopped: no new watch (the connection may be closing).
    if (this.stopped) return;
    const status = await this.kv.status();
    if (this.stopped || generation !== this.generation) return;
    const seen = new Set<string>();
    let iter: QueuedIterator<KvEntry>;
    try {
      iter = await this.conn.consumer(
        () => this.kv.watch({ key: '>' }),
        (w) => w.stop(),
      );
    } catch (err) {
      // The node stopped while the watch was being made: nothing to read any more.
      if (this.stopped) return;
      throw err;
    }
    // Stopped (or started again) while the watch was being made: this one must not outlive
    // that, or its heartbeat timer keeps resetting a consumer on a closed connection.
    if (this.stopped || generation !== this.generation) {
      iter.stop();
      return;
    }
    this.watch = iter;
    let initialDone!: () => void;
    const initial = new Promise<void>((resolve) => (initialDone = resolve));
    if (status.values === 0) initialDone();
    void (async () => {
      for await (const entry of iter) {
        const topic = retainedKeyToTopic(entry.key);
        if (topic === null) this.malformed++;
        else {
          seen.add(topic);
          this.applyEntry(topic, entry);
        }
        if (entry.delta === 0 || (entry as { isUpdate?: boolean }).isUpdate === true) initialDone();
      }
    })().catch((err: unknown) => this.logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'retained-message watch ended'));
    await initial;
    // A topic this node shows that the bucket no longer has (purged while this node was away) goes.
    for (const topic of [...this.revisions.keys()]) {
      if (seen.has(topic)) continue;
      this.revisions.delete(topic);
      this.index.update(cleared(topic));
    }
  }

  private applyEntry(topic: string, entry: KvEntry): void {
    if (entry.operation !== 'PUT') {
      this.apply(topic, entry.revision, null);
      return;
    }
    const envelope = decodeEnvelope(entry.value, topic);
    if (envelope === null) {
      this.malformed++;
      return;
    }
    this.apply(topic, entry.revision, envelope.message);
  }

  private apply(topic: string, revision: number, message: Message | null): void {
    const shown = this.revisions.get(topic) ?? 0;
    if (revision <= shown) return;
    this.revisions.set(topic, revision);
    this.index.update(message ?? cleared(topic));
  }

  stop(): void {
    this.stopped = true;
    this.watch?.stop();
    this.watch = null;
  }
}
