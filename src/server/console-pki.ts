/**
 * The built-in PKI for the admin API (and so the console): the inventory filtered and paged,
 * issuing a certificate as a bundle in memory, and revoking one, each through PkiService
 * opened for the one operation (as the CLI does, so a change by the CLI is seen and no CA
 * key stays in memory). Owns: turning inventory records into the API's view. Must not:
 * decide what a valid certificate request is (pki/ and PkiService do).
 */
import type { CertificateFilter, CertificatesFacade, CertificateView, IssueRequest } from '../admin/api/services.js';
import { BastionError } from '../core/errors.js';
import { parseSanText, type RevocationReason, type SubjectAltName } from '../pki/index.js';
import type { InventoryRecord } from '../store/sqlite/pki-inventory.js';
import { certificateView } from './certificate-view.js';
import { rootKeyPassphraseFromEnv } from './pki-passphrase.js';
import { PkiService } from './pki-service.js';


function sansOf(texts: readonly string[] | undefined): SubjectAltName[] | undefined {
  if (texts === undefined || texts.length === 0) return undefined;
  return texts.map((t) => {
    const san = parseSanText(t.trim());
    if (san === undefined) throw new BastionError('ERR_PKI_INVALID_INPUT', `SANs look like dns:name, ip:address, uri:uri or email:address; got "${t}"`);
    return san;
  });
}

export class ConsolePki implements CertificatesFacade {
  constructor(private readonly pkiDir: string) {}

  private async with<T>(work: (pki: PkiService) => Promise<T> | T): Promise<T> {
    const pki = await PkiService.open(this.pkiDir, { passphrase: rootKeyPassphraseFromEnv() });
    try {
      return await work(pki);
    } finally {
      pki.close();
    }
  }

  list(filter: CertificateFilter): Promise<{ total: number; certificates: CertificateView[] }> {
    return this.with((pki) => {
      const needle = filter.q?.toLowerCase();
      const all = pki
        .list({
          ...(filter.status !== undefined ? { status: filter.status } : {}),
          ...(filter.expiringBefore !== undefined ? { expiringBefore: filter.expiringBefore } : {}),
          ...(filter.kind !== undefined ? { kinds: [filter.kind as InventoryRecord['kind']] } : {}),
        })
        .filter((r) => needle === undefined || r.commonName.toLowerCase().includes(needle));
      // Newest first: what an operator just issued is what they look for.
      all.sort((a, b) => b.issuedAt.getTime() - a.issuedAt.getTime() || (a.serialNumber < b.serialNumber ? -1 : 1));
      return { total: all.length, certificates: all.slice(filter.offset, filter.offset + filter.limit).map(certificateView) };
    });
  }

  get(serialNumber: string): Promise<(CertificateView & { certPem: string }) | null> {
    return this.with((pki) => {
      const found = pki.inventory.get(serialNumber);
      return found === undefined ? null : { ...certificateView(found), certPem: found.certPem };
    });
  }

  issue(request: IssueRequest): Promise<{ serialNumber: string; commonName: string; notAfter: string; certPem: string; keyPem: string; caPem: string }> {
    return this.with(async (pki) => {
      const sans = sansOf(request.sans);
      const b = await pki.issueBundle({
        profile: request.profile,
        commonName: request.commonName,
        organizationalUnit: request.organizationalUnit,
        days: request.days,
        ...(sans !== undefined ? { sans } : {}),
      });
      return { serialNumber: b.serialNumber, commonName: b.commonName, notAfter: b.notAfter.toISOString(), certPem: b.certPem, keyPem: b.keyPem, caPem: b.caPem };
    });
  }

  revoke(serialNumber: string, reason: string): Promise<{ result: 'revoked' | 'already-revoked'; certificate: CertificateView }> {
    return this.with(async (pki) => {
      const r = await pki.revoke(serialNumber, reason as RevocationReason);
      return { result: r.result, certificate: certificateView(r.record) };
    });
  }
}
