/**
 * CONNECT → CONNACK: validation, authentication (plain or enhanced), session open or
 * takeover, and the v5 capabilities the broker announces.
 */
import { ProtocolViolation } from '../../../core/errors.js';
import type { ConnectPacket, ConnackPacket, ProtocolVersion } from '../../../protocol/packets.js';
import { ReasonCode } from '../../../protocol/reason-codes.js';
import { isValidTopicName } from '../../../protocol/topic.js';
import { decodedStringIsFaithful } from '../../../protocol/utf8.js';
import type { AuthResult, ClientIdentity } from '../../ports.js';
import { NEVER_EXPIRES } from '../../session/session.js';
import type { Channel } from '../channel.js';
import { messageFromWill } from './message-properties.js';
import { runEnhancedAuthStep } from './session-control.js';

/** State kept from CONNECT until the session opens. */
export interface PendingConnect {
  packet: ConnectPacket;
  assignedClientId: string | null;
}

export function handleConnect(ch: Channel, packet: ConnectPacket, frame: Buffer): void {
  const version = (packet.protocolVersion ?? 4) as ProtocolVersion;
  ch.version = version;
  const props = packet.properties;
  if (version === 5 && props !== undefined) {
    if (props.receiveMaximum === 0) throw new ProtocolViolation(ReasonCode.ProtocolError, 'Receive Maximum of 0');
    if (props.maximumPacketSize === 0) throw new ProtocolViolation(ReasonCode.ProtocolError, 'Maximum Packet Size of 0');
    if (props.requestProblemInformation === false) ch.problemInfo = false;
    if (props.receiveMaximum !== undefined) ch.sendQuota = props.receiveMaximum;
    if (props.maximumPacketSize !== undefined) ch.clientMaxPacketSize = props.maximumPacketSize;
    if (props.topicAliasMaximum !== undefined && props.topicAliasMaximum > 0) {
      ch.clientTopicAliasMax = props.topicAliasMaximum;
      ch.outAliases = new Map();
    }
  }
  if (version !== 5 && ch.sendQuota > ch.broker.config.maxInflight) ch.sendQuota = ch.broker.config.maxInflight;

  let clientId = packet.clientId;
  if (!decodedStringIsFaithful(clientId, frame)) throw new ProtocolViolation(ReasonCode.MalformedPacket, 'client identifier is not valid UTF-8');
  let assigned: string | null = null;
  if (clientId.length === 0) {
    // v3.1.1 allows an empty id only with a clean session [MQTT-3.1.3-7] [MQTT-3.1.3-8].
    if (version !== 5 && !packet.clean) {
      ch.refuseConnect(ReasonCode.ClientIdentifierNotValid, 'an empty client identifier needs a clean session');
      return;
    }
    assigned = `bastion-${globalThis.crypto.randomUUID().replace(/-/g, '').slice(0, 20)}`;
    clientId = assigned;
  }
  if (clientId.length > 65535) {
    ch.refuseConnect(ReasonCode.ClientIdentifierNotValid, 'client identifier too long');
    return;
  }
  ch.clientId = clientId;

  if (packet.username !== undefined && !decodedStringIsFaithful(packet.username, frame)) {
    throw new ProtocolViolation(ReasonCode.MalformedPacket, 'user name is not valid UTF-8');
  }
  if (packet.will !== undefined) {
    const will = packet.will;
    if (!decodedStringIsFaithful(will.topic, frame) || !isValidTopicName(will.topic)) {
      ch.refuseConnect(ReasonCode.TopicNameInvalid, 'invalid will topic');
      return;
    }
    if ((will.qos ?? 0) > ch.broker.config.maxQos) {
      ch.refuseConnect(ReasonCode.QosNotSupported, `will QoS above the maximum of ${ch.broker.config.maxQos}`);
      return;
    }
    if (will.retain === true && !ch.broker.config.retainAvailable) {
      ch.refuseConnect(ReasonCode.RetainNotSupported, 'retained messages are not available');
      return;
    }
  }

  const identity: ClientIdentity = {
    principal: ch.conn.peer?.commonName ?? null,
    method: ch.conn.peer !== null ? 'certificate' : 'anonymous',
    remoteAddress: ch.conn.remoteAddress,
    listener: ch.conn.listenerName,
    ...(ch.conn.peer !== null ? { certificate: ch.conn.peer } : {}),
  };
  const pending: PendingConnect = { packet, assignedClientId: assigned };

  const method = version === 5 ? props?.authenticationMethod : undefined;
  if (method !== undefined) {
    const m = ch.broker.enhancedAuth.get(method);
    if (m === undefined) {
      ch.refuseConnect(ReasonCode.BadAuthenticationMethod, `authentication method ${method} is not supported`);
      return;
    }
    ch.state = 'authenticating';
    ch.enhancedAuth = { method, state: { clientId, identity, scratch: new Map() } };
    runEnhancedAuthStep(ch, props?.authenticationData, pending);
    return;
  }

  const result = ch.broker.authenticator.authenticate({
    clientId,
    username: packet.username,
    password: packet.password,
    identity,
    allowAnonymous: ch.conn.allowAnonymous,
  });
  if (result instanceof Promise) {
    ch.state = 'authenticating';
    ch.holdIncoming();
    result.then(
      (r) => {
        completeAuthentication(ch, r, pending, identity);
        ch.releaseIncoming();
      },
      (err: unknown) => {
        // SECURITY: a failing provider means deny.
        ch.broker.logger.error({ clientId, err: String(err) }, 'authentication provider failed');
        ch.refuseConnect(ReasonCode.UnspecifiedError, 'authentication failed');
      },
    );
    return;
  }
  completeAuthentication(ch, result, pending, identity);
}

function completeAuthentication(ch: Channel, result: AuthResult, pending: PendingConnect, identity: ClientIdentity): void {
  if (ch.state === 'closed') return;
  if (!result.ok) {
    ch.refuseConnect(result.reasonCode, result.reason);
    return;
  }
  openSession(ch, pending, { ...identity, principal: result.principal }, undefined);
}

/** Opens the session and answers CONNACK. Called after any successful authentication. */
export function openSession(ch: Channel, pending: PendingConnect, identity: ClientIdentity, authData: Buffer | undefined): void {
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

  if (packet.will !== undefined) {
    const { message, expiryInterval } = messageFromWill(packet.will, ch.clientId);
    ch.will = { message, expiryInterval, delay: v5 ? (packet.will.properties?.willDelayInterval ?? 0) : 0 };
  }
  const client = { clientId: ch.clientId, principal: identity.principal, identity };
  ch.client = client;
  const { session, present } = ch.broker.openSession(ch.clientId, packet.clean !== false, expiry, ch.version, ch, client);
  ch.session = session;

  const connack: ConnackPacket = { cmd: 'connack', sessionPresent: present };
  if (v5) {
    connack.reasonCode = ReasonCode.Success;
    const p: NonNullable<ConnackPacket['properties']> = {
      receiveMaximum: cfg.maxInflight,
      maximumPacketSize: cfg.maxPacketSize,
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
    connack.properties = p;
  } else {
    connack.returnCode = 0;
  }
  ch.send(connack);
  ch.connected(keepAlive);
  ch.broker.logger.debug({ clientId: ch.clientId, principal: identity.principal, remote: identity.remoteAddress, present }, 'client connected');
  // Resend in-flight messages and drain the queue only after CONNACK [MQTT-4.4.0-1].
  session.attach(ch);
}
