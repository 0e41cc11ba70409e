/**
 * The client identity a TLS handshake proves. Owns: turning a verified peer certificate
 * into a TlsPeer. Must not: trust a certificate the TLS layer did not verify.
 */
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import type { TlsPeer } from '../broker/channel/connection-port.js';

/** SECURITY: only a certificate that the TLS layer verified is an identity. */
export function verifiedPeer(socket: TLSSocket): TlsPeer | null {
  if (!socket.authorized) return null;
  const cert = socket.getPeerCertificate();
  if (cert === null || typeof cert !== 'object' || cert.subject === undefined) return null;
  const cn = cert.subject.CN;
  const commonName = Array.isArray(cn) ? (cn[0] ?? '') : (cn ?? '');
  return { commonName, serialNumber: cert.serialNumber, fingerprint256: cert.fingerprint256 };
}

/** The peer of an accepted TCP or TLS socket. */
export function peerOf(socket: Socket): TlsPeer | null {
  return socket instanceof TLSSocket ? verifiedPeer(socket) : null;
}
