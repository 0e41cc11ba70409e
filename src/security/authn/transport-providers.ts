/**
 * Providers that admit what the TLS handshake already proved: a verified client
 * certificate (its mapped identity) or a TLS-PSK identity. Must not: look at user names or
 * passwords (those are other providers' claims).
 */
import type { AuthRequest, ClientIdentity } from '../../broker/ports.js';
import { NOT_MINE, type AuthProvider, type ProviderVerdict } from './provider.js';

/** A verified client certificate with a mapped identity (also the first factor of requireCertificate). */
export function hasVerifiedCertificate(id: ClientIdentity): id is ClientIdentity & { principal: string } {
  return id.method === 'certificate' && id.certificate !== undefined && id.principal !== null;
}

/** SECURITY: the principal was set by the transport from what OpenSSL verified. */
export class CertificateProvider implements AuthProvider {
  readonly name = 'certificate';
  authenticate(req: AuthRequest): ProviderVerdict {
    const id = req.identity;
    if (!hasVerifiedCertificate(id)) return NOT_MINE;
    return { kind: 'allow', principal: id.principal, method: 'certificate' };
  }
}

/** SECURITY: the PSK identity is admitted only because the handshake proved its key. */
export class PskProvider implements AuthProvider {
  readonly name = 'psk';
  authenticate(req: AuthRequest): ProviderVerdict {
    const id = req.identity;
    if (id.method !== 'psk' || id.pskIdentity === undefined) return NOT_MINE;
    return { kind: 'allow', principal: id.pskIdentity, method: 'psk' };
  }
}
