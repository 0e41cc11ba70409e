/**
 * Security events a channel emits (core/security-events.ts): an accepted connection, a
 * refused CONNECT (authentication failure or other refusal), an authorization denial, and
 * a live session the broker closed on purpose. Owns: building those events from the
 * channel's state. Must not: decide anything, or cost anything when nobody listens (every
 * function returns before allocating when the stream has no subscriber).
 */
import type { CertificateSummary, RefusalStage, SecurityEvent } from '../../core/security-events.js';
import type { ClientIdentity } from '../ports.js';
import type { Channel } from './channel.js';
import type { PeerCertificate } from './connection-port.js';

/**
 * Why a CONNECT was refused. `auth`: a provider refused the credentials (an `auth.failure`
 * naming the provider); any other stage: a `connection.refused`.
 */
export type RefusalCause = { stage: Exclude<RefusalStage, 'auth'> } | { stage: 'auth'; provider: string; username: string | undefined };

/** A CONNECT refusal that is neither authentication nor admission: validation, identity mapping, the will. */
export const CONNECT_STAGE: RefusalCause = { stage: 'connect' };
/** The admission guards (bans, revoked certificates) refused an authenticated client. */
export const ADMISSION_STAGE: RefusalCause = { stage: 'admission' };

/** The record view of a verified certificate: no DER, no organizational units (the subject has them). */
export function certificateSummary(c: PeerCertificate): CertificateSummary {
  return {
    serialNumber: c.serialNumber,
    fingerprint256: c.fingerprint256,
    commonName: c.commonName,
    issuer: c.issuer,
    subject: c.subject,
    sans: { dns: [...c.sans.dns], uri: [...c.sans.uri], ip: [...c.sans.ip], email: [...c.sans.email] },
  };
}

/** Where the channel's connection came in: the fields the connection events open with. */
function origin(ch: Channel): { listener: string; remoteAddress: string } {
  return { listener: ch.conn.listenerName, remoteAddress: ch.conn.remoteAddress };
}

/** The TLS parameters and certificate of the channel's connection, for the fields events share. */
function transportFields(ch: Channel): Pick<Extract<SecurityEvent, { type: 'connection.accepted' }>, 'tls' | 'certificate'> {
  const tls = ch.conn.tls;
  const cert = ch.conn.peer?.certificate;
  return { ...(tls != null ? { tls } : {}), ...(cert !== undefined ? { certificate: certificateSummary(cert) } : {}) };
}

/** CONNACK success was sent: who connected, how, and over what. */
export function emitAccepted(ch: Channel, identity: ClientIdentity): void {
  const events = ch.broker.events;
  if (!events.active) return;
  events.emit({
    type: 'connection.accepted',
    ...origin(ch),
    clientId: ch.clientId,
    principal: identity.principal,
    method: identity.method,
    ...(identity.username !== undefined ? { username: identity.username } : {}),
    protocolVersion: ch.version,
    ...transportFields(ch),
  });
}

/**
 * A CONNECT was refused: an `auth.failure` when a provider refused, a `connection.refused`
 * otherwise. `reasonCode` undefined: closed without a CONNACK (no CONNECT in time, bytes
 * that are not MQTT).
 */
export function emitConnectRefusal(ch: Channel, reasonCode: number | undefined, reason: string, cause: RefusalCause): void {
  const events = ch.broker.events;
  if (!events.active) return;
  if (cause.stage === 'auth') {
    emitAuthFailure(ch, cause.provider, cause.username, reasonCode ?? 0, reason);
    return;
  }
  events.emit({
    type: 'connection.refused',
    stage: cause.stage,
    ...origin(ch),
    ...(ch.clientId !== '' ? { clientId: ch.clientId } : {}),
    ...(reasonCode !== undefined ? { reasonCode } : {}),
    reason,
    ...transportFields(ch),
  });
}

/** A provider refused the credentials, at CONNECT or at re-authentication. */
export function emitAuthFailure(ch: Channel, provider: string, username: string | undefined, reasonCode: number, reason: string): void {
  const events = ch.broker.events;
  if (!events.active) return;
  events.emit({
    type: 'auth.failure',
    ...origin(ch),
    clientId: ch.clientId,
    ...(username !== undefined ? { username } : {}),
    provider,
    reasonCode,
    reason,
  });
}

/**
 * Authorization refused a publish, a subscribe filter or a will of this channel's client.
 * `principal`: given for a will at CONNECT, when the channel has no admitted client yet.
 */
export function emitDenied(ch: Channel, action: 'publish' | 'subscribe' | 'will', topic: string, reason: string, principal: string | null = ch.client?.principal ?? null): void {
  const events = ch.broker.events;
  if (!events.active) return;
  events.emit({ type: 'authz.denied', clientId: ch.clientId, principal, remoteAddress: ch.conn.remoteAddress, action, topic, reason });
}

/**
 * The broker is closing this live session on purpose (a kick, a ban, a revocation, an
 * expired credential, a protocol violation). Only for a connected channel: refusals of a
 * CONNECT are reported as such.
 */
export function emitDisconnected(ch: Channel, reasonCode: number, reason: string): void {
  const events = ch.broker.events;
  if (!events.active || ch.state !== 'connected') return;
  events.emit({ type: 'client.disconnected', clientId: ch.clientId, ...origin(ch), reasonCode, reason });
}
