/**
 * The ports the broker needs from the outside world. Adapters (memory, sqlite, redis)
 * implement them; only the composition root (server/) picks one.
 */
import type { Message } from './message.js';
import type { QoS, ProtocolVersion } from '../protocol/packets.js';
import type { PeerCertificate } from './channel/connection-port.js';
import type { TlsSummary } from '../core/security-events.js';
import type { LimitsConfig } from '../core/limits-config.js';
import type { PublishQuota } from './broker.js';
import type { WillSpec } from './session/session.js';

/** Options of one subscription, as granted. */
export interface SubscriptionOptions {
  qos: QoS;
  noLocal: boolean;
  retainAsPublished: boolean;
  retainHandling: 0 | 1 | 2;
  /** v5 subscription identifier, 0 when absent. */
  subscriptionId: number;
}

export interface StoredSubscription extends SubscriptionOptions {
  /** The filter as the client sent it (including any `$share/group/` prefix). */
  filter: string;
}

/** The durable part of a session: what survives a restart. */
export interface SessionRecord {
  clientId: string;
  protocolVersion: ProtocolVersion;
  /** Seconds; 0xFFFFFFFF never expires. */
  expiryInterval: number;
  /** ms since epoch when the client disconnected; 0 while connected. */
  disconnectedAt: number;
  subscriptions: StoredSubscription[];
  /**
   * Who the client was when it last connected, so delivery to the session while it is
   * offline (also after a restart) is authorized with its real identity. Absent: unknown
   * (deliveries are denied until the client connects again).
   */
  identity?: ClientIdentity;
}

/** State of an outbound message held for a persistent session. */
export type OutboundState = 'queued' | 'publish-sent' | 'pubrel-sent';

/** One outbound message owned by a session, as stored. */
export interface StoredOutbound {
  /** Per-store unique, increasing sequence number: the delivery order. */
  seq: number;
  clientId: string;
  message: Message;
  /** QoS granted for this delivery (may be lower than message.qos). */
  qos: QoS;
  /** Retain flag as it will be sent. */
  retainFlag: boolean;
  subscriptionIds: number[];
  state: OutboundState;
  /** Packet id once sent; 0 while queued. */
  packetId: number;
}

export interface PersistedState {
  sessions: SessionRecord[];
  outbound: StoredOutbound[];
  /** clientId → packet ids of QoS 2 PUBLISHes received and not yet released. */
  incomingQos2: Map<string, number[]>;
  retained: Message[];
}

/**
 * Durable storage of persistent sessions. Writes are recorded synchronously and made
 * durable in batches; `afterFlush` calls back once everything recorded so far is durable.
 * Acknowledgements to publishers wait on it.
 */
export interface SessionStore {
  load(): PersistedState;
  saveSession(record: SessionRecord): void;
  deleteSession(clientId: string): void;
  addOutbound(entry: StoredOutbound): void;
  updateOutbound(clientId: string, seq: number, state: OutboundState, packetId: number): void;
  removeOutbound(clientId: string, seq: number): void;
  addIncomingQos2(clientId: string, packetId: number): void;
  removeIncomingQos2(clientId: string, packetId: number): void;
  /** The next sequence number for addOutbound (continues after a restart). */
  nextSeq(): number;
  /** True when writes are waiting to be made durable. */
  readonly dirty: boolean;
  /** Calls `cb` when all writes recorded before this call are durable. */
  afterFlush(cb: () => void): void;
  /** Makes all recorded writes durable now. */
  flush(): void;
  close(): void;
}

/** Durable retained messages. Same batching contract as SessionStore. */
export interface RetainStore {
  /** Stores or, with `null`, clears the retained message of `topic`. */
  setRetained(topic: string, message: Message | null): void;
}

/** Who the client is, as established by the transport and authentication. */
export interface ClientIdentity {
  /** The authenticated principal (the mapped certificate identity, the PSK identity, a user name); null for anonymous. */
  principal: string | null;
  /** How it was established: by the transport (certificate, psk) or by an authentication provider. */
  method: AuthMethodName;
  /** The authenticated user name (password, JWT or SCRAM login); absent otherwise. */
  username?: string;
  /** Verified client certificate details, when there is one. */
  certificate?: PeerCertificate;
  /** The TLS-PSK identity, when the handshake used one. */
  pskIdentity?: string;
  /** The negotiated TLS parameters (version, cipher, key-exchange group); absent on plaintext. */
  tls?: TlsSummary;
  remoteAddress: string;
  listener: string;
}

/** Every way a client can be authenticated. */
export type AuthMethodName = 'certificate' | 'psk' | 'anonymous' | 'password' | 'jwt' | 'scram' | 'provision-token';

export interface AuthRequest {
  clientId: string;
  username: string | undefined;
  password: Buffer | undefined;
  identity: ClientIdentity;
  allowAnonymous: boolean;
}

/**
 * What authentication decided. On success, `method`/`username` (when set) replace the
 * transport's view in ClientIdentity (certificate details are kept), and `expiresAt`
 * (ms since the epoch) closes the session when the credential expires.
 */
export type AuthResult =
  | { ok: true; principal: string | null; method?: AuthMethodName; username?: string; expiresAt?: number }
  /** `provider`: who refused (a provider name, or `chain` when none claimed the client), for audit and metrics. */
  | { ok: false; reasonCode: number; reason: string; provider?: string };

/** Decides whether a CONNECT is admitted. May be async (JWKS, remote stores). */
export interface Authenticator {
  authenticate(req: AuthRequest): AuthResult | Promise<AuthResult>;
}

/** The answer to a PUBLISH (or a will): allowed, or refused with a PUBACK reason code. */
export type PublishAuthorization = { ok: true } | { ok: false; reasonCode: number; reason: string };

/** The one answer for every allowed PUBLISH: an authorizer returns it rather than a new object per message. */
export const PUBLISH_ALLOWED: PublishAuthorization = Object.freeze({ ok: true });

/** The answer to one SUBSCRIBE filter: granted (at most `qos`), or refused. */
export type SubscribeAuthorization = { ok: true; qos: QoS } | { ok: false; reason: string };

/** Decides what an admitted client may do. SECURITY: must fail closed. */
export interface Authorizer {
  /** A PUBLISH of `qos` (and the retain flag) to `topic`, or a will at CONNECT and when it is published. */
  authorizePublish(client: AuthorizedClient, topic: string, qos: QoS, retain: boolean): PublishAuthorization;
  /** A SUBSCRIBE filter requested at `qos`; the grant may be lower (a rule's maxQos). */
  authorizeSubscribe(client: AuthorizedClient, filter: string, qos: QoS): SubscribeAuthorization;
}

export interface AuthorizedClient {
  clientId: string;
  principal: string | null;
  identity: ClientIdentity;
}

/**
 * Told what each client does, for behaviour detection (defender/, issue 15). Called on the
 * publish and subscribe paths and at every session open and close: implementations must
 * be O(1), must not throw and must not call back into the broker. Deliveries are not told
 * one by one (a fan-out to thousands would pay per subscriber): they are counted on the
 * session and read in bulk with BrokerApi.drainDeliveries.
 */
export interface ClientActivity {
  /** A session opened for `client` (CONNACK success is being sent). */
  opened(client: AuthorizedClient): void;
  /** A connection's session closed, for any reason (also a takeover's old connection). */
  closed(client: AuthorizedClient): void;
  /** `client` published to `topic` and authorization let it through; `bytes` = topic + payload. */
  published(client: AuthorizedClient, topic: string, bytes: number): void;
  /** `client` asked to subscribe to `filter` (granted or not: a denial is also an authz.denied event). */
  subscribed(client: AuthorizedClient, filter: string): void;
}

/** Extends Authorizer with the delivery-time re-check [ARCHITECTURE idea 4]. */
export interface DeliveryAuthorizer extends Authorizer {
  canReceive(client: AuthorizedClient, topic: string): boolean;
}

/**
 * An MQTT 5 enhanced authentication method (AUTH packet exchange). Methods are registered
 * by name; a CONNECT naming an unknown method is refused with BadAuthenticationMethod.
 */
export interface EnhancedAuthMethod {
  readonly name: string;
  /** First step, from CONNECT's Authentication Data; later steps from AUTH packets. */
  step(state: EnhancedAuthState, data: Buffer | undefined): EnhancedAuthStep | Promise<EnhancedAuthStep>;
}

export interface EnhancedAuthState {
  clientId: string;
  identity: ClientIdentity;
  /** Method-private state carried between steps. */
  scratch: Map<string, unknown>;
}

export type EnhancedAuthStep =
  | { kind: 'continue'; data: Buffer }
  | { kind: 'success'; principal: string; data?: Buffer; method?: AuthMethodName; username?: string; expiresAt?: number }
  /** `provider`: the configured provider name (scram, jwt), for audit and metrics; the method name when absent. */
  | { kind: 'failure'; reasonCode: number; reason: string; provider?: string };

/**
 * A client's own limits, from a role quota bound to it (security/authz/quota.ts): they
 * replace `limits.client` (and `mqtt.maxQueued`) for that client's connection.
 */
export interface ClientQuota {
  /** Its publish-rate and bandwidth buckets (full when made). */
  publish: PublishQuota;
  maxSubscriptions: number;
  /** Messages its session may queue; absent: mqtt.maxQueued. */
  maxQueued?: number;
}

/**
 * Where a client's role quota is found (the rule engine is one). Asked once per
 * connection, when its session opens: no lookup per message.
 */
export interface ClientQuotaSource {
  /** The quota of `client`; undefined when no role with a quota is bound to it (the broker-wide limits apply). */
  clientQuota(client: AuthorizedClient, defaults: LimitsConfig['client'], now: number): ClientQuota | undefined;
}

/** What a node needs to resume a persistent session another node (or this one before a restart) left. */
export interface ClusterResume {
  /** The session as its last owner left it: subscriptions, identity, expiry. */
  record: SessionRecord;
  /** QoS 2 packet ids received from the client and not yet released. */
  incomingQos2: number[];
  /**
   * Reads what the session missed from the cluster's stream, in order, into `deliver`
   * (with the packet id and state of a QoS 2 exchange already in progress); resolves with
   * the last stream sequence read.
   */
  replay(deliver: (message: Message, inflight: { packetId: number; state: OutboundState } | null) => void): Promise<number>;
}

/** The answer to a cluster claim on a client id: this node may open the session (with this epoch), or not. */
export type ClusterClaim = { ok: true; epoch: number; resume: ClusterResume | null } | { ok: false; reasonCode: number; reason: string };

/** Which local subscribers a message that came through the cluster goes to. */
export type ClusterDeliveryScope =
  /** Every plain (non-shared) subscription that matches. */
  | { kind: 'plain' }
  /** One member of shared group `group` subscribed with `filter` (the cluster balanced the group to this node). */
  | { kind: 'shared'; group: string; filter: string };

/**
 * The cluster (issue 12): other Bastion nodes, reached through NATS. Absent on a single
 * node, which then pays nothing for it. With a cluster, an accepted PUBLISH goes to the
 * cluster (every node, this one included, delivers it to its own subscribers), retained
 * messages are shared, and a client id is owned by one node at a time, fenced by an epoch.
 */
export interface ClusterPort {
  /**
   * Sends an accepted message to every node (this one too). Settles when it is stored
   * (QoS 1/2, retained) or sent (QoS 0); rejects when it could not be, and the publisher
   * must not be told it was accepted.
   */
  publish(message: Message): Promise<void>;
  /** Why `topic` cannot travel through the cluster (e.g. too long for a subject), or null. */
  topicRefusal(topic: string): string | null;
  /** Why `filter` (without any `$share/group/` prefix) cannot be subscribed cluster-wide, or null. */
  filterRefusal(filter: string): string | null;
  /** A filter (of shared group `group`, or plain with null) gained a local subscription. */
  subscribe(filter: string, group: string | null): void;
  /** A filter lost a local subscription. */
  unsubscribe(filter: string, group: string | null): void;
  /**
   * Settles once NATS has every subscription this node asked for so far (null: nothing new
   * to wait for). SUBACK waits for it, so a message published anywhere after the client saw
   * SUBACK reaches it.
   */
  interestReady(): Promise<void> | null;
  /**
   * Claims `clientId` for this node before its session opens; older owners on other nodes
   * are told to let go. With `cleanStart` the session the cluster kept for it is discarded
   * [MQTT-3.1.2-4]; otherwise the claim says how to resume it.
   */
  claim(clientId: string, cleanStart: boolean): Promise<ClusterClaim>;
  /** The session claimed with `epoch` is open here; false when a newer claim elsewhere already fenced it (take it over). */
  opened(clientId: string, epoch: number): boolean;
  /** The connection that owned `clientId` on this node left. */
  released(clientId: string): void;
  /**
   * The will a connection of `clientId` holds now (null: none any more), kept in the cluster
   * so that a survivor publishes it if this node dies [MQTT-3.1.2-8].
   */
  recordWill(clientId: string, will: WillSpec | null, identity: ClientIdentity | undefined): void;
}
