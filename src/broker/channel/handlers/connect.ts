/**
 * CONNECT → CONNACK: validation, authentication (plain or enhanced), session open or
 * takeover, and the v5 capabilities the broker announces.
 */
import { ProtocolViolation } from '../../../core/errors.js';
import type { ConnectPacket, ProtocolVersion } from '../../../protocol/packets.js';
import { ReasonCode } from '../../../protocol/reason-codes.js';
import { isValidTopicName } from '../../../protocol/topic.js';
import { decodedStringIsFaithful } from '../../../protocol/utf8.js';
import type { AuthResult, ClientIdentity } from '../../ports.js';
import type { Channel } from '../channel.js';
import { emitLimitHit } from '../channel-limits.js';
import { authenticatedIdentity, runEnhancedAuthStep } from './enhanced-auth.js';
import { messageFromWill } from './message-properties.js';
import { openSession, type PendingConnect } from './open-session.js';
import type { WillSpec } from '../../session/session.js';


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
  // SECURITY: an overlong client id is refused before authentication runs (it would be
  // stored, logged and audited). An id the broker assigned is never refused.
  const limits = ch.broker.limits;
  if (assigned === null && limits.enabled && clientId.length > limits.client.maxClientIdLength) {
    emitLimitHit(ch, 'client-id-length', 'refused', `${clientId.length} characters, starting ${JSON.stringify(clientId.slice(0, 32))}`);
    ch.refuseConnect(ReasonCode.ClientIdentifierNotValid, `client identifier longer than ${limits.client.maxClientIdLength} characters`);
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

  const identity = identityOf(ch);
  if (!admitTlsIdentity(ch, clientId)) return;
  // The will is checked now, so a malformed one is refused before authentication runs.
  let will: WillSpec | null = null;
  if (packet.will !== undefined) {
    const { message, expiryInterval } = messageFromWill(packet.will, clientId);
    will = { message, expiryInterval, delay: version === 5 ? (packet.will.properties?.willDelayInterval ?? 0) : 0 };
  }
  const pending: PendingConnect = { packet, assignedClientId: assigned, will };

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
        // An error here would otherwise be an unhandled rejection: it goes to the one mapper.
        try {
          completeAuthentication(ch, r, pending, identity);
        } catch (err) {
          ch.fail(err);
        }
        ch.releaseIncoming();
      },
      (err: unknown) => {
        // SECURITY: a failing provider means deny.
        ch.broker.logger.error({ clientId, err: String(err) }, 'authentication provider failed');
        ch.refuseConnect(ReasonCode.UnspecifiedError, 'authentication failed', { stage: 'auth', provider: 'chain', username: packet.username });
      },
    );
    return;
  }
  completeAuthentication(ch, result, pending, identity);
}

/** The transport-level identity: a verified certificate, a PSK identity, or nobody. */
function identityOf(ch: Channel): ClientIdentity {
  const peer = ch.conn.peer;
  const tls = ch.conn.tls;
  const base = { remoteAddress: ch.conn.remoteAddress, listener: ch.conn.listenerName, ...(tls != null ? { tls } : {}) };
  if (peer === null) return { ...base, principal: null, method: 'anonymous' };
  return {
    ...base,
    principal: peer.identity,
    method: peer.method,
    ...(peer.certificate !== undefined ? { certificate: peer.certificate } : {}),
    ...(peer.pskIdentity !== undefined ? { pskIdentity: peer.pskIdentity } : {}),
  };
}

/**
 * SECURITY: a certificate without a value for the listener's identity mapping is refused
 * (never downgraded to anonymous), and with `clientIdMustMatch` the client id must be the
 * identity, so one device cannot take over another's session.
 */
function admitTlsIdentity(ch: Channel, clientId: string): boolean {
  const peer = ch.conn.peer;
  if (peer === null) return true;
  const log = { listener: ch.conn.listenerName, remote: ch.conn.remoteAddress, clientId };
  if (peer.identity === null) {
    ch.broker.logger.warn({ ...log, mapping: peer.source, serialNumber: peer.certificate?.serialNumber }, 'client certificate has no value for the identity mapping');
    ch.refuseConnect(ReasonCode.NotAuthorized, `the client certificate has no ${peer.source} identity`);
    return false;
  }
  if (peer.clientIdMustMatch && clientId !== peer.identity) {
    ch.broker.logger.warn({ ...log, identity: peer.identity }, 'client id does not match the TLS identity');
    ch.refuseConnect(ReasonCode.ClientIdentifierNotValid, 'the client id must match the TLS identity');
    return false;
  }
  return true;
}

function completeAuthentication(ch: Channel, result: AuthResult, pending: PendingConnect, identity: ClientIdentity): void {
  if (ch.state === 'closed') return;
  if (!result.ok) {
    // The provider that refused, for audit and metrics; the transport's method when the authenticator did not say.
    ch.refuseConnect(result.reasonCode, result.reason, { stage: 'auth', provider: result.provider ?? identity.method, username: pending.packet.username });
    return;
  }
  openSession(ch, pending, authenticatedIdentity(identity, result), undefined, result.expiresAt);
}

