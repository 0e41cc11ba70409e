/**
 * A certificate of the built-in PKI's inventory as operators see it: `bastion cert list
 * --json` and the admin API (so the console). Owns: that view (times as ISO 8601). Must not:
 * carry the certificate's PEM unless asked (the callers add it), or any key.
 */
import type { CertificateView } from '../admin/api/services.js';
import type { InventoryRecord } from '../store/sqlite/pki-inventory.js';

export function certificateView(r: InventoryRecord): CertificateView {
  return {
    serialNumber: r.serialNumber,
    kind: r.kind,
    status: r.status,
    commonName: r.commonName,
    subject: r.subject,
    sans: r.sans,
    fingerprint256: r.fingerprint256,
    notBefore: r.notBefore.toISOString(),
    notAfter: r.notAfter.toISOString(),
    issuerSerial: r.issuerSerial,
    issuedAt: r.issuedAt.toISOString(),
    revokedAt: r.revokedAt?.toISOString() ?? null,
    reason: r.reason,
  };
}
