/**
 * One client session: subscriptions, the inflight window, the bounded queue, and QoS 2
 * receive state. Owns: delivery order and acknowledgement bookkeeping, and keeping the
 * store in step for persistent sessions. Must not: encode or write bytes (its
 * DeliveryTarget does) or route (the broker does).
 */
import type { Clock, TimerHandle } from '../../core/clock.js';
import type { ProtocolVersion, QoS } from '../../protocol/packets.js';
import type { Message } from '../message.js';
import type { ClientIdentity, OutboundState, SessionRecord, SessionStore, StoredSubscription } from '../ports.js';
import type { DeliveryTarget, Outbound, PublishCache } from './outbound.js';
import { RingQueue } from './ring-queue.js';

export const NEVER_EXPIRES = 0xffffffff;

export interface SessionCounters {
  droppedQueueFull: number;
  droppedExpired: number;
  droppedTooLarge: number;
}

/** A delivery a limit dropped: the queue was full, or the message is larger than the client accepts. */
export type DeliveryDrop = 'queue-full' | 'packet-size';

export interface SessionContext {
  clock: Clock;
  store: SessionStore | null;
  maxQueued: number;
  counters: SessionCounters;
  /** Told of every dropped delivery (one call per message; the broker emits `limit.hit`). */
  onDrop(session: Session, cause: DeliveryDrop): void;
}

/** A will as the connection declared it. */
export interface WillSpec {
  message: Message;
  /** Will Delay Interval, seconds. */
  delay: number;
  /** Message Expiry Interval, seconds, counted from publication; 0 for none. */
  expiryInterval: number;
}

export interface PendingWill {
  will: WillSpec;
  timer: TimerHandle | null;
}

export class Session {
  readonly clientId: string;
  protocolVersion: ProtocolVersion;
  /** Seconds the session outlives its connection; 0 ends it with the connection. */
  expiryInterval: number;
  readonly subscriptions = new Map<string, StoredSubscription>();
  /**
   * QoS 2 packet ids received and not yet released, and the inflight window: made on first
   * use (most idle devices never use either; an empty Set or Map costs ~150 bytes).
   */
  private qos2Ids: Set<number> | null = null;
  private inflightMap: Map<number, Outbound> | null = null;
  private readonly queue = new RingQueue<Outbound>();
  private target: DeliveryTarget | null = null;
  private nextPacketId = 1;
  disconnectedAt = 0;
  /** Messages and bytes (topic + payload) sent to the client since BrokerApi.drainDeliveries last read them. */
  sentMessages = 0;
  sentBytes = 0;
  /** Messages this session may queue: mqtt.maxQueued, or its client's role quota (set at each connect). */
  maxQueued: number;
  /** The identity of the client that last owned the session (stored with the record). */
  identity: ClientIdentity | undefined = undefined;
  /** ms since epoch when the current connection attached; 0 while offline (admin listings). */
  connectedAt = 0;
  expiryTimer: TimerHandle | null = null;
  pendingWill: PendingWill | null = null;
  /** Cluster: the connection's will is recorded in the cluster (cleared there once published or dropped). */
  willInCluster = false;
  /** Publishers waiting for the queue to fall below the low-water mark. */
  private queueWaiters: Array<() => void> | null = null;
  /** True once the target was told the queue is congested, until it falls to a quarter. */
  private backlogged = false;
  /** Cluster: deliveries held while the session's missed messages are replayed in front of them. */
  private held: Array<{ message: Message; qos: QoS; retainFlag: boolean; subscriptionIds: number[] }> | null = null;

  constructor(
    clientId: string,
    protocolVersion: ProtocolVersion,
    expiryInterval: number,
    private readonly ctx: SessionContext,
  ) {
    this.clientId = clientId;
    this.protocolVersion = protocolVersion;
    this.expiryInterval = expiryInterval;
    this.maxQueued = ctx.maxQueued;
  }

  /** QoS 2 packet ids received and not yet released [MQTT-4.3.3-9]. */
  get incomingQos2(): Set<number> {
    return (this.qos2Ids ??= new Set());
  }

  private get inflight(): Map<number, Outbound> {
    return (this.inflightMap ??= new Map());
  }

  get online(): boolean {
    return this.target !== null;
  }

  /** A persistent session outlives its connection and is written to the store. */
  get persistent(): boolean {
    return this.expiryInterval > 0;
  }

  get inflightCount(): number {
    return this.inflightMap?.size ?? 0;
  }

  get queuedCount(): number {
    return this.queue.length;
  }

  /**
   * What the broker's own services (client-services.ts) may know of the attached
   * connection to pace their answers: its socket backpressure and the client's packet
   * bound. Null while offline. Read-only: nothing is sent through it.
   */
  get link(): { readonly congested: boolean; readonly maxPacketSize: number } | null {
    const t = this.target;
    return t === null ? null : { congested: t.congested, maxPacketSize: t.clientMaxPacketSize };
  }

  /** True while the queue of a connected session is over half its bound. */
  get queueCongested(): boolean {
    return this.queue.length > this.maxQueued / 2;
  }

  /** Calls `cb` once when the queue falls to a quarter of its bound, or the session goes offline. */
  onDrain(cb: () => void): void {
    (this.queueWaiters ??= []).push(cb);
  }

  private releaseQueueWaiters(): void {
    const waiters = this.queueWaiters;
    if (waiters === null) return;
    this.queueWaiters = null;
    for (const cb of waiters) cb();
  }

  private get store(): SessionStore | null {
    return this.persistent ? this.ctx.store : null;
  }

  toRecord(): SessionRecord {
    return {
      clientId: this.clientId,
      protocolVersion: this.protocolVersion,
      expiryInterval: this.expiryInterval,
      disconnectedAt: this.disconnectedAt,
      subscriptions: [...this.subscriptions.values()],
      ...(this.identity !== undefined ? { identity: this.identity } : {}),
    };
  }

  /** Writes the session record (not its messages) when the session is persistent. */
  saveRecord(): void {
    this.store?.saveSession(this.toRecord());
  }

  /** Attaches a connection and resends what was in flight [MQTT-4.4.0-1]. */
  attach(target: DeliveryTarget): void {
    this.target = target;
    this.disconnectedAt = 0;
    this.connectedAt = this.ctx.clock.now();
    if (this.inflightMap !== null) {
      for (const o of this.inflightMap.values()) {
        if (o.state === 'pubrel-sent') target.sendPubrel(o.packetId);
        else if (!this.isExpired(o)) target.sendPublish(o.message, o.qos, o.retainFlag, o.subscriptionIds, o.packetId, true, null);
      }
    }
    this.drain();
  }

  detach(now: number): void {
    this.target = null;
    this.backlogged = false;
    this.disconnectedAt = now;
    this.connectedAt = 0;
    // An offline session queues up to its bound without holding publishers back.
    this.releaseQueueWaiters();
  }

  /**
   * Cluster: from now on, deliveries wait (in order) until `releaseHeld`, so messages
   * replayed from the cluster's stream go in front of those arriving live meanwhile.
   */
  hold(): void {
    this.held ??= [];
  }

  /** Delivers what was held, except messages the replay already delivered (stream sequence up to `replayedThrough`). */
  releaseHeld(replayedThrough: number): void {
    const held = this.held;
    this.held = null;
    if (held === null) return;
    for (const h of held) {
      if (h.message.streamSeq !== undefined && h.message.streamSeq <= replayedThrough) continue;
      this.deliver(h.message, h.qos, h.retainFlag, h.subscriptionIds, null);
    }
  }

  /** Delivers one message to this session; QoS 0 to an offline session is not queued. */
  deliver(message: Message, qos: QoS, retainFlag: boolean, subscriptionIds: number[], cache: PublishCache | null): void {
    if (this.held !== null) {
      this.held.push({ message, qos, retainFlag, subscriptionIds });
      return;
    }
    this.deliverNow(message, qos, retainFlag, subscriptionIds, cache);
  }

  /** Delivers past any hold: a message replayed from the cluster's stream, which goes in front of the held ones. */
  deliverNow(message: Message, qos: QoS, retainFlag: boolean, subscriptionIds: number[], cache: PublishCache | null): void {
    const target = this.target;
    if (qos === 0) {
      if (target === null) return;
      if (!target.sendPublish(message, 0, retainFlag, subscriptionIds, 0, false, cache)) this.dropped('packet-size');
      else {
        this.sentMessages++;
        this.sentBytes += message.topic.length + message.payload.length;
      }
      return;
    }
    const store = this.store;
    const o: Outbound = { seq: store !== null ? store.nextSeq() : 0, message, qos, retainFlag, subscriptionIds, state: 'queued', packetId: 0 };
    if (target !== null && this.queue.length === 0 && this.inflight.size < target.sendQuota) {
      if (!this.send(target, o, cache)) {
        this.dropped('packet-size');
        return;
      }
    } else {
      if (this.queue.length >= this.maxQueued) {
        this.dropped('queue-full');
        return;
      }
      this.queue.push(o);
      // A connected subscriber whose queue stays over half full does not acknowledge: its
      // target starts the slow-consumer clock (once per congestion, not per message).
      if (target !== null && !this.backlogged && this.queue.length > this.maxQueued / 2) {
        this.backlogged = true;
        target.queueCongested();
      }
    }
    store?.addOutbound({ ...o, clientId: this.clientId });
  }

  /** PUBACK for QoS 1, PUBCOMP for QoS 2: the delivery is complete. */
  complete(packetId: number, expectState: 'publish-sent' | 'pubrel-sent'): boolean {
    const o = this.inflight.get(packetId);
    if (o === undefined || o.state !== expectState || (expectState === 'publish-sent' && o.qos !== 1)) return false;
    this.inflight.delete(packetId);
    this.store?.removeOutbound(this.clientId, o.seq);
    this.drain();
    return true;
  }

  /** PUBREC: the receiver has the message; answer PUBREL. A failure code ends the delivery. */
  received(packetId: number, failed: boolean): boolean {
    const o = this.inflight.get(packetId);
    if (o === undefined || o.qos !== 2) return false;
    if (failed) {
      this.inflight.delete(packetId);
      this.store?.removeOutbound(this.clientId, o.seq);
      this.drain();
      return true;
    }
    o.state = 'pubrel-sent';
    this.store?.updateOutbound(this.clientId, o.seq, 'pubrel-sent', packetId);
    this.target?.sendPubrel(packetId);
    return true;
  }

  /** Moves queued messages into the inflight window while it has room. */
  drain(): void {
    const target = this.target;
    if (target === null) return;
    while (this.queue.length > 0 && this.inflight.size < target.sendQuota) {
      const o = this.queue.shift()!;
      if (this.isExpired(o)) {
        this.ctx.counters.droppedExpired++;
        this.store?.removeOutbound(this.clientId, o.seq);
        continue;
      }
      if (!this.send(target, o, null)) {
        this.dropped('packet-size');
        this.store?.removeOutbound(this.clientId, o.seq);
        continue;
      }
      this.store?.updateOutbound(this.clientId, o.seq, 'publish-sent', o.packetId);
    }
    if (this.queue.length <= this.maxQueued / 4) {
      if (this.queueWaiters !== null) this.releaseQueueWaiters();
      if (this.backlogged) {
        this.backlogged = false;
        target.queueEased();
      }
    }
  }

  private dropped(cause: DeliveryDrop): void {
    if (cause === 'queue-full') this.ctx.counters.droppedQueueFull++;
    else this.ctx.counters.droppedTooLarge++;
    this.ctx.onDrop(this, cause);
  }

  /** Restores an outbound message from the store after a restart. */
  restore(o: Outbound): void {
    if (o.state === 'queued' || o.packetId === 0) {
      o.state = 'queued';
      this.queue.push(o);
      return;
    }
    this.inflight.set(o.packetId, o);
    if (o.packetId >= this.nextPacketId) this.nextPacketId = (o.packetId % 65535) + 1;
  }

  /**
   * Cluster: a QoS 2 delivery its previous node had already sent (`publish-sent`: resent
   * with DUP and the same packet id) or had PUBREC for (`pubrel-sent`: only PUBREL again),
   * so the client delivers it once [MQTT-4.3.3].
   */
  restoreInflight(message: Message, packetId: number, state: OutboundState, retainFlag: boolean, subscriptionIds: number[]): void {
    const store = this.store;
    const o: Outbound = { seq: store !== null ? store.nextSeq() : 0, message, qos: 2, retainFlag, subscriptionIds, state, packetId };
    this.restore(o);
    store?.addOutbound({ ...o, clientId: this.clientId });
  }

  /** Removes queued (never sent) messages that `reject` picks; returns how many. */
  dropQueued(reject: (message: Message) => boolean): number {
    let dropped = 0;
    for (let n = this.queue.length; n > 0; n--) {
      const o = this.queue.shift()!;
      if (!reject(o.message)) this.queue.push(o);
      else {
        dropped++;
        this.store?.removeOutbound(this.clientId, o.seq);
      }
    }
    return dropped;
  }

  /** Drops every message and QoS 2 state (clean start or session end). */
  clearMessages(): void {
    this.inflightMap = null;
    this.queue.clear();
    this.qos2Ids = null;
    this.releaseQueueWaiters();
    if (this.backlogged) {
      this.backlogged = false;
      this.target?.queueEased();
    }
  }

  private send(target: DeliveryTarget, o: Outbound, cache: PublishCache | null): boolean {
    o.packetId = this.allocatePacketId();
    o.state = 'publish-sent';
    if (!target.sendPublish(o.message, o.qos, o.retainFlag, o.subscriptionIds, o.packetId, false, cache)) return false;
    this.sentMessages++;
    this.sentBytes += o.message.topic.length + o.message.payload.length;
    this.inflight.set(o.packetId, o);
    return true;
  }

  private allocatePacketId(): number {
    // The window is at most 65535 wide, so a free id always exists.
    let id = this.nextPacketId;
    while (this.inflight.has(id)) id = (id % 65535) + 1;
    this.nextPacketId = (id % 65535) + 1;
    return id;
  }

  private isExpired(o: Outbound): boolean {
    return o.message.expiresAt !== 0 && o.message.expiresAt <= this.ctx.clock.now();
  }
}
