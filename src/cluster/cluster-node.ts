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
import { jetstream, jetstreamManager, RetentionPolicy, StorageType, DiscardPolicy, type JetStreamClient, type JetStreamManager, type StreamConfig } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { Broker } from '../broker/broker.js';
import type { Message } from '../broker/message.js';
import type { ClientIdentity, ClusterClaim, ClusterPort, ClusterResume, SessionRecord } from '../broker/ports.js';
import type { WillSpec } from '../broker/session/session.js';
import type { ClusterConfig } from '../core/cluster-config.js';
import type { Logger } from '../core/logger.js';
import { ReasonCode } from '../protocol/reason-codes.js';
import { ClusterBus, MESSAGE_REPUBLISH, MESSAGE_STREAM, MESSAGE_STREAM_SUBJECTS, type ClusterBusCounters } from './cluster-bus.js';
import { connectNats, type ClusterNatsConnection } from './nats-connection.js';
import { RetainedSync, RETAINED_BUCKET } from './retained-sync.js';
import { SessionRegistry, SESSIONS_BUCKET } from './session-registry.js';
import { ClusterSessionStore } from './cluster-session-store.js';
import type { DurableSession, DurableWill } from './session-record.js';
import { replaySession } from './session-replay.js';
import { NodeLeases, NODES_BUCKET } from './node-leases.js';

/** Room kept under NATS max_payload for the envelope and headers of the largest MQTT packet. */
export const ENVELOPE_HEADROOM_BYTES = 64 * 1024;
/** The longest a CONNECT waits for the cluster to claim its client id. */
const MAX_CLAIM_WAIT_MS = 10_000;
/** JetStream drops a repeated message id within this window (retried stores). */
const DUPLICATE_WINDOW_NS = 120 * 1e9;

export interface ClusterNodeOptions {
  cluster: ClusterConfig;
  nodeId: string;
  baseDir: string;
  logger: Logger;
  /** How long a stored publish is retried before refused (default 15 s: a JetStream leader election takes 6-8 s). */
  storeDeadlineMs?: number;
  /** A node lease unchanged this long means the node is dead (default 5 s). */
  leaseTtlMs?: number;
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
  /** Nodes with a live lease, this one included. */
  liveNodes: number;
  /** Their ids, this node's first. */
  nodeIds: string[];
  /** Wills of dead nodes this node published. */
  orphanWillsPublished: number;
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
    republish: { ...MESSAGE_REPUBLISH },
  };
}

/** Creates the message stream, or brings an existing one to the configured retention. */
async function ensureMessageStream(jsm: JetStreamManager, cluster: ClusterConfig, logger: Logger): Promise<void> {
  const want = messageStreamConfig(cluster);
  try {
    const info = await jsm.streams.info(MESSAGE_STREAM);
    const c = info.config;
    if (c.num_replicas !== cluster.replicas) logger.warn({ stream: MESSAGE_STREAM, has: c.num_replicas, configured: cluster.replicas }, 'the message stream keeps its replica count; change it with the nats CLI');
    const sameSubjects = JSON.stringify(c.subjects) === JSON.stringify(want.subjects) && c.republish?.src === MESSAGE_REPUBLISH.src && c.republish?.dest === MESSAGE_REPUBLISH.dest;
    if (!sameSubjects || c.max_age !== want.max_age || c.max_bytes !== want.max_bytes) {
      await jsm.streams.update(MESSAGE_STREAM, { ...c, subjects: want.subjects!, republish: { ...MESSAGE_REPUBLISH }, max_age: want.max_age!, max_bytes: want.max_bytes! });
    }
  } catch (err) {
    if (!/stream not found/i.test(err instanceof Error ? err.message : String(err))) throw err;
    await jsm.streams.add(want);
  }
}

export class ClusterNode implements ClusterPort {
  private bus: ClusterBus | null = null;
  private retained: RetainedSync | null = null;
  private broker: Broker | null = null;
  private connected = true;
  private stopStatus: (() => void) | null = null;
  private leases: NodeLeases | null = null;
  private readonly js: JetStreamClient;
  readonly registry: SessionRegistry;
  /** Persistent sessions, kept in the cluster: the broker's SessionStore in cluster mode. */
  readonly sessionStore: ClusterSessionStore;

  private constructor(
    readonly conn: ClusterNatsConnection,
    private readonly jsm: JetStreamManager,
    private readonly retainedKv: KV,
    private readonly sessionsKv: KV,
    private readonly nodesKv: KV,
    private readonly opts: ClusterNodeOptions,
  ) {
    this.js = jetstream(conn.nc);
    this.registry = new SessionRegistry(conn.nc, sessionsKv, opts.nodeId, { release: (clientId) => this.release(clientId) }, opts.logger);
    this.sessionStore = new ClusterSessionStore({
      registry: this.registry,
      streamEnd: async () => (await this.jsm.streams.info(MESSAGE_STREAM)).state.last_seq,
      onLost: (clientId) => void this.release(clientId),
      logger: opts.logger,
    });
  }

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
      const nodesKv = await kvm.create(NODES_BUCKET, { replicas, history: 1, storage: StorageType.File });
      return new ClusterNode(conn, jsm, retainedKv, sessionsKv, nodesKv, opts);
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
    this.broker = broker;
    this.bus = new ClusterBus({
      nc,
      js: this.js,
      nodeId: this.nodeId,
      logger,
      deliver: (message, scope) => broker.deliverFromCluster(message, scope),
      maxPayload: () => this.conn.features.maxPayload,
      connected: () => this.connected,
      ...(this.opts.storeDeadlineMs !== undefined ? { storeDeadlineMs: this.opts.storeDeadlineMs } : {}),
    });
    this.registry.start();
    this.retained = new RetainedSync(this.retainedKv, broker.retained, this.nodeId, logger, this.conn);
    await this.retained.start();
    const leases = new NodeLeases({
      conn: this.conn,
      nodes: this.nodesKv,
      sessions: this.sessionsKv,
      nodeId: this.nodeId,
      logger,
      target: { publish: (clientId, will) => publishDurableWill(broker, clientId, will) },
      ...(this.opts.leaseTtlMs !== undefined ? { leaseTtlMs: this.opts.leaseTtlMs } : {}),
    });
    this.leases = leases;
    this.registry.presumedDead = (node) => leases.presumedDead(node);
    await leases.start();
    this.stopStatus = this.conn.onStatus((event) => {
      if (event.type === 'disconnect' || event.type === 'close') this.connected = false;
      else if (event.type === 'reconnect') {
        this.connected = true;
        this.retained?.start().catch((err: unknown) => logger.error({ err: err instanceof Error ? err.message : String(err) }, 'retained messages could not be re-read after the reconnect'));
      }
    });
  }

  private get parts(): { bus: ClusterBus; retained: RetainedSync; broker: Broker } {
    if (this.bus === null || this.retained === null || this.broker === null) throw new Error('cluster node used before attach()');
    return { bus: this.bus, retained: this.retained, broker: this.broker };
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

  interestReady(): Promise<void> | null {
    return this.parts.bus.interestReady();
  }

  /**
   * A claim rides out a short NATS reconnect or a JetStream leader election (bounded by
   * `storeTimeoutSeconds`, at most 10 s), then fails closed: 0x88 Server unavailable.
   */
  async claim(clientId: string, cleanStart: boolean): Promise<ClusterClaim> {
    const { broker } = this.parts;
    const deadline = Date.now() + Math.min(this.opts.storeDeadlineMs ?? 15_000, MAX_CLAIM_WAIT_MS);
    let r: Awaited<ReturnType<SessionRegistry['claim']>>;
    for (let attempt = 0; ; attempt++) {
      if (!this.connected && !(await this.reconnected(deadline - Date.now()))) {
        return { ok: false, reasonCode: ReasonCode.ServerUnavailable, reason: 'cluster unavailable: NATS is disconnected' };
      }
      try {
        r = await this.registry.claim(clientId, !cleanStart);
        break;
      } catch (err) {
        if (Date.now() + 100 >= deadline) throw err;
        await new Promise((resolve) => setTimeout(resolve, Math.min(100 * 2 ** attempt, 1000)));
      }
    }
    if ('refused' in r) return { ok: false, reasonCode: r.reasonCode, reason: r.refused };
    const will = r.orphanWill;
    // The old connection is gone: its will goes out now, unless a resumed session keeps it
    // waiting for its delay, which this reconnect cancels [MQTT-3.1.3-9].
    if (will !== null && (will.delay === 0 || cleanStart)) publishDurableWill(broker, clientId, will);
    const durable = r.previous?.session;
    // This node holds the current session (it owned the client id last): nothing to resume.
    const current = r.previous?.node === this.nodeId && broker.sessions.has(clientId);
    if (durable === undefined || current) return { ok: true, epoch: r.epoch, resume: null };
    return { ok: true, epoch: r.epoch, resume: this.resumeOf(clientId, durable) };
  }

  /** Resolves true once NATS is connected again, or false after `ms`. */
  private reconnected(ms: number): Promise<boolean> {
    if (this.connected) return Promise.resolve(true);
    if (ms <= 0) return Promise.resolve(false);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        stop();
        resolve(false);
      }, ms);
      const stop = this.conn.onStatus((event) => {
        if (event.type !== 'reconnect') return;
        clearTimeout(timer);
        stop();
        resolve(true);
      });
    });
  }

  /** How the broker resumes a session another node (or this one before a restart) left. */
  private resumeOf(clientId: string, durable: DurableSession): ClusterResume {
    const record: SessionRecord = {
      clientId,
      protocolVersion: durable.protocolVersion,
      expiryInterval: durable.expiryInterval,
      disconnectedAt: durable.disconnectedAt,
      subscriptions: durable.subscriptions,
      ...(durable.identity !== undefined ? { identity: durable.identity } : {}),
    };
    const inflight = new Map(durable.outboundQos2.map((q) => [q.streamSeq, { packetId: q.packetId, state: q.state }]));
    return {
      record,
      incomingQos2: durable.incomingQos2,
      replay: (deliver) => {
        this.sessionStore.adopt(record, durable);
        return replaySession({
          conn: this.conn,
          js: this.js,
          jsm: this.jsm,
          multiFilter: this.conn.features.multiFilterConsumers,
          subscriptions: durable.subscriptions,
          cursor: durable.cursor,
          deliver: (m) => deliver(m, inflight.get(m.streamSeq ?? 0) ?? null),
        });
      },
    };
  }

  opened(clientId: string, epoch: number): boolean {
    return this.registry.opened(clientId, epoch);
  }

  released(clientId: string): void {
    this.registry.released(clientId);
    const broker = this.broker;
    // A clean session ends right after its connection: then this node keeps nothing of it.
    if (broker !== null) queueMicrotask(() => this.registry.disown(clientId, () => broker.sessions.has(clientId)));
  }

  recordWill(clientId: string, will: WillSpec | null, identity: ClientIdentity | undefined): void {
    const durableWill = will === null ? null : { message: will.message, delay: will.delay, expiryInterval: will.expiryInterval, ...(identity !== undefined ? { identity } : {}) };
    this.registry.write(clientId, { will: durableWill }, () => void this.release(clientId)).catch((err: unknown) => {
      this.opts.logger.warn({ clientId, err: err instanceof Error ? err.message : String(err) }, 'will not recorded in the cluster');
    });
  }

  /**
   * Another node owns `clientId` now: its connection here (if any) is closed with 0x8E,
   * the session's last state is written (a persistent session's cursor), and this node's
   * copy is dropped without a will: the session lives on where the client went.
   */
  private async release(clientId: string): Promise<void> {
    const broker = this.broker;
    if (broker === null) return;
    broker.disconnectWhere((c) => c.clientId === clientId, ReasonCode.SessionTakenOver, 'session taken over on another node');
    await this.sessionStore.flushClient(clientId);
    this.sessionStore.forget(clientId);
    const session = broker.sessions.get(clientId);
    if (session !== undefined && !session.online) broker.forgetSession(session);
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
      takeoversAnswered: this.registry.takeoversAnswered,
      liveNodes: (this.leases?.liveNodes().length ?? 0) + 1,
      nodeIds: [this.nodeId, ...(this.leases?.liveNodes() ?? []).filter((id) => id !== this.nodeId).sort()],
      orphanWillsPublished: this.leases?.orphanWillsPublished ?? 0,
    };
  }

  /** Leaves the cluster: writes the sessions' last state, drains what was published, then closes the connection. */
  async close(): Promise<void> {
    this.stopStatus?.();
    // The shutdown's wills and last acknowledgements, and the sessions' last state (bounded: NATS may be away).
    await Promise.race([Promise.all([this.bus?.settled(), this.sessionStore.drain()]), new Promise((r) => setTimeout(r, 3000).unref())]);
    await this.leases?.stop();
    this.retained?.stop();
    this.registry.stop();
    this.bus?.close();
    try {
      await this.conn.nc.flush();
    } catch {
      // Already disconnected: nothing more can be sent.
    }
    await this.conn.close();
  }
}

/** Publishes a will recorded in the cluster, authorized as the identity recorded with it. */
function publishDurableWill(broker: Broker, clientId: string, will: DurableWill): void {
  const client = will.identity !== undefined ? { clientId, principal: will.identity.principal, identity: will.identity } : null;
  broker.publishWillAs(clientId, client, { message: will.message, delay: will.delay, expiryInterval: will.expiryInterval });
}
