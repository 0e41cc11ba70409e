/**
 * DISCONNECT from the client and the AUTH exchange (enhanced authentication and
 * re-authentication, MQTT 5 §4.12). The methods themselves are plugged in by name.
 */
import { ProtocolViolation } from '../../../core/errors.js';
import type { AuthPacket, DisconnectPacket } from '../../../protocol/packets.js';
import { ReasonCode } from '../../../protocol/reason-codes.js';
import type { Channel } from '../channel.js';
import { runEnhancedAuthStep } from './enhanced-auth.js';

export function handleDisconnect(ch: Channel, packet: DisconnectPacket): void {
  const session = ch.session!;
  const requested = packet.properties?.sessionExpiryInterval;
  if (requested !== undefined) {
    // A session that was to end with the connection cannot be extended now [MQTT-3.14.2-2].
    if (session.expiryInterval === 0 && requested !== 0) throw new ProtocolViolation(ReasonCode.ProtocolError, 'session expiry cannot change from 0');
    const wasPersistent = session.persistent;
    session.expiryInterval = Math.min(requested, ch.broker.config.sessionExpiryMax);
    if (wasPersistent && !session.persistent) ch.broker.store?.deleteSession(session.clientId);
  }
  // 0x04 keeps the will; any other normal disconnect discards it [MQTT-3.14.4-3].
  const keepWill = packet.reasonCode === ReasonCode.DisconnectWithWill;
  if (!keepWill) ch.will = null;
  ch.abort();
}

export function handleAuth(ch: Channel, packet: AuthPacket): void {
  const auth = ch.enhancedAuth;
  const method = packet.properties?.authenticationMethod;
  if (auth === null || method !== auth.method) throw new ProtocolViolation(ReasonCode.ProtocolError, 'AUTH without the authentication method of CONNECT');
  if (ch.state === 'authenticating') {
    if (packet.reasonCode !== ReasonCode.ContinueAuthentication) throw new ProtocolViolation(ReasonCode.ProtocolError, 'unexpected AUTH reason code');
    runEnhancedAuthStep(ch, packet.properties?.authenticationData, null);
    return;
  }
  if (packet.reasonCode !== ReasonCode.ReAuthenticate && packet.reasonCode !== ReasonCode.ContinueAuthentication) {
    throw new ProtocolViolation(ReasonCode.ProtocolError, 'unexpected AUTH reason code');
  }
  runEnhancedAuthStep(ch, packet.properties?.authenticationData, null);
}

