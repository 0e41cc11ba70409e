/**
 * After any successful authentication: opens (or takes over, or resumes) the session and
 * answers CONNACK with the capabilities the broker announces.
 */
import type { ConnackPacket, ConnectPacket } from '../../../protocol/packets.js';
import { ReasonCode } from '../../../protocol/reason-codes.js';
import type { AuthorizedClient, ClientIdentity } from '../../ports.js';
import { NEVER_EXPIRES } from '../../session/session.js';
import type { Channel } from '../channel.js';
import { resumeFromCluster } from '../../cluster-resume.js';
import type { WillSpec } from '../../session/session.js';
import { ADMISSION_STAGE, emitAccepted, emitDenied } from '../security-emit.js';

/** State kept from CONNECT until the session opens. */
export interface PendingConnect {
  packet: ConnectPacket;
  assignedClientId: string | null;
  /** The will, checked when CONNECT arrived (before any authentication ran). */
  will: WillSpec | null;
}

/** Opens the session and answers CONNACK. Called after any successful authentication. */
/** `expiresAt`: when the credential that admitted the client expires (a JWT), if ever. */
export function openSession(ch: Channel, pending: PendingConnect, identity: ClientIdentity, authData: Buffer | undefined, expiresAt: number | undefined): void {
  const { packet } = pending;
  const cfg = ch.broker.config;
  const v5 = ch.version === 5;

  let keepAlive = packet.keepalive ?? 0;
  let serverKeepAlive: number | undefined;
  if (v5 && (keepAlive > cfg.maxKeepAlive || (keepAlive === 0 && cfg.maxKeepAlive < 65535))) {
    keepAlive = cfg.maxKeepAlive;
    serverKeepAlive = keepAlive;
  }

  let expiry: number;
  let expiryAnnounced: number | undefined;
  if (v5) {
    const requested = packet.properties?.sessionExpiryInterval ?? 0;
    expiry = Math.min(requested, cfg.sessionExpiryMax);
    if (expiry !== requested) expiryAnnounced = expiry;
  } else {
    expiry = packet.clean ? 0 : cfg.sessionExpiryMax === 0 ? 0 : cfg.sessionExpiryMax;
  }
  if (expiry > NEVER_EXPIRES) expiry = NEVER_EXPIRES;

  const client = { clientId: ch.clientId, principal: identity.principal, identity };
  const refusal = ch.broker.admissionRefusal(client);
  if (refusal !== null) {
    ch.refuseConnect(refusal.reasonCode, refusal.reason, ADMISSION_STAGE);
    return;
  }
  // SECURITY: the will is a publish: authorized now, with the identity just established
  // (Mosquitto refuses such a CONNECT too), and again when it is published.
  if (pending.will !== null) {
    const will = pending.will.message;
    const verdict = ch.broker.authorizer.authorizePublish(client, will.topic, will.qos, will.retain);
    if (!verdict.ok) {
      ch.broker.logger.info({ clientId: ch.clientId, topic: will.topic, reason: verdict.reason }, 'will denied at CONNECT');
      emitDenied(ch, 'will', will.topic, verdict.reason, client.principal);
      ch.refuseConnect(ReasonCode.NotAuthorized, `will topic not authorized: ${verdict.reason}`);
      return;
    }
  }
  const cluster = ch.broker.cluster;
  if (cluster === null) {
    admit(ch, pending, identity, client, { keepAlive, serverKeepAlive, expiry, expiryAnnounced, authData, expiresAt }, null);
    return;
  }
  // SECURITY: in a cluster the client id is claimed first, so one node at a time owns it
  // (fenced by an epoch); without the cluster no session opens (fail closed).
  const terms = { keepAlive, serverKeepAlive, expiry, expiryAnnounced, authData, expiresAt };
  // Packets a client sends before CONNACK wait for the session [MQTT-3.1.4] (v5 allows it).
  ch.state = 'authenticating';
  ch.holdIncoming();
  void (async () => {
    const claim = await cluster.claim(ch.clientId, packet.clean !== false);
    if (!claim.ok) return claim;
    // A session another node left is resumed here, its missed messages replayed, before CONNACK.
    if (claim.resume !== null) await resumeFromCluster(ch.broker, claim.resume);
    return claim;
  })().then(
    (claim) => {
      if (ch.state === 'closed') return;
      if (!claim.ok) {
        ch.refuseConnect(claim.reasonCode, claim.reason);
        return;
      }
      try {
        admit(ch, pending, identity, client, terms, claim.epoch);
      } catch (err) {
        ch.fail(err);
      }
      ch.releaseIncoming();
    },
    (err: unknown) => {
      if (ch.state === 'closed') return;
      ch.refuseConnect(ReasonCode.ServerUnavailable, `cluster unavailable: ${err instanceof Error ? err.message : String(err)}`);
    },
  );
}

/** What openSession worked out from CONNECT, for the admission that follows it. */
interface SessionTerms {
  keepAlive: number;
  serverKeepAlive: number | undefined;
  expiry: number;
  expiryAnnounced: number | undefined;
  authData: Buffer | undefined;
  expiresAt: number | undefined;
}

/** Opens the session (in a cluster: with the epoch of its claim) and answers CONNACK. */
function admit(ch: Channel, pending: PendingConnect, identity: ClientIdentity, client: AuthorizedClient, terms: SessionTerms, epoch: number | null): void {
  const { packet } = pending;
  const cfg = ch.broker.config;
  const v5 = ch.version === 5;
  const { keepAlive, serverKeepAlive, expiry, expiryAnnounced, authData, expiresAt } = terms;
  ch.will = pending.will;
  ch.client = client;
  const { session, present } = ch.broker.openSession(ch.clientId, packet.clean !== false, expiry, ch.version, ch, client);
  ch.session = session;
  // The client's role quota, chosen once per connection (no lookup per message). Only a
  // client that has one builds its limits now; the rest keep limits.client, built on need.
  const own = ch.broker.quotas?.clientQuota(client, ch.broker.limits.client, ch.broker.clock.now());
  session.maxQueued = own?.maxQueued ?? ch.broker.config.maxQueued;
  if (own !== undefined) ch.limits.adopt(own);

  const connack: ConnackPacket = { cmd: 'connack', sessionPresent: present };
  if (v5) {
    connack.reasonCode = ReasonCode.Success;
    const p: NonNullable<ConnackPacket['properties']> = {
      receiveMaximum: cfg.maxInflight,
      maximumPacketSize: ch.conn.maxPacketSize ?? cfg.maxPacketSize,
      topicAliasMaximum: cfg.topicAliasMax,
      wildcardSubscriptionAvailable: true,
      subscriptionIdentifiersAvailable: true,
      sharedSubscriptionAvailable: true,
    };
    if (cfg.maxQos < 2) p.maximumQoS = cfg.maxQos;
    if (!cfg.retainAvailable) p.retainAvailable = false;
    if (pending.assignedClientId !== null) p.assignedClientIdentifier = pending.assignedClientId;
    if (serverKeepAlive !== undefined) p.serverKeepAlive = serverKeepAlive;
    if (expiryAnnounced !== undefined) p.sessionExpiryInterval = expiryAnnounced;
    if (ch.enhancedAuth !== null) {
      p.authenticationMethod = ch.enhancedAuth.method;
      if (authData !== undefined) p.authenticationData = authData;
    }
    const serviceProperties = ch.broker.services.connackProperties(client);
    if (serviceProperties !== null) p.userProperties = serviceProperties;
    connack.properties = p;
  } else {
    connack.returnCode = 0;
  }
  ch.send(connack);
  ch.broker.services.connected(client);
  emitAccepted(ch, identity);
  ch.connected(keepAlive);
  ch.armCredentialExpiry(expiresAt);
  ch.broker.logger.debug({ clientId: ch.clientId, principal: identity.principal, remote: identity.remoteAddress, present }, 'client connected');
  // Resend in-flight messages and drain the queue only after CONNACK [MQTT-4.4.0-1].
  session.attach(ch);
  if (epoch !== null) {
    const cluster = ch.broker.cluster!;
    // A newer claim on another node arrived while this one was opening: it owns the client id now.
    if (!cluster.opened(ch.clientId, epoch)) ch.kick(ReasonCode.SessionTakenOver, 'session taken over on another node');
    else if (ch.will !== null) {
      // Kept in the cluster, so that a survivor publishes it if this node dies.
      session.willInCluster = true;
      cluster.recordWill(ch.clientId, ch.will, client.identity);
    }
  }
}
