/**
 * Which nodes are alive, and what happens to the wills of one that is not: every node
 * renews a lease (a key in the nodes bucket) every second; a node whose lease has not
 * changed for `leaseTtlMs` (measured on the watcher's own clock, so clocks of different
 * machines need not agree) is dead. One survivor, the one whose compare-and-set delete of
 * the dead node's lease succeeds, goes through the sessions bucket and publishes the wills
 * recorded for connections of that node [MQTT-3.1.2-8], each after its delay. A node that
 * starts does the same for what its previous run (same node id) left. Owns: the leases, the
 * death verdict and the hand-out of orphaned wills. Must not: authorize or publish itself
 * (the broker does, through `OrphanWillTarget`).
 *
 * Each will is taken with a compare-and-set on its session key (the will removed from the
 * record), so it is published once even when two survivors race or a client reconnects.
 * Cost: the sessions bucket is read in full once per dead node (see the README's capacity
 * notes).
 */
import type { KV } from '@nats-io/kv';
import type { QueuedIterator } from '@nats-io/transport-node';
import type { Logger } from '../core/logger.js';
import type { ClusterNatsConnection } from './nats-connection.js';
import type { DurableWill } from './session-record.js';
import { decodeOwnerRecord, encodeOwnerRecord, ownerRecordOf } from './session-record.js';
import { isConflict } from './session-registry.js';
import { keyToClientId } from './subject-codec.js';

/** The KV bucket of node leases. */
export const NODES_BUCKET = 'bmq_nodes';
const RENEW_MS = 1000;

/** Where orphaned wills go. */
export interface OrphanWillTarget {
  /** Publishes `will` of `clientId` (authorized again by the broker). */
  publish(clientId: string, will: DurableWill): void;
}

export interface NodeLeasesOptions {
  /** Key listings are consumers, made through the connection's consumer gate (nats-connection.ts). */
  conn: Pick<ClusterNatsConnection, 'consumer'>;
  nodes: KV;
  sessions: KV;
  nodeId: string;
  target: OrphanWillTarget;
  logger: Logger;
  /** A lease unchanged this long means its node is dead (default 5 s). */
  leaseTtlMs?: number;
}

interface Seen {
  revision: number;
  /** Local time the revision last changed. */
  since: number;
}

export class NodeLeases {
  private readonly seen = new Map<string, Seen>();
  /** Nodes whose lease this node saw expire (or removed). */
  private readonly dead = new Set<string>();
  /** When this node's last check of the leases succeeded. */
  private lastSweep = 0;
  private timer: NodeJS.Timeout | null = null;
  private readonly ttl: number;
  private sweeping = false;
  private stopped = false;
  /** Wills of dead nodes this node published. */
  orphanWillsPublished = 0;
  /** Dead nodes this node took care of. */
  deadNodesHandled = 0;
  private readonly willTimers = new Set<NodeJS.Timeout>();

  constructor(private readonly opts: NodeLeasesOptions) {
    this.ttl = opts.leaseTtlMs ?? 5000;
  }

  /** Renews this node's lease now and every second; takes over what a previous run of this node id left. */
  async start(): Promise<void> {
    await this.renew();
    // What this node id's previous run (killed, or stopped without a goodbye) left behind.
    await this.takeWills(this.opts.nodeId);
    this.timer = setInterval(() => void this.tick(), RENEW_MS);
    this.timer.unref();
  }

  /** Node ids whose lease is live, as this node sees them. */
  liveNodes(): string[] {
    const now = Date.now();
    return [...this.seen.entries()].filter(([, s]) => now - s.since < this.ttl).map(([id]) => id);
  }

  /**
   * True when `node`'s lease expired (as far as this node knows): no point asking it
   * anything. A lease looks stale only while this node's own checks succeed: when they
   * fail (NATS in trouble), every other node would look dead.
   */
  presumedDead(node: string): boolean {
    if (this.dead.has(node)) return true;
    const s = this.seen.get(node);
    const now = Date.now();
    return s !== undefined && now - s.since >= this.ttl && now - this.lastSweep < 2 * RENEW_MS;
  }

  private async renew(): Promise<void> {
    await this.opts.nodes.put(this.opts.nodeId, JSON.stringify({ t: Date.now() }));
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    try {
      await this.renew();
    } catch (err) {
      this.opts.logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'node lease not renewed');
      return;
    }
    if (this.sweeping || this.stopped) return;
    this.sweeping = true;
    try {
      await this.sweep();
    } catch (err) {
      this.opts.logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'node lease check failed');
    } finally {
      this.sweeping = false;
    }
  }

  private async sweep(): Promise<void> {
    const now = Date.now();
    const present = new Set<string>();
    for await (const node of await this.keysOf(this.opts.nodes)) present.add(node);
    for (const node of present) {
      if (node === this.opts.nodeId) continue;
      const entry = await this.opts.nodes.get(node);
      if (entry === null || entry.operation !== 'PUT') continue;
      const s = this.seen.get(node);
      if (s === undefined || s.revision !== entry.revision) {
        this.seen.set(node, { revision: entry.revision, since: now });
        this.dead.delete(node);
        continue;
      }
      if (now - s.since < this.ttl) continue;
      // Dead. Whoever deletes its lease (compare-and-set) takes care of its wills.
      this.dead.add(node);
      try {
        await this.opts.nodes.delete(node, { previousSeq: entry.revision });
      } catch (err) {
        if (isConflict(err)) continue;
        throw err;
      }
      this.seen.delete(node);
      this.deadNodesHandled++;
      this.opts.logger.warn({ node, silentForMs: now - s.since }, 'cluster node lease expired; publishing its wills');
      await this.takeWills(node);
    }
    for (const node of [...this.seen.keys()]) if (!present.has(node)) this.seen.delete(node);
    this.lastSweep = Date.now();
  }

  /** Takes every will recorded for connections of `node`, each once, and publishes it after its delay. */
  private async takeWills(node: string): Promise<void> {
    const sessions = this.opts.sessions;
    const keys: string[] = [];
    for await (const key of await this.keysOf(sessions)) keys.push(key);
    for (const key of keys) {
      const entry = await sessions.get(key);
      if (entry === null || entry.operation !== 'PUT') continue;
      const record = decodeOwnerRecord(entry.value);
      const clientId = keyToClientId(key);
      if (record === null || clientId === null || record.node !== node || record.will === undefined) continue;
      const will = record.will;
      const now = Date.now();
      const next = { ...record };
      delete next.will;
      // The connection ended when its node died.
      if (next.session !== undefined && next.session.disconnectedAt === 0) next.session = { ...next.session, disconnectedAt: now };
      try {
        await sessions.update(key, encodeOwnerRecord(next), entry.revision);
      } catch (err) {
        if (isConflict(err)) continue; // taken by another survivor, or the client is back
        throw err;
      }
      const delayS = Math.min(will.delay, next.session?.expiryInterval ?? 0);
      this.schedule(clientId, key, record.epoch, will, delayS * 1000);
    }
  }

  private schedule(clientId: string, key: string, epoch: number, will: DurableWill, delayMs: number): void {
    const fire = (): void => {
      this.orphanWillsPublished++;
      this.opts.target.publish(clientId, will);
    };
    if (delayMs <= 0) {
      fire();
      return;
    }
    const t = setTimeout(() => {
      this.willTimers.delete(t);
      // A client that reconnected within the will delay (a new claim) cancels it [MQTT-3.1.3-9].
      void this.opts.sessions.get(key).then(
        (entry) => {
          const now = ownerRecordOf(entry);
          if (now === null || now.epoch === epoch) fire();
        },
        () => fire(),
      );
    }, delayMs);
    t.unref();
    this.willTimers.add(t);
  }

  /** Every key of `kv` (a consumer, so made through the gate). */
  private keysOf(kv: KV): Promise<QueuedIterator<string>> {
    return this.opts.conn.consumer(
      () => kv.keys(),
      (k) => k.stop(),
    );
  }

  /** Stops renewing; the lease lapses (a graceful stop publishes its own wills first). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    for (const t of this.willTimers) clearTimeout(t);
    this.willTimers.clear();
    // A graceful stop needs no survivor to take over: the lease goes with the node.
    await this.opts.nodes.delete(this.opts.nodeId).catch(() => undefined);
  }
}
