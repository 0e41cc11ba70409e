/**
 * The client identity a TLS handshake proves. Owns: turning a verified peer certificate
 * (or a PSK identity) into a TlsPeer mapped per the listener's `identity` option, and
 * naming OpenSSL's reason when verification failed. Must not: trust a certificate the
 * TLS layer did not verify.
 */
import type { DetailedPeerCertificate, PeerCertificate as NodePeerCertificate, TLSSocket } from 'node:tls';
import type { IdentitySource, PeerCertificate, TlsPeer } from '../broker/channel/connection-port.js';
import type { IdentityMapping } from '../core/tls-config.js';
import type { TlsSummary } from '../core/security-events.js';
import { negotiatedGroup } from './tls-session.js';

/**
 * Splits Node's `subjectaltname` string (`DNS:a, URI:b, IP Address:1.2.3.4, email:x`).
 * Node quotes a value holding a comma or quote as a JSON string, so the parser honours that.
 */
export function parseSubjectAltNames(text: string | undefined): PeerCertificate['sans'] {
  const sans: PeerCertificate['sans'] = { dns: [], uri: [], ip: [], email: [] };
  if (text === undefined || text.length === 0) return sans;
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(':', i);
    if (colon < 0) break;
    const type = text.slice(i, colon).trim();
    let value: string;
    let next: number;
    if (text[colon + 1] === '"') {
      // A JSON string: find its closing quote, skipping escaped characters.
      let j = colon + 2;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      try {
        value = JSON.parse(text.slice(colon + 1, j + 1)) as string;
      } catch {
        value = text.slice(colon + 2, j);
      }
      next = text.indexOf(',', j + 1);
    } else {
      next = text.indexOf(', ', colon + 1);
      value = text.slice(colon + 1, next < 0 ? text.length : next);
    }
    if (type === 'DNS') sans.dns.push(value);
    else if (type === 'URI') sans.uri.push(value);
    else if (type === 'IP Address') sans.ip.push(value);
    else if (type === 'email') sans.email.push(value);
    if (next < 0) break;
    i = next + 1;
    while (text[i] === ' ') i++;
  }
  return sans;
}

function values(v: string | string[] | undefined): string[] {
  if (v === undefined) return [];
  return Array.isArray(v) ? v : [v];
}

/** `CN=a, OU=b` from Node's parsed name object, attributes in certificate order. */
function formatName(name: Record<string, string | string[] | undefined> | undefined): string {
  if (name === undefined) return '';
  const parts: string[] = [];
  for (const [key, v] of Object.entries(name)) for (const one of values(v)) parts.push(`${key}=${one}`);
  return parts.join(', ');
}

/** The details the authorization layer gets from a verified certificate. */
export function describeCertificate(cert: NodePeerCertificate | DetailedPeerCertificate): PeerCertificate {
  const subject = cert.subject as unknown as Record<string, string | string[] | undefined>;
  const issuer = cert.issuer as unknown as Record<string, string | string[] | undefined>;
  return {
    commonName: values(subject.CN)[0] ?? '',
    serialNumber: cert.serialNumber,
    fingerprint256: cert.fingerprint256,
    issuer: formatName(issuer),
    subject: formatName(subject),
    organizationalUnits: values(subject.OU),
    sans: parseSubjectAltNames(cert.subjectaltname),
  };
}

/** The identity a certificate has under `mapping`, or null when it has none. */
function mapIdentity(cert: PeerCertificate, mapping: IdentityMapping): string | null {
  let value: string | undefined;
  switch (mapping) {
    case 'cn':
      value = cert.commonName;
      break;
    case 'san-uri':
      value = cert.sans.uri[0];
      break;
    case 'san-dns':
      value = cert.sans.dns[0];
      break;
    case 'subject':
      value = cert.subject;
      break;
  }
  return value !== undefined && value.length > 0 ? value : null;
}

export interface IdentityPolicy {
  mapping: IdentityMapping;
  clientIdMustMatch: boolean;
}

/**
 * SECURITY: only a certificate that the TLS layer verified is an identity; a PSK identity
 * counts only when our pskCallback accepted it for this very socket (`pskIdentity`).
 */
export function verifiedPeer(socket: TLSSocket, policy: IdentityPolicy, pskIdentity: string | undefined): TlsPeer | null {
  const cert = socket.getPeerCertificate();
  const hasCert = cert !== null && typeof cert === 'object' && cert.subject !== undefined && cert.fingerprint256 !== undefined;
  if (!hasCert) {
    // A PSK handshake proves the key without a certificate (and, with client certificates
    // off, Node leaves `authorized` false): the identity our callback accepted is the peer.
    if (pskIdentity === undefined) return null;
    return { method: 'psk', identity: pskIdentity, source: 'psk', clientIdMustMatch: policy.clientIdMustMatch, pskIdentity };
  }
  if (!socket.authorized) return null;
  const certificate = describeCertificate(cert);
  const source: IdentitySource = policy.mapping;
  return { method: 'certificate', identity: mapIdentity(certificate, policy.mapping), source, clientIdMustMatch: policy.clientIdMustMatch, certificate };
}

/**
 * The negotiated TLS version, cipher and resumption of an established socket, for the
 * security events (connection.accepted/refused). Read once per connection, at accept.
 */
export function tlsSummaryOf(socket: TLSSocket): TlsSummary {
  return { version: socket.getProtocol() ?? 'unknown', cipher: socket.getCipher()?.name ?? 'unknown', group: negotiatedGroup(socket), resumed: socket.isSessionReused() };
}

/** OpenSSL's words for the verification results a client certificate most often fails with. */
const VERIFY_REASONS: Readonly<Record<string, string>> = {
  CERT_HAS_EXPIRED: 'certificate has expired',
  CERT_NOT_YET_VALID: 'certificate is not yet valid',
  CERT_REVOKED: 'certificate revoked',
  INVALID_PURPOSE: 'unsupported certificate purpose',
  UNABLE_TO_GET_ISSUER_CERT: 'unknown ca (unable to get issuer certificate)',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'unknown ca (unable to get local issuer certificate)',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'unknown ca (unable to verify the first certificate)',
  SELF_SIGNED_CERT_IN_CHAIN: 'unknown ca (self-signed certificate in certificate chain)',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'unknown ca (self-signed certificate)',
  CERT_SIGNATURE_FAILURE: 'certificate signature failure',
  UNABLE_TO_GET_CRL: 'unable to get certificate CRL',
  CRL_HAS_EXPIRED: 'CRL has expired',
  CRL_NOT_YET_VALID: 'CRL is not yet valid',
  CRL_SIGNATURE_FAILURE: 'CRL signature failure',
};

/** A readable reason for a failed client-certificate verification (Node gives only the code). */
export function verifyFailureReason(code: string | Error | null | undefined): string {
  if (code === null || code === undefined) return 'no client certificate';
  const key = typeof code === 'string' ? code : ((code as Error & { code?: string }).code ?? code.message);
  return VERIFY_REASONS[key] ?? key.toLowerCase().replace(/_/g, ' ');
}

