/**
 * This process as a node of a Bastion cluster (issue 12): the `ClusterPort` the broker
 * uses. Owns: the NATS connection, the JetStream stream and KV buckets (created or
 * checked at start with the configured replicas and retention), the bus, the retained
 * sync and the session registry, and whether the cluster can take work now. Must not:
 * touch sockets or channels (it reaches the broker only through its methods).
 *
 * SECURITY: fail closed. While NATS is disconnected new CONNECTs are refused (0x88 Server
 * unavailable) and stored publishes are held back, then refused; nothing is acknowledged
 * that the cluster did not store. After a reconnect the retained messages are read again
 * in full: a watch's snapshot alone is not trusted (a change made while away is re-read).
 */
import { jetstream, jetstreamManager, RetentionPolicy, StorageType, DiscardPolicy, type JetStreamManager, type StreamConfig } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { Broker } from '../broker/broker.js';
import type { Message } from '../broker/message.js';
import type { ClusterClaim, ClusterPort } from '../broker/ports.js';
import type { ClusterConfig } from '../core/cluster-config.js';
import type { Logger } from '../core/logger.js';
import { ReasonCode } from '../protocol/reason-codes.js';
import { ClusterBus, MESSAGE_STREAM, MESSAGE_STREAM_SUBJECTS, type ClusterBusCounters } from './cluster-bus.js';
import { connectNats, type ClusterNatsConnection } from './nats-connection.js';
import { RetainedSync, RETAINED_BUCKET } from './retained-sync.js';
import { SessionRegistry, SESSIONS_BUCKET } from './session-registry.js';

/** Room kept under NATS max_payload for the envelope and headers of the largest MQTT packet. */
export const ENVELOPE_HEADROOM_BYTES = 64 * 1024;
/** JetStream drops a repeated message id within this window (retried stores). */
const DUPLICATE_WINDOW_NS = 120 * 1e9;

export interface ClusterNodeOptions {
  cluster: ClusterConfig;
  nodeId: string;
  baseDir: string;
  logger: Logger;
  /** How long a stored publish is retried before refused (default 15 s: a JetStream leader election takes 6-8 s). */
  storeDeadlineMs?: number;
}

/** A snapshot of the node's cluster state (metrics, admin). */
export interface ClusterNodeStatus {
  nodeId: string;
  connected: boolean;
  server: string;
  natsVersion: string;
  pendingStores: number;
  natsSubscriptions: number;
  bus: ClusterBusCounters;
  takeoversAnswered: number;
}

function messageStreamConfig(cluster: ClusterConfig): Partial<StreamConfig> & { name: string } {
  return {
    name: MESSAGE_STREAM,
    subjects: MESSAGE_STREAM_SUBJECTS,
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    num_replicas: cluster.replicas,
    max_age: cluster.retention.maxAgeSeconds * 1e9,
    max_bytes: cluster.retention.maxBytes,
    duplicate_window: DUPLICATE_WINDOW_NS,
  };
}

/** Creates the message stream, or brings an existing one to the configured retention. */
async function ensureMessageStream(jsm: JetStreamManager, cluster: ClusterConfig, logger: Logger): Promise<void> {
  const want = messageStreamConfig(cluster);
  try {
    const info = await jsm.streams.info(MESSAGE_STREAM);
    const c = info.config;
    if (c.num_replicas !== cluster.replicas) logger.warn({ stream: MESSAGE_STREAM, has: c.num_replicas, configured: cluster.replicas }, 'the message stream keeps its replica count; change it with the nats CLI');
    if (c.max_age !== want.max_age || c.max_bytes !== want.max_bytes) await jsm.streams.update(MESSAGE_STREAM, { ...c, max_age: want.max_age!, max_bytes: want.max_bytes! });
  } catch (err) {
    if (!/stream not found/i.test(err instanceof Error ? err.message : String(err))) throw err;
    await jsm.streams.add(want);
  }
}

export class ClusterNode implements ClusterPort {
  private bus: ClusterBus | null = null;
  private retained: RetainedSync | null = null;
  private registry: SessionRegistry | null = null;
  private connected = true;
  private stopStatus: (() => void) | null = null;

  private constructor(
    readonly conn: ClusterNatsConnection,
    private readonly retainedKv: KV,
    private readonly sessionsKv: KV,
    private readonly opts: ClusterNodeOptions,
  ) {}

  get nodeId(): string {
    return this.opts.nodeId;
  }

  /** Connects to NATS and makes sure the stream and buckets exist; throws one readable line when it cannot. */
  static async connect(opts: ClusterNodeOptions): Promise<ClusterNode> {
    const conn = await connectNats({ cluster: opts.cluster, nodeId: opts.nodeId, baseDir: opts.baseDir, logger: opts.logger });
    try {
      const jsm = await jetstreamManager(conn.nc);
      await ensureMessageStream(jsm, opts.cluster, opts.logger);
      const kvm = new Kvm(conn.nc);
      const replicas = opts.cluster.replicas;
      const retainedKv = await kvm.create(RETAINED_BUCKET, { replicas, history: 1, storage: StorageType.File });
      const sessionsKv = await kvm.create(SESSIONS_BUCKET, { replicas, history: 1, storage: StorageType.File });
      return new ClusterNode(conn, retainedKv, sessionsKv, opts);
    } catch (err) {
      await conn.close();
      throw err;
    }
  }

  /**
   * Joins the broker to the cluster: subscriptions deliver into it, takeovers reach it, and
   * the retained messages are read into it. Resolves once they are (before any listener opens).
   */
  async attach(broker: Broker): Promise<void> {
    const { nc } = this.conn;
    const logger = this.opts.logger;
    this.bus = new ClusterBus({
      nc,
      js: jetstream(nc),
      nodeId: this.nodeId,
      logger,
      deliver: (message, scope) => broker.deliverFromCluster(message, scope),
      maxPayload: () => this.conn.features.maxPayload,
      connected: () => this.connected,
      ...(this.opts.storeDeadlineMs !== undefined ? { storeDeadlineMs: this.opts.storeDeadlineMs } : {}),
    });
    this.registry = new SessionRegistry(nc, this.sessionsKv, this.nodeId, { release: (clientId) => releaseLocal(broker, clientId) }, logger);
    this.registry.start();
    this.retained = new RetainedSync(this.retainedKv, broker.retained, this.nodeId, logger);
    await this.retained.start();
    this.stopStatus = this.conn.onStatus((event) => {
      if (event.type === 'disconnect' || event.type === 'close') this.connected = false;
      else if (event.type === 'reconnect') {
        this.connected = true;
        this.retained?.start().catch((err: unknown) => logger.error({ err: err instanceof Error ? err.message : String(err) }, 'retained messages could not be re-read after the reconnect'));
      }
    });
  }

  private get parts(): { bus: ClusterBus; registry: SessionRegistry; retained: RetainedSync } {
    if (this.bus === null || this.registry === null || this.retained === null) throw new Error('cluster node used before attach()');
    return { bus: this.bus, registry: this.registry, retained: this.retained };
  }

  publish(message: Message): Promise<void> {
    const { bus, retained } = this.parts;
    const sent = bus.publish(message);
    if (!message.retain) return sent;
    return Promise.all([sent, retained.store(message)]).then(() => undefined);
  }

  topicRefusal(topic: string): string | null {
    return this.parts.bus.topicRefusal(topic);
  }

  filterRefusal(filter: string): string | null {
    return this.parts.bus.filterRefusal(filter);
  }

  subscribe(filter: string, group: string | null): void {
    this.parts.bus.subscribe(filter, group);
  }

  unsubscribe(filter: string, group: string | null): void {
    this.parts.bus.unsubscribe(filter, group);
  }

  async claim(clientId: string): Promise<ClusterClaim> {
    if (!this.connected) return { ok: false, reasonCode: ReasonCode.ServerUnavailable, reason: 'cluster unavailable: NATS is disconnected' };
    return this.parts.registry.claim(clientId);
  }

  opened(clientId: string, epoch: number): boolean {
    return this.parts.registry.opened(clientId, epoch);
  }

  released(clientId: string): void {
    this.registry?.released(clientId);
  }

  status(): ClusterNodeStatus {
    return {
      nodeId: this.nodeId,
      connected: this.connected,
      server: this.conn.server(),
      natsVersion: this.conn.features.version,
      pendingStores: this.bus?.pendingStores ?? 0,
      natsSubscriptions: this.bus?.subscriptionCount ?? 0,
      bus: { ...(this.bus?.counters ?? { received: 0, duplicates: 0, malformed: 0, expired: 0, stored: 0, storeRetries: 0, storeFailures: 0 }) },
      takeoversAnswered: this.registry?.takeoversAnswered ?? 0,
    };
  }

  /** Leaves the cluster: drains what was published, then closes the connection. */
  async close(): Promise<void> {
    this.stopStatus?.();
    this.retained?.stop();
    this.registry?.stop();
    this.bus?.close();
    try {
      await this.conn.nc.flush();
    } catch {
      // Already disconnected: nothing more can be sent.
    }
    await this.conn.close();
  }
}

/**
 * Another node owns `clientId` now: its connection here (if any) is closed with 0x8E, and
 * this node's copy of the session (kept for a persistent session) is dropped without a
 * will: the session lives on where the client went.
 */
function releaseLocal(broker: Broker, clientId: string): void {
  broker.disconnectWhere((c) => c.clientId === clientId, ReasonCode.SessionTakenOver, 'session taken over on another node');
  const session = broker.sessions.get(clientId);
  if (session !== undefined && !session.online) broker.endSession(session, { publishWill: false });
}
