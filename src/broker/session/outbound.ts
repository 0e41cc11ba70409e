/**
 * An outbound message owned by a session, from queued to acknowledged.
 */
import type { StoredOutbound } from '../ports.js';
import type { Message } from '../message.js';
import type { QoS } from '../../protocol/packets.js';

/** An outbound message owned by a session: the stored form without the owner's id. */
export type Outbound = Omit<StoredOutbound, 'clientId'>;

/** Where a session sends: implemented by the channel of the attached connection. */
export interface DeliveryTarget {
  /** How many QoS 1/2 messages may be unacknowledged at once (client's Receive Maximum). */
  readonly sendQuota: number;
  /**
   * Writes a PUBLISH. Returns false when the message cannot be sent to this client at all
   * (larger than the client's Maximum Packet Size) so the session drops it [MQTT-3.1.2-25].
   */
  sendPublish(message: Message, qos: QoS, retainFlag: boolean, subscriptionIds: number[], packetId: number, dup: boolean, cache: PublishCache | null): boolean;
  sendPubrel(packetId: number): void;
  /** The session's queue went over half full: the subscriber is not acknowledging (slow-consumer clock). */
  queueCongested(): void;
  /** The queue fell back to a quarter of its bound. */
  queueEased(): void;
  /** True while the connection's write buffer is over its high-water mark (the broker's own services pace on it). */
  readonly congested: boolean;
  /** The Maximum Packet Size the client announced (v5 CONNECT), or Number.MAX_SAFE_INTEGER. */
  readonly clientMaxPacketSize: number;
}

/**
 * Shared encodings of one message for many subscribers, keyed by protocol family, QoS and
 * retain flag: one encode per variant instead of one per subscriber.
 */
export interface PublishCache {
  get(key: number): Buffer | undefined;
  set(key: number, encoded: Buffer): void;
}

export class SlotPublishCache implements PublishCache {
  private readonly slots: Array<Buffer | undefined> = [undefined, undefined, undefined, undefined, undefined, undefined, undefined, undefined, undefined, undefined, undefined, undefined];
  get(key: number): Buffer | undefined {
    return this.slots[key];
  }
  set(key: number, encoded: Buffer): void {
    this.slots[key] = encoded;
  }
}
