/**
 * The broker: sessions, routing, retained messages and wills. Owns: the PUBLISH path
 * from an accepted message to every matching session (retain → route → deliver; the
 * per-session merge and delivery live in fan-out.ts, the counters in broker-counters.ts),
 * session lifetime (takeover, expiry) and recovery from the store. Must not: touch sockets
 * or bytes (channels and transport do).
 */
import type { Clock } from '../core/clock.js';
import { systemClock } from '../core/clock.js';
import type { MqttConfig } from '../core/config.js';
import { defaultMqttConfig } from '../core/config.js';
import type { Logger } from '../core/logger.js';
import { silentLogger } from '../core/logger.js';
import { SecurityEvents } from '../core/security-events.js';
import { defaultLimitsConfig, type LimitsConfig } from '../core/limits-config.js';
import type { ProtocolVersion } from '../protocol/packets.js';
import { parseSharedFilter } from '../protocol/topic.js';
import type { Message } from './message.js';
import { newBrokerCounters, type BrokerCounters } from './broker-counters.js';
import { fanOut, type PublishOutcome } from './fan-out.js';
import type { AuthorizedClient, Authenticator, ClientActivity, ClientQuotaSource, ClusterDeliveryScope, ClusterPort, DeliveryAuthorizer, EnhancedAuthMethod, RetainStore, SessionRecord, SessionStore, StoredSubscription } from './ports.js';
import { RetainedMessages } from './retain/retained-messages.js';
import { ClientServices } from './client-services.js';
import { TopicRouter } from './router/topic-router.js';
import { KeepAliveWheel } from './channel/keepalive-wheel.js';
import { NEVER_EXPIRES, Session, type DeliveryDrop, type PendingWill, type SessionContext, type WillSpec } from './session/session.js';

export type { BrokerCounters } from './broker-counters.js';

/** Topics of the broker's own state (broker/sys): never sent to other nodes. */
const SYS_TOPIC_PREFIX = '$SYS/';
export type { Congestion, PublishOutcome } from './fan-out.js';

/** What the broker needs from a connected channel. */
export interface ChannelHandle {
  readonly clientId: string;
  /** True while the socket's write buffer is over its high-water mark. */
  readonly congested: boolean;
  /** Calls `cb` once when the socket drains or closes. */
  onDrain(cb: () => void): void;
  /** Disconnects the client (v5: with this reason code and reason string) and releases the session. */
  kick(reasonCode: number, reason?: string): void;
  /** Hands over the connection's will (and forgets it), for publishing at shutdown. */
  takeWill(): WillSpec | null;
  /** Who this connection authenticated as (null before its CONNECT was accepted). */
  readonly client: AuthorizedClient | null;
  /** Replaces the connection's publish quota from now on (null: unlimited); a throttle does this to a live client. */
  replacePublishQuota(quota: PublishQuota | null): void;
}

/** Why an authenticated client may not open a session. */
export interface AdmissionRefusal {
  reasonCode: number;
  reason: string;
}

/** Returns a refusal for a client that must not be admitted, or null. */
export type AdmissionGuard = (client: AuthorizedClient) => AdmissionRefusal | null;

export interface BrokerOptions {
  mqtt?: MqttConfig;
  store?: SessionStore | null;
  /** Where retained messages are kept durably (the SQLite store); absent: memory only (a cluster shares them itself). */
  retainStore?: RetainStore | null;
  authenticator: Authenticator;
  authorizer: DeliveryAuthorizer;
  enhancedAuth?: EnhancedAuthMethod[];
  clock?: Clock;
  logger?: Logger;
  nodeId?: string;
  /** Where security events go (audit, metrics, automatic bans); a private stream when absent. */
  events?: SecurityEvents;
  /** Protection against abuse (core/limits-config.ts); the secure defaults when absent. */
  limits?: LimitsConfig;
  /**
   * Builds a client's publish quota (security/limits/client-limits.ts, handed over by the
   * composition root); absent: no publish rate or bandwidth limit.
   */
  publishQuota?: PublishQuotaFactory | null;
  /** Role quotas (the rule engine); absent: every client gets limits.client. */
  quotas?: ClientQuotaSource | null;
  /**
   * The cluster (cluster/); absent on a single node. With one, messages and retained
   * messages travel through it, and the store keeps sessions only.
   */
  cluster?: ClusterPort | null;
  /** Behaviour detection's view of each client (ports.ts ClientActivity); absent: nobody is told. */
  activity?: ClientActivity | null;
}

/** Which per-client publish limit a PUBLISH exceeded. */
export type PublishLimit = 'publish-rate' | 'bandwidth';

/** One client's publish quota: messages per second and bytes per second (topic + payload). */
export interface PublishQuota {
  /** Charges one message of `bytes`: null when it fits, else the limit it exceeds (nothing is charged then). */
  take(now: number, bytes: number): PublishLimit | null;
  /** Milliseconds until a message of `bytes` fits (0 when it does now). */
  waitMs(now: number, bytes: number): number;
}

/** Builds the quota of one channel on its first PUBLISH; null: this client is not limited. */
export type PublishQuotaFactory = (now: number) => PublishQuota | null;

export class Broker {
  readonly config: MqttConfig;
  readonly clock: Clock;
  /** Keep-alive of every connection, on one timer. */
  readonly keepAlive: KeepAliveWheel;
  readonly logger: Logger;
  readonly authenticator: Authenticator;
  readonly authorizer: DeliveryAuthorizer;
  readonly enhancedAuth: Map<string, EnhancedAuthMethod>;
  readonly store: SessionStore | null;
  readonly nodeId: string;
  /** Security events (core/security-events.ts): emitted by channels, transport and guards. */
  readonly events: SecurityEvents;
  readonly limits: LimitsConfig;
  /** Per-client publish quotas; null when limits are off or none is configured. */
  readonly publishQuota: PublishQuotaFactory | null;
  /** Role quotas; null when limits are off or nothing provides them. */
  readonly quotas: ClientQuotaSource | null;
  /** The cluster; null on a single node. */
  readonly cluster: ClusterPort | null;
  /** Who is told what each client does (behaviour detection); null: nobody, one check per PUBLISH. */
  readonly activity: ClientActivity | null;
  readonly router = new TopicRouter<Session>();
  /** Services answering clients on their `$bastion/…` topics (provisioning, renewal). */
  readonly services = new ClientServices();
  readonly retained: RetainedMessages;
  readonly sessions = new Map<string, Session>();
  /** Which channel owns each online session. */
  readonly owners = new Map<Session, ChannelHandle>();
  /** Last known identity per session (also of offline and recovered ones), for delivery-time authorization. */
  readonly clients = new Map<Session, AuthorizedClient>();
  private readonly admissionGuards: AdmissionGuard[] = [];
  readonly counters: BrokerCounters = newBrokerCounters();
  shuttingDown = false;
  /** What every session shares: one object, not one per session. */
  private readonly sessionContext: SessionContext;

  constructor(opts: BrokerOptions) {
    this.config = opts.mqtt ?? defaultMqttConfig();
    this.clock = opts.clock ?? systemClock;
    this.keepAlive = new KeepAliveWheel(this.clock);
    this.logger = opts.logger ?? silentLogger;
    this.authenticator = opts.authenticator;
    this.authorizer = opts.authorizer;
    this.enhancedAuth = new Map((opts.enhancedAuth ?? []).map((m) => [m.name, m]));
    this.store = opts.store ?? null;
    this.nodeId = opts.nodeId ?? 'node-1';
    this.events = opts.events ?? new SecurityEvents(this.logger);
    this.limits = opts.limits ?? defaultLimitsConfig();
    this.publishQuota = this.limits.enabled ? (opts.publishQuota ?? null) : null;
    // Role quotas refine limits.client: with limits off there is nothing to refine.
    this.quotas = this.limits.enabled ? (opts.quotas ?? null) : null;
    this.cluster = opts.cluster ?? null;
    this.activity = opts.activity ?? null;
    // In a cluster the retained messages live in the cluster (cluster/retained-sync.ts
    // keeps this index), so it passes no retain store.
    this.retained = new RetainedMessages(opts.retainStore ?? null, this.clock);
    this.sessionContext = {
      clock: this.clock,
      store: this.store,
      maxQueued: this.config.maxQueued,
      counters: this.counters,
      onDrop: (session, cause) => this.deliveryDropped(session, cause),
    };
  }

  /** A limit dropped a delivery (queue full, too large for the client): one `limit.hit`, count 1. */
  private deliveryDropped(session: Session, cause: DeliveryDrop): void {
    const events = this.events;
    if (!events.active) return;
    const identity = this.clients.get(session)?.identity;
    events.emit({
      type: 'limit.hit',
      limit: cause,
      ...(identity !== undefined ? { listener: identity.listener, remoteAddress: identity.remoteAddress } : {}),
      clientId: session.clientId,
      action: 'dropped',
      count: 1,
    });
  }

  /** Loads persisted sessions, their messages and retained messages. */
  recover(): { sessions: number; messages: number; retained: number } {
    if (this.store === null) return { sessions: 0, messages: 0, retained: 0 };
    const state = this.store.load();
    const now = this.clock.now();
    if (this.cluster === null) this.retained.restore(state.retained.filter((m) => m.expiresAt === 0 || m.expiresAt > now));
    let messages = 0;
    for (const rec of state.sessions) {
      const disconnectedAt = rec.disconnectedAt === 0 ? now : rec.disconnectedAt;
      const remainingMs = rec.expiryInterval === NEVER_EXPIRES ? Infinity : disconnectedAt + rec.expiryInterval * 1000 - now;
      if (remainingMs <= 0) {
        this.store.deleteSession(rec.clientId);
        continue;
      }
      const session = this.adoptSession({ ...rec, disconnectedAt }, state.incomingQos2.get(rec.clientId) ?? []);
      this.armExpiry(session, remainingMs);
    }
    for (const o of state.outbound) {
      const session = this.sessions.get(o.clientId);
      if (session === undefined) continue;
      session.restore({ seq: o.seq, message: o.message, qos: o.qos, retainFlag: o.retainFlag, subscriptionIds: o.subscriptionIds, state: o.state, packetId: o.packetId });
      messages++;
    }
    return { sessions: this.sessions.size, messages, retained: this.retained.size };
  }

  /** A session from a record (store recovery, or the cluster), with its subscriptions routed; not owned by a connection. */
  adoptSession(rec: SessionRecord, incomingQos2: Iterable<number>): Session {
    const session = new Session(rec.clientId, rec.protocolVersion, rec.expiryInterval, this.sessionContext);
    session.disconnectedAt = rec.disconnectedAt;
    this.sessions.set(rec.clientId, session);
    // SECURITY: the stored identity authorizes deliveries while the client is away; a
    // session without one (an older store) gets nothing until its client reconnects.
    if (rec.identity !== undefined) {
      session.identity = rec.identity;
      this.clients.set(session, { clientId: rec.clientId, principal: rec.identity.principal, identity: rec.identity });
    }
    for (const sub of rec.subscriptions) this.addRoute(session, sub);
    for (const sub of rec.subscriptions) session.subscriptions.set(sub.filter, sub);
    for (const id of incomingQos2) session.incomingQos2.add(id);
    return session;
  }

  /** Drops a session from this node only: no will, no store write (its state lives on elsewhere). */
  forgetSession(session: Session): void {
    session.expiryTimer?.cancel();
    session.expiryTimer = null;
    session.pendingWill?.timer?.cancel();
    session.pendingWill = null;
    for (const sub of session.subscriptions.values()) this.removeRoute(session, sub.filter);
    session.subscriptions.clear();
    session.clearMessages();
    if (this.sessions.get(session.clientId) === session) this.sessions.delete(session.clientId);
    this.owners.delete(session);
    this.clients.delete(session);
  }

  /**
   * Opens the session for a newly admitted connection: takes over a connected owner
   * [MQTT-3.1.4-3], discards state on clean start [MQTT-3.1.2-4], or resumes it.
   */
  openSession(clientId: string, cleanStart: boolean, expiryInterval: number, version: ProtocolVersion, owner: ChannelHandle, client: AuthorizedClient): { session: Session; present: boolean } {
    let session = this.sessions.get(clientId);
    if (session !== undefined) {
      const previous = this.owners.get(session);
      if (previous !== undefined) previous.kick(0x8e /* SessionTakenOver */);
      // The old owner's close may have ended a session with expiry 0.
      session = this.sessions.get(clientId);
    }
    if (session !== undefined && cleanStart) {
      this.endSession(session, { publishWill: true });
      session = undefined;
    }
    let present = false;
    if (session === undefined) {
      session = new Session(clientId, version, expiryInterval, this.sessionContext);
      this.sessions.set(clientId, session);
    } else {
      present = true;
      session.expiryTimer?.cancel();
      session.expiryTimer = null;
      // A reconnect before the will delay passed cancels the will [MQTT-3.1.3-9].
      session.pendingWill?.timer?.cancel();
      session.pendingWill = null;
      const wasPersistent = session.persistent;
      session.expiryInterval = expiryInterval;
      session.protocolVersion = version;
      if (wasPersistent && !session.persistent) this.store?.deleteSession(clientId);
    }
    this.owners.set(session, owner);
    this.counters.connectionsAccepted++;
    if (this.owners.size > this.counters.connectedPeak) this.counters.connectedPeak = this.owners.size;
    this.clients.set(session, client);
    session.identity = client.identity;
    this.activity?.opened(client);
    // SECURITY: what was queued for a resumed session was authorized for its previous
    // client; it is checked against the identity that just connected before anything is sent.
    if (present) this.counters.deniedAtDelivery += session.dropQueued((m) => !this.authorizer.canReceive(client, m.topic));
    session.saveRecord();
    return { session, present };
  }

  /**
   * A connection closed. Schedules or publishes its will, and ends or keeps the session.
   * `will` is null after a normal DISCONNECT [MQTT-3.1.2-10].
   */
  closeSession(session: Session, owner: ChannelHandle, will: WillSpec | null): void {
    const activity = this.activity;
    if (activity !== null) {
      const client = owner.client;
      if (client !== null) activity.closed(client);
    }
    if (this.owners.get(session) !== owner) {
      // Taken over: the session belongs to the new connection now; only the will remains.
      if (will !== null && will.delay === 0) this.publishWill(session, will);
      return;
    }
    this.owners.delete(session);
    this.cluster?.released(session.clientId);
    session.detach(this.clock.now());
    let willPending = false;
    if (will !== null) {
      const delay = Math.min(will.delay, session.expiryInterval);
      if (delay === 0 || this.shuttingDown) this.publishWill(session, will);
      else {
        willPending = true;
        const pending: PendingWill = { will, timer: null };
        pending.timer = this.clock.setTimeout(() => {
          if (session.pendingWill === pending) {
            session.pendingWill = null;
            this.publishWill(session, pending.will);
            this.forgetClusterWill(session);
          }
        }, delay * 1000);
        session.pendingWill = pending;
      }
    }
    // A delayed will stays recorded in the cluster until it is published (by this node, or a survivor).
    if (!willPending) this.forgetClusterWill(session);
    if (!session.persistent) {
      this.endSession(session, { publishWill: true });
      return;
    }
    session.saveRecord();
    if (session.expiryInterval !== NEVER_EXPIRES) this.armExpiry(session, session.expiryInterval * 1000);
  }

  /** The will recorded in the cluster for this session's connection is done with. */
  private forgetClusterWill(session: Session): void {
    if (!session.willInCluster) return;
    session.willInCluster = false;
    this.cluster?.recordWill(session.clientId, null, undefined);
  }

  /** Ends a session: publishes a pending will, removes subscriptions and stored state. */
  endSession(session: Session, opts: { publishWill: boolean }): void {
    session.expiryTimer?.cancel();
    session.expiryTimer = null;
    const will = session.pendingWill;
    session.pendingWill = null;
    will?.timer?.cancel();
    for (const sub of session.subscriptions.values()) this.removeRoute(session, sub.filter);
    session.subscriptions.clear();
    session.clearMessages();
    if (this.sessions.get(session.clientId) === session) this.sessions.delete(session.clientId);
    this.owners.delete(session);
    this.store?.deleteSession(session.clientId);
    if (opts.publishWill && will !== null) this.publishWill(session, will.will);
    this.forgetClusterWill(session);
    this.clients.delete(session);
  }

  private armExpiry(session: Session, ms: number): void {
    if (!Number.isFinite(ms)) return;
    session.expiryTimer?.cancel();
    // Timers beyond ~24.8 days overflow setTimeout; re-arm in steps.
    const step = Math.min(ms, 2_000_000_000);
    session.expiryTimer = this.clock.setTimeout(() => {
      if (step < ms) this.armExpiry(session, ms - step);
      else if (!session.online) this.endSession(session, { publishWill: true });
    }, step);
  }

  /** Adds a subscription to the router. Returns true when it did not exist before. */
  addRoute(session: Session, sub: StoredSubscription): boolean {
    const shared = parseSharedFilter(sub.filter);
    const entry = { subscriber: session, options: sub };
    const added = shared !== null ? this.router.add(shared.filter, entry, shared.group) : this.router.add(sub.filter, entry);
    // Every local subscription counts once with the cluster, which asks NATS for the filter's interest.
    if (added) this.cluster?.subscribe(shared?.filter ?? sub.filter, shared?.group ?? null);
    return added;
  }

  removeRoute(session: Session, filter: string): boolean {
    const shared = parseSharedFilter(filter);
    const removed = shared !== null ? this.router.remove(shared.filter, session.clientId, shared.group) : this.router.remove(filter, session.clientId);
    if (removed) this.cluster?.unsubscribe(shared?.filter ?? filter, shared?.group ?? null);
    return removed;
  }

  private publishWill(session: Session, will: WillSpec): void {
    this.publishWillAs(session.clientId, this.clients.get(session) ?? null, will);
  }

  /**
   * Publishes a will as `client` (a session's last identity; in a cluster also the identity
   * recorded with the will of a node that died). SECURITY: a will is a publish like any
   * other: authorized at CONNECT and again when it goes out (the rules may have changed
   * since); without an identity it is not published.
   */
  publishWillAs(clientId: string, client: AuthorizedClient | null, will: WillSpec): boolean {
    const verdict = client === null ? null : this.authorizer.authorizePublish(client, will.message.topic, will.message.qos, will.message.retain);
    if (verdict === null || !verdict.ok) {
      this.logger.warn({ clientId, topic: will.message.topic, reason: verdict?.ok === false ? verdict.reason : 'no identity' }, 'will message denied by authorization');
      return false;
    }
    const expiresAt = will.expiryInterval > 0 ? this.clock.now() + will.expiryInterval * 1000 : 0;
    // In a cluster nobody waits for the will's store; a failure is logged, not thrown.
    this.publish({ ...will.message, expiresAt }).stored?.catch((err: unknown) => {
      this.logger.error({ clientId, topic: will.message.topic, err: err instanceof Error ? err.message : String(err) }, 'will message could not be sent through the cluster');
    });
    return true;
  }

  /**
   * Publishes an authorized message: retained store update, then one delivery per matching
   * session (fan-out.ts: overlapping subscriptions merged, authorized again at delivery).
   * `levels`: the topic split at '/', when the caller has it (a publisher's channel keeps
   * its last topic's).
   */
  publish(message: Message, levels?: readonly string[]): PublishOutcome {
    this.counters.published++;
    // $SYS is this node's own state: it stays on this node, also in a cluster.
    if (this.cluster !== null && !message.topic.startsWith(SYS_TOPIC_PREFIX)) {
      // Every node (this one too) delivers it when it comes back through the cluster, and
      // the cluster stores the retained copy: who matched is not known here.
      const retain = message.retain && this.config.retainAvailable;
      return { matched: -1, congested: null, stored: this.cluster.publish(retain === message.retain ? message : { ...message, retain }) };
    }
    if (message.retain && this.config.retainAvailable) this.retained.update(message);
    return fanOut(this, message, undefined, levels);
  }

  /**
   * A message that came through the cluster (from any node, this one included): delivered
   * to the local subscribers `scope` names. The retained copy was stored by its ingress node.
   */
  deliverFromCluster(message: Message, scope: ClusterDeliveryScope): PublishOutcome {
    return fanOut(this, message, scope);
  }

  /**
   * Adds a check every authenticated client passes before its session opens (a revoked
   * certificate, a ban). It closes the gap between a sweep with `disconnectWhere` and a
   * CONNECT whose TLS handshake completed just before the sweep.
   */
  addAdmissionGuard(guard: AdmissionGuard): void {
    this.admissionGuards.push(guard);
  }

  /** The first guard's refusal of `client`, or null when every guard admits it. */
  admissionRefusal(client: AuthorizedClient): AdmissionRefusal | null {
    for (const guard of this.admissionGuards) {
      const refusal = guard(client);
      if (refusal !== null) return refusal;
    }
    return null;
  }

  /**
   * Disconnects every connected client that `match` selects (an administrative action:
   * v5 clients get DISCONNECT with `reasonCode` and `reason`). Returns their client ids.
   */
  disconnectWhere(match: (client: AuthorizedClient) => boolean, reasonCode: number, reason: string): string[] {
    const kicked: string[] = [];
    for (const [session, owner] of [...this.owners]) {
      const client = this.clients.get(session);
      if (client === undefined || !match(client)) continue;
      kicked.push(owner.clientId);
      owner.kick(reasonCode, reason);
    }
    return kicked;
  }

  /** Graceful stop: wills first (while subscribers are still connected), then disconnects. */
  shutdown(): void {
    this.shuttingDown = true;
    const owners = [...this.owners.values()];
    // Wills go out while their subscribers are still connected, then everyone is told.
    for (const owner of owners) {
      const will = owner.takeWill();
      const session = this.sessions.get(owner.clientId);
      if (will !== null && session !== undefined) this.publishWill(session, will);
    }
    for (const owner of owners) owner.kick(0x8b /* ServerShuttingDown */);
    for (const session of this.sessions.values()) {
      const will = session.pendingWill;
      if (will !== null) {
        session.pendingWill = null;
        will.timer?.cancel();
        this.publishWill(session, will.will);
      }
      session.expiryTimer?.cancel();
    }
    this.keepAlive.stop();
    this.store?.flush();
  }
}
