/**
 * Certificate audit checks over the PKI inventory: expiring or expired, too old, weak
 * keys, and an intermediate revoked while certificates it issued are still in use. Owns:
 * those checks, their severities and fixes. Must not: read files or change the PKI.
 */
import type { InventoryRecord } from '../../store/sqlite/pki-inventory.js';
import type { AuditInput } from './audit-input.js';
import type { Finding, Severity } from './finding.js';
import { debianBlacklistEntry, hasRocaFingerprint, keyFacts } from './weak-keys.js';

const DAY_MS = 86_400_000;
const MIN_RSA_BITS = 2048;

/** The OU that makes a client certificate an operator's (admin API), as the config names it. */
function operatorOu(input: AuditInput): string {
  return input.config.admin?.operatorOu ?? 'operators';
}

/** Operator certificates are client certificates with the operator OU in their subject. */
function isOperator(r: InventoryRecord, ou: string): boolean {
  if (r.kind !== 'client') return false;
  return r.subject.split(/,\s*|\n/).some((part) => part === `OU=${ou}`);
}

function kindName(r: InventoryRecord, ou: string): string {
  if (isOperator(r, ou)) return 'admin';
  return r.kind === 'client' ? 'device' : r.kind === 'server' ? 'server' : 'ca';
}

function describe(r: InventoryRecord): string {
  return `${r.kind === 'client' ? 'device' : r.kind} certificate ${r.serialNumber} (${r.commonName || r.subject})`;
}

/** How to replace a certificate of this kind. */
function reissue(r: InventoryRecord): string {
  if (r.kind === 'root') return 'create a new root (`bastion ca init` in a new PKI directory) and roll it out to devices before this one expires';
  if (r.kind === 'intermediate') return 'create a new intermediate with `bastion ca intermediate` and re-issue the certificates it signed';
  return `issue a replacement (\`bastion cert issue ${r.commonName || '<name>'}\`, or let the device renew), then \`bastion cert revoke ${r.serialNumber}\``;
}

function isLive(r: InventoryRecord, now: Date): boolean {
  return r.status === 'valid' && r.notAfter.getTime() > now.getTime();
}

export function certificateExpiryFindings(input: AuditInput): Finding[] {
  const out: Finding[] = [];
  const now = input.now.getTime();
  const horizon = now + input.thresholds.expiringDays * DAY_MS;
  const ou = operatorOu(input);
  for (const r of input.pki?.records ?? []) {
    if (r.status !== 'valid') continue;
    const left = r.notAfter.getTime();
    if (left > horizon) continue;
    const expired = left <= now;
    const days = Math.floor(Math.abs(left - now) / DAY_MS);
    // A CA or server certificate takes the whole fleet down when it lapses, an operator's
    // locks the operator out of the admin API; one device's takes only that device.
    const kind = kindName(r, ou);
    const severity: Severity = kind === 'device' ? 'medium' : 'high';
    out.push({
      check: `${kind}-certificate-expiring`,
      severity,
      subject: r.serialNumber,
      message: expired ? `${describe(r)} expired ${days} day(s) ago (${r.notAfter.toISOString()})` : `${describe(r)} expires in ${days} day(s) (${r.notAfter.toISOString()})`,
      fix: reissue(r),
    });
  }
  return out;
}

export function certificateAgeFindings(input: AuditInput): Finding[] {
  const out: Finding[] = [];
  const maxMs = input.thresholds.maxAgeDays * DAY_MS;
  for (const r of input.pki?.records ?? []) {
    // CAs are meant to live for years; age matters for the keys that sit on devices and servers.
    if ((r.kind !== 'client' && r.kind !== 'server') || !isLive(r, input.now)) continue;
    const age = input.now.getTime() - r.notBefore.getTime();
    if (age <= maxMs) continue;
    out.push({
      check: 'certificate-age',
      severity: 'low',
      subject: r.serialNumber,
      message: `${describe(r)} is ${Math.floor(age / DAY_MS)} days old (threshold ${input.thresholds.maxAgeDays})`,
      fix: `rotate it: ${reissue(r)}`,
    });
  }
  return out;
}

export function weakKeyFindings(input: AuditInput): Finding[] {
  const out: Finding[] = [];
  for (const r of input.pki?.records ?? []) {
    if (!isLive(r, input.now)) continue;
    const facts = keyFacts(r.certPem);
    if (facts === null) {
      out.push({ check: 'certificate-unreadable', severity: 'medium', subject: r.serialNumber, message: `${describe(r)}: its PEM in the inventory cannot be parsed`, fix: `inspect it with \`bastion cert show ${r.serialNumber}\`; re-issue it if it is damaged` });
      continue;
    }
    const add = (check: string, severity: Severity, message: string, fix: string): void => {
      out.push({ check, severity, subject: r.serialNumber, message: `${describe(r)}: ${message}`, fix });
    };
    const replaceKey = `make a new key (EC P-256 or RSA ≥ 2048) and ${reissue(r)}`;
    if (facts.rsaBits !== undefined && facts.rsaBits < MIN_RSA_BITS) add('weak-key-rsa-size', 'high', `RSA key of ${facts.rsaBits} bits (under ${MIN_RSA_BITS})`, replaceKey);
    // A root's signature over itself is never checked by verifiers: only issued certificates count.
    if (facts.weakSignature !== null && r.kind !== 'root') add('weak-signature', 'high', `signed with ${facts.weakSignature} (collisions are practical)`, reissue(r));
    if (facts.modulus !== undefined && hasRocaFingerprint(facts.modulus)) {
      add('weak-key-roca', 'critical', 'the RSA modulus has the ROCA fingerprint (CVE-2017-15361): its private key can be computed', `${replaceKey}; generate the key outside the affected Infineon chip or with its fixed firmware`);
    }
    const list = facts.modulus !== undefined && facts.rsaBits !== undefined ? input.debianBlacklist?.get(facts.rsaBits) : undefined;
    if (list !== undefined && facts.modulus !== undefined && list.has(debianBlacklistEntry(facts.modulus))) {
      add('weak-key-debian', 'critical', "the RSA key is on Debian's weak-key list (CVE-2008-0166): its private key is public", replaceKey);
    }
  }
  return out;
}

export function revokedIntermediateFindings(input: AuditInput): Finding[] {
  const records = input.pki?.records ?? [];
  const out: Finding[] = [];
  for (const ca of records) {
    if (ca.kind !== 'intermediate' || ca.status !== 'revoked') continue;
    const active = records.filter((r) => r.issuerSerial === ca.serialNumber && isLive(r, input.now));
    if (active.length === 0) continue;
    const shown = active.slice(0, 5).map((r) => r.serialNumber).join(', ');
    out.push({
      check: 'intermediate-revoked-with-active-certificates',
      severity: 'critical',
      subject: ca.serialNumber,
      message: `intermediate ${ca.serialNumber} (${ca.commonName}) is revoked but ${active.length} unrevoked, unexpired certificate(s) it issued remain: ${shown}${active.length > 5 ? ', …' : ''}`,
      fix: 'revoke each of them (`bastion cert revoke SERIAL`) and re-issue them from a valid intermediate',
    });
  }
  return out;
}

export function certificateFindings(input: AuditInput): Finding[] {
  return [...certificateExpiryFindings(input), ...certificateAgeFindings(input), ...weakKeyFindings(input), ...revokedIntermediateFindings(input)];
}
