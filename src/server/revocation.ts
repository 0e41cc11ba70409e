/**
 * Revocation that bites: when a listener loads a new CRL, every live session whose client
 * certificate it revokes is disconnected (v5: DISCONNECT 0x98 Administrative action), and
 * until the next CRL an admission guard refuses a CONNECT from such a certificate whose
 * TLS handshake slipped in before the TLS layer had the new CRL. New handshakes are
 * refused by the TLS layer itself, which verifies against the same CRL.
 * In a cluster, the CRLs other nodes loaded arrive too (`applyShared`): they revoke on every
 * listener of this node, by issuer and serial, through the same disconnect and admission
 * guard; this node's TLS layer does not know them.
 * Owns: the revoked-certificate sets per listener and per shared issuer. Must not: parse
 * TLS or read files.
 */
import type { Broker } from '../broker/broker.js';
import type { AuthorizedClient } from '../broker/ports.js';
import type { Logger } from '../core/logger.js';
import { parseCrls } from '../pki/index.js';
import { ReasonCode } from '../protocol/reason-codes.js';

/** A revoked certificate: its issuer's distinguished name (normalised) and its serial. */
type RevokedKey = string;

/**
 * Distinguished names reach us in two spellings: "CN=a, O=b" from the CRL parser and
 * "CN=a\nO=b" or "O=b, CN=a" from TLS peers. Comparing the sorted attribute list makes
 * them equal without trusting either order.
 */
export function normalizeDistinguishedName(dn: string): string {
  return dn
    .replace(/\\(.)/g, '$1')
    .split(/\r?\n|,(?=\s*[A-Za-z0-9.]+=)/)
    .map((part) => part.trim().replace(/\s*=\s*/, '='))
    .filter((part) => part.length > 0)
    .sort()
    .join(',');
}

function keyOf(issuer: string, serialNumber: string): RevokedKey {
  return `${normalizeDistinguishedName(issuer)}#${serialNumber.toUpperCase().replace(/^0+(?=.)/, '')}`;
}

export class RevocationEnforcer {
  /** Per listener name: the certificates its current CRLs revoke. */
  private readonly revoked = new Map<string, Set<RevokedKey>>();
  /** Per listener name: when each of its CRLs expires. */
  private readonly nextUpdates = new Map<string, Array<{ issuer: string; nextUpdate: Date | null }>>();
  /** Per issuer (normalised name): the certificates the cluster's CRL of that issuer revokes. */
  private readonly shared = new Map<string, Set<RevokedKey>>();
  private readonly crlListeners: Array<(crlPem: string) => void> = [];

  constructor(
    private readonly broker: Broker,
    private readonly logger: Logger,
  ) {
    broker.addAdmissionGuard((client) => (this.isRevoked(client) ? { reasonCode: ReasonCode.NotAuthorized, reason: 'the client certificate is revoked' } : null));
  }

  /**
   * Takes the CRL file content a listener just loaded (one or more PEM CRLs) and
   * disconnects that listener's clients whose certificates it revokes.
   * Returns the client ids disconnected.
   */
  applyCrl(listener: string, crlPem: string, now: Date = new Date()): string[] {
    const set = new Set<RevokedKey>();
    const crls = parseCrls(crlPem);
    for (const crl of crls) {
      for (const serial of crl.revoked.keys()) set.add(keyOf(crl.issuer, serial));
    }
    this.revoked.set(listener, set);
    this.nextUpdates.set(listener, crls.map((c) => ({ issuer: c.issuer, nextUpdate: c.nextUpdate })));
    this.checkFreshness(now);
    const kicked = this.broker.disconnectWhere((client) => this.isRevoked(client), ReasonCode.AdministrativeAction, 'certificate revoked');
    for (const clientId of kicked) this.logger.warn({ listener, clientId }, 'client certificate revoked: session disconnected');
    this.broker.events.emit({ type: 'revocation.applied', listener, disconnected: kicked });
    for (const cb of this.crlListeners) cb(crlPem);
    return kicked;
  }

  /** `cb` gets each CRL file content a listener loaded, once applied here (the cluster shares it). */
  onCrlApplied(cb: (crlPem: string) => void): void {
    this.crlListeners.push(cb);
  }

  /**
   * Takes CRLs another node of the cluster loaded (already checked by the caller): each
   * replaces what the cluster revoked for its issuer, on every listener, and the live
   * sessions they revoke are disconnected. Returns the client ids disconnected.
   */
  applyShared(crlPem: string): string[] {
    for (const crl of parseCrls(crlPem)) this.shared.set(normalizeDistinguishedName(crl.issuer), new Set([...crl.revoked.keys()].map((serial) => keyOf(crl.issuer, serial))));
    const kicked = this.broker.disconnectWhere((client) => this.isRevoked(client), ReasonCode.AdministrativeAction, 'certificate revoked');
    for (const clientId of kicked) this.logger.warn({ clientId, source: 'cluster' }, 'client certificate revoked: session disconnected');
    this.broker.events.emit({ type: 'revocation.applied', listener: 'cluster', disconnected: kicked });
    return kicked;
  }

  /**
   * SECURITY/availability: OpenSSL refuses every client of a CA whose CRL has expired, so a
   * stale CRL locks the fleet out. Say so loudly (error) once it has expired, and warn a
   * day ahead. The server calls this on a timer; CRLs the built-in CA signs are renewed
   * long before (see PkiService.renewCrlIfDue).
   */
  checkFreshness(now: Date = new Date()): void {
    for (const [listener, crls] of this.nextUpdates) {
      for (const { issuer, nextUpdate } of crls) {
        if (nextUpdate === null) continue;
        const msLeft = nextUpdate.getTime() - now.getTime();
        if (msLeft <= 0) {
          this.logger.error({ listener, issuer, nextUpdate: nextUpdate.toISOString() }, 'CRL has EXPIRED: TLS handshakes of every client certificate from this issuer now fail; publish a fresh CRL');
        } else if (msLeft < 24 * 3600 * 1000) {
          this.logger.warn({ listener, issuer, nextUpdate: nextUpdate.toISOString() }, 'CRL expires within a day; publish a fresh CRL');
        }
      }
    }
  }

  private isRevoked(client: AuthorizedClient): boolean {
    const cert = client.identity.certificate;
    if (cert === undefined) return false;
    const set = this.revoked.get(client.identity.listener);
    if (set !== undefined && set.size > 0 && set.has(keyOf(cert.issuer, cert.serialNumber))) return true;
    if (this.shared.size === 0) return false;
    const key = keyOf(cert.issuer, cert.serialNumber);
    return this.shared.get(key.slice(0, key.lastIndexOf('#')))?.has(key) === true;
  }
}
