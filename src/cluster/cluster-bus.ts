/**
 * Live routing between nodes over core NATS, and the durable store of QoS 1/2 messages in
 * JetStream. Owns: one NATS subscription set per distinct local filter (ref-counted), queue
 * groups for `$share`, the message ids and the drop of duplicates on receipt, the stored
 * publish with its retries, and the bound on messages waiting for the store. Must not:
 * match subscribers (the broker's trie does, on receipt), hold sessions, or store retained
 * messages (retained-sync.ts).
 *
 * Data flow: the ingress node publishes once; every node with interest (the ingress node
 * too) receives it on its NATS subscriptions and hands it to the broker, which matches its
 * local trie. QoS 0 is a core publish to `bmq.0.…`. A QoS 1/2 message is a JetStream
 * publish to `bms.<q>.…`, which only the BMQ_MSGS stream listens to; once stored, the
 * stream republishes it to `bmq.<q>.…` with its sequence (`Nats-Sequence`), so live
 * delivery happens only after the store, carries the position a persistent session records
 * (cluster-session-store.ts), and a retried store that JetStream drops as a duplicate is
 * not delivered twice. The publisher's acknowledgement waits for the stream's.
 *
 * SECURITY: fail closed. A store that does not answer is retried with the same message id
 * (JetStream keeps it once) until `storeDeadlineMs`, then refused; at most `maxPendingStores`
 * messages wait at once, beyond which new ones are refused at once (bounded memory, held-back
 * publishers). QoS 0 is refused while NATS is disconnected rather than queued in the client.
 */
import { headers, type NatsConnection, type Msg, type MsgHdrs, type Subscription } from '@nats-io/transport-node';
import type { JetStreamClient } from '@nats-io/jetstream';
import { createHash } from 'node:crypto';
import type { Logger } from '../core/logger.js';
import type { Message } from '../broker/message.js';
import type { ClusterDeliveryScope } from '../broker/ports.js';
import { decodeEnvelope, encodeEnvelope } from './message-envelope.js';
import { filterToSubjects, isCodecRefusal, isDollarTopicSubject, MAX_ENCODED_BYTES_PER_CODE_UNIT, MAX_ENCODED_TOPIC_BYTES, subjectToTopic, topicToSubject } from './subject-codec.js';

/** The name of the JetStream stream that keeps QoS 1/2 messages. */
export const MESSAGE_STREAM = 'BMQ_MSGS';
/** The subjects BMQ_MSGS captures: QoS 1/2 messages as their ingress node stores them. */
export const MESSAGE_STREAM_SUBJECTS = ['bms.1.>', 'bms.2.>'];
/** Where the stream republishes what it stored: the live subjects nodes subscribe to. */
export const MESSAGE_REPUBLISH = { src: 'bms.>', dest: 'bmq.>' } as const;

/** The stored subject of a live QoS 1/2 subject (`bmq.1.…` → `bms.1.…`), and back. */
export function storedSubject(liveSubject: string): string {
  return `bms${liveSubject.slice(3)}`;
}
export function liveSubject(storedSubject: string): string {
  return `bmq${storedSubject.slice(3)}`;
}

export interface ClusterBusOptions {
  nc: NatsConnection;
  js: JetStreamClient;
  nodeId: string;
  logger: Logger;
  /** Hands a message that came through the cluster to the local broker. */
  deliver(message: Message, scope: ClusterDeliveryScope): void;
  /** The largest NATS message the server takes (its max_payload). */
  maxPayload(): number;
  /** Whether NATS is connected now. */
  connected(): boolean;
  /** How long a stored publish is retried before it is refused (covers a JetStream leader election). */
  storeDeadlineMs?: number;
  /** How many stored publishes may wait at once. */
  maxPendingStores?: number;
}

/** What the bus counted since start (metrics). */
export interface ClusterBusCounters {
  received: number;
  duplicates: number;
  malformed: number;
  expired: number;
  stored: number;
  storeRetries: number;
  storeFailures: number;
}

interface Interest {
  count: number;
  subs: Subscription[];
}

const PLAIN: ClusterDeliveryScope = { kind: 'plain' };

/** The header the stream's republish carries, for a live copy this node sends itself. */
function sequenceHeader(seq: number): MsgHdrs {
  const h = headers();
  h.set('Nats-Sequence', String(seq));
  return h;
}

/**
 * Ids seen lately, oldest forgotten first. A duplicate arrives within milliseconds (a
 * second matching NATS subscription, a retried store), so a bounded window is enough.
 */
class RecentIds {
  private readonly ids = new Set<string>();
  constructor(private readonly capacity: number) {}

  /** True when `id` is new (and remembers it). */
  add(id: string): boolean {
    if (this.ids.has(id)) return false;
    this.ids.add(id);
    if (this.ids.size > this.capacity) {
      const oldest = this.ids.values().next().value;
      if (oldest !== undefined) this.ids.delete(oldest);
    }
    return true;
  }
}

/**
 * The NATS queue group of a shared subscription: one per (group, filter), as [MQTT-4.8.2]
 * defines the group. Hashed, because a group name may hold any character.
 */
export function shareQueueName(group: string, filter: string): string {
  return `share_${createHash('sha256').update(group).update('\0').update(filter).digest('hex').slice(0, 32)}`;
}

export class ClusterBus {
  readonly counters: ClusterBusCounters = { received: 0, duplicates: 0, malformed: 0, expired: 0, stored: 0, storeRetries: 0, storeFailures: 0 };
  private readonly interest = new Map<string, Interest>();
  private readonly seen = new RecentIds(100_000);
  private readonly idPrefix: string;
  private nextId = 0;
  private pending = 0;
  private readonly inFlight = new Set<Promise<void>>();
  /** A NATS subscription was made since the last flush; the flush in progress. */
  private unflushed = false;
  private flushing: Promise<void> | null = null;
  /** The highest stream sequence received. */
  lastSeq = 0;
  private readonly storeDeadlineMs: number;
  private readonly maxPendingStores: number;

  constructor(private readonly opts: ClusterBusOptions) {
    // Unique across restarts of the same node id: JetStream drops a repeated id within its duplicate window.
    this.idPrefix = `${opts.nodeId}.${Date.now().toString(36)}.`;
    this.storeDeadlineMs = opts.storeDeadlineMs ?? 15_000;
    this.maxPendingStores = opts.maxPendingStores ?? 10_000;
  }

  /** Messages waiting for the store now. */
  get pendingStores(): number {
    return this.pending;
  }

  /** Distinct NATS subscriptions held for local filters. */
  get subscriptionCount(): number {
    let n = 0;
    for (const i of this.interest.values()) n += i.subs.length;
    return n;
  }

  subscribe(filter: string, group: string | null): void {
    const key = group === null ? `p\0${filter}` : `s\0${group}\0${filter}`;
    const known = this.interest.get(key);
    if (known !== undefined) {
      known.count++;
      return;
    }
    const patterns = filterToSubjects(filter);
    if (isCodecRefusal(patterns)) {
      // The channel asked filterRefusal first; reaching here is a bug, not a client error.
      this.opts.logger.error({ filter, reason: patterns.message }, 'cluster cannot subscribe to a filter it accepted');
      return;
    }
    const queue = group === null ? undefined : shareQueueName(group, filter);
    const scope: ClusterDeliveryScope = group === null ? PLAIN : { kind: 'shared', group, filter };
    const dedupeSuffix = queue === undefined ? '' : `\0${queue}`;
    const subs = patterns.patterns.map((subject) =>
      this.opts.nc.subscribe(subject, {
        ...(queue !== undefined ? { queue } : {}),
        callback: (err, msg) => {
          if (err !== null) {
            this.opts.logger.warn({ subject, err: err.message }, 'cluster subscription error');
            return;
          }
          this.receive(msg, scope, patterns.wildcardFirst, dedupeSuffix);
        },
      }),
    );
    this.interest.set(key, { count: 1, subs });
    this.unflushed = true;
  }

  /**
   * Settles once the server has processed every SUB sent so far (a PING/PONG round trip:
   * NATS handles one connection's commands in order); null when none is new.
   */
  interestReady(): Promise<void> | null {
    if (!this.unflushed) return this.flushing;
    this.unflushed = false;
    const flushing = this.opts.nc.flush().finally(() => {
      if (this.flushing === flushing) this.flushing = null;
    });
    this.flushing = flushing;
    return flushing;
  }

  unsubscribe(filter: string, group: string | null): void {
    const key = group === null ? `p\0${filter}` : `s\0${group}\0${filter}`;
    const known = this.interest.get(key);
    if (known === undefined) return;
    if (--known.count > 0) return;
    this.interest.delete(key);
    for (const s of known.subs) s.unsubscribe();
  }

  private receive(msg: Msg, scope: ClusterDeliveryScope, wildcardFirst: boolean, dedupeSuffix: string): void {
    // [MQTT-4.7.2-1]: a filter starting with a wildcard never matches a `$` topic.
    if (wildcardFirst && isDollarTopicSubject(msg.subject)) return;
    const decoded = subjectToTopic(msg.subject);
    const envelope = decoded === null ? null : decodeEnvelope(msg.data, decoded.topic, decoded.qos);
    if (envelope === null) {
      this.counters.malformed++;
      return;
    }
    // Overlapping filters (`a/+` and `a/#`) and a retried store bring the same message again.
    if (!this.seen.add(envelope.id + dedupeSuffix)) {
      this.counters.duplicates++;
      return;
    }
    const m = envelope.message;
    if (m.expiresAt !== 0 && m.expiresAt <= Date.now()) {
      this.counters.expired++;
      return;
    }
    if (m.qos !== 0) {
      // Republished by the stream: its position there (a QoS 1/2 message without one did not come from the stream).
      const seq = Number(msg.headers?.get('Nats-Sequence'));
      if (!Number.isSafeInteger(seq) || seq <= 0) {
        this.counters.malformed++;
        return;
      }
      m.streamSeq = seq;
      if (seq > this.lastSeq) this.lastSeq = seq;
    }
    this.counters.received++;
    this.opts.deliver(m, scope);
  }

  /** Why `topic` cannot travel as a subject, or null. */
  topicRefusal(topic: string): string | null {
    // Asked for every PUBLISH, before publish() encodes the subject: a topic too short to
    // pass the bound even fully escaped is not encoded twice.
    if (topic.length * MAX_ENCODED_BYTES_PER_CODE_UNIT <= MAX_ENCODED_TOPIC_BYTES) return null;
    const s = topicToSubject(topic, 0);
    return isCodecRefusal(s) ? s.message : null;
  }

  filterRefusal(filter: string): string | null {
    const s = filterToSubjects(filter);
    return isCodecRefusal(s) ? s.message : null;
  }

  /** Publishes to every node; for QoS 1/2, settles once JetStream stored it. */
  publish(message: Message): Promise<void> {
    const subject = topicToSubject(message.topic, message.qos);
    if (isCodecRefusal(subject)) return Promise.reject(new Error(subject.message));
    const id = this.idPrefix + (this.nextId++).toString(36);
    const body = encodeEnvelope(id, message);
    const max = this.opts.maxPayload();
    if (body.length > max) return Promise.reject(new Error(`message of ${body.length} bytes is over the NATS max_payload of ${max} bytes`));
    if (message.qos === 0) {
      if (!this.opts.connected()) return Promise.reject(new Error('NATS is disconnected'));
      this.opts.nc.publish(subject, body);
      return Promise.resolve();
    }
    if (this.pending >= this.maxPendingStores) return Promise.reject(new Error(`${this.pending} messages are already waiting for the cluster store`));
    this.pending++;
    const stored = this.store(storedSubject(subject), body, id).finally(() => {
      this.pending--;
      this.inFlight.delete(stored);
    });
    this.inFlight.add(stored);
    return stored;
  }

  /** Settles once every store started so far has (at a graceful stop: wills, last messages). */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.inFlight]);
  }

  private async store(subject: string, body: Buffer, id: string): Promise<void> {
    const deadline = Date.now() + this.storeDeadlineMs;
    for (let attempt = 0; ; attempt++) {
      const remaining = deadline - Date.now();
      try {
        // The same msgID on every attempt: JetStream keeps one copy (duplicate window 2 min).
        const ack = await this.opts.js.publish(subject, body, { msgID: id, timeout: Math.max(250, Math.min(remaining, 5000)) });
        this.counters.stored++;
        // A retry answered as a duplicate: the first attempt was stored, but its republish
        // may have died with the stream leader. Send the live copy ourselves, with its
        // sequence; receivers drop it by id when the republish did go out.
        if (ack.duplicate) this.opts.nc.publish(liveSubject(subject), body, { headers: sequenceHeader(ack.seq) });
        return;
      } catch (err) {
        if (Date.now() + 100 >= deadline) {
          this.counters.storeFailures++;
          throw new Error(`the cluster store did not confirm within ${Math.round(this.storeDeadlineMs / 1000)} s (${err instanceof Error ? err.message : String(err)})`);
        }
        this.counters.storeRetries++;
        await new Promise((r) => setTimeout(r, Math.min(100 * 2 ** attempt, 1000)));
      }
    }
  }

  /** Drops every subscription (at stop). */
  close(): void {
    for (const i of this.interest.values()) for (const s of i.subs) s.unsubscribe();
    this.interest.clear();
  }
}
