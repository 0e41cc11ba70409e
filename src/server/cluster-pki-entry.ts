/**
 * The wire form of one leaf certificate of the built-in PKI in the cluster's shared state
 * (`pki.<serial>`, see cluster-pki.ts), and the join that merges two views of it. Owns:
 * the canonical JSON `{certPem, issuedAt, status, revokedAt, reason}` (times in ms since
 * the epoch), its validation, the inventory row a valid entry stands for, and `joinStanding`.
 * Must not: read or write the inventory or the bucket (cluster-pki.ts does).
 *
 * SECURITY: an entry is data from any holder of the bucket's credentials. Only its status
 * fields and its PEM are taken from it; the PEM must be exactly one certificate whose
 * serial is the key's and which verifies under this node's issuing CA, and every other
 * inventory column (kind, subject, names, validity, fingerprint, issuer) is read from the
 * certificate itself. A certificate of another CA is not an error (another PKI may share
 * the bucket) but it is never imported. The join only moves forward: revoked wins over
 * valid, and of two revocations the earliest (then the reason that sorts first) wins, so
 * merging views in any order on any node ends in the same standing and never un-revokes.
 */
import { X509Certificate } from 'node:crypto';
import { z } from 'zod';
import { describeCertificate, REVOCATION_REASONS, splitPemChain } from '../pki/index.js';
import { normalizeSerial, type CertificateKind, type CertificateStatus, type InventoryRecord } from '../store/sqlite/pki-inventory.js';

export const PKI_PREFIX = 'pki';
/** A leaf certificate's PEM is well under this (the largest RSA-4096 ones are ~2.5 KiB). */
const MAX_PEM_CHARS = 16 * 1024;
/** Serials are at most 20 octets (RFC 5280 §4.1.2.2): 40 hex digits. */
const KEY_PATTERN = /^pki\.([0-9A-F]{1,40})$/;
/** Year 275760: the largest time a JavaScript Date holds. */
const MAX_TIME_MS = 8_640_000_000_000_000;

/** What a node knows of a certificate's status (the join's lattice). */
export interface Standing {
  readonly issuedAt: number;
  readonly status: CertificateStatus;
  readonly revokedAt: number | null;
  readonly reason: string | null;
}

/** A validated entry: its standing and the inventory row it stands for. */
export interface PkiEntry {
  readonly serialNumber: string;
  readonly standing: Standing;
  readonly record: InventoryRecord;
}

/** The issuing CA of this node's PKI (intermediate if there is one, else root). */
export interface IssuingCaCert {
  readonly cert: X509Certificate;
  readonly serialNumber: string;
}

const time = z.number().int().nonnegative().max(MAX_TIME_MS);
const reasons = REVOCATION_REASONS as unknown as [string, ...string[]];
const entrySchema = z
  .object({
    certPem: z.string().min(1).max(MAX_PEM_CHARS),
    issuedAt: time,
    status: z.enum(['valid', 'revoked']),
    revokedAt: time.nullable(),
    reason: z.enum(reasons).nullable(),
  })
  .strict()
  .refine((e) => (e.status === 'valid' ? e.revokedAt === null && e.reason === null : e.revokedAt !== null), {
    message: 'a valid entry has no revokedAt nor reason; a revoked one has a revokedAt',
  });

export function pkiKeyOf(serialNumber: string): string {
  return `${PKI_PREFIX}.${normalizeSerial(serialNumber)}`;
}

/** The serial a key names, or null when it is not a key of this kind. */
export function serialOfKey(key: string): string | null {
  return KEY_PATTERN.exec(key)?.[1] ?? null;
}

export function standingOf(record: InventoryRecord): Standing {
  return { issuedAt: record.issuedAt.getTime(), status: record.status, revokedAt: record.revokedAt?.getTime() ?? null, reason: record.reason };
}

export function encodeEntry(certPem: string, s: Standing): Uint8Array {
  // The key order is fixed here: equal standings are equal bytes on every node.
  return Buffer.from(JSON.stringify({ certPem, issuedAt: s.issuedAt, status: s.status, revokedAt: s.revokedAt, reason: s.reason }));
}

/** Whether revocation `a` wins over `b` (both revoked): earlier, or at once with a reason that sorts first (any over none). */
function earlier(a: Standing, b: Standing): boolean {
  if (a.revokedAt !== b.revokedAt) return a.revokedAt! < b.revokedAt!;
  if (a.reason === null) return false;
  return b.reason === null || a.reason < b.reason;
}

/**
 * The join of two views of one certificate: revoked wins over valid, the earliest
 * revocation (and its reason) wins, the earliest issuance time is kept. Commutative,
 * associative and idempotent, so the nodes converge whatever order they merge in.
 * (PkiInventory.revokeNoLaterThan applies the same rule in SQL.)
 */
export function joinStanding(a: Standing, b: Standing): Standing {
  const issuedAt = Math.min(a.issuedAt, b.issuedAt);
  if (a.status === 'valid' && b.status === 'valid') return { issuedAt, status: 'valid', revokedAt: null, reason: null };
  const winner = a.status === 'revoked' && (b.status === 'valid' || !earlier(b, a)) ? a : b;
  return { issuedAt, status: 'revoked', revokedAt: winner.revokedAt, reason: winner.reason };
}

export function sameStanding(a: Standing, b: Standing): boolean {
  return a.issuedAt === b.issuedAt && a.status === b.status && a.revokedAt === b.revokedAt && a.reason === b.reason;
}

/** The inventory kind of a leaf this PKI issues, from its extended key usage (leaf.ts gives each profile one). */
function kindOf(ekus: readonly string[], isCa: boolean): CertificateKind | null {
  if (isCa || ekus.length !== 1) return null;
  if (ekus[0] === 'serverAuth') return 'server';
  if (ekus[0] === 'clientAuth') return 'client';
  return null;
}

/**
 * Validates an entry of `key`: the entry, 'foreign' when its certificate is not one of
 * `issuing` (another CA's: not an error), or why it is refused.
 */
export function decodeEntry(key: string, bytes: Uint8Array, issuing: IssuingCaCert): PkiEntry | 'foreign' | { why: string } {
  const serial = serialOfKey(key);
  if (serial === null) return { why: 'not a key pki.<upper-case hex serial>' };
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    return { why: 'not JSON' };
  }
  const parsed = entrySchema.safeParse(raw);
  if (!parsed.success) return { why: parsed.error.issues.map((i) => `${i.path.join('.') || 'entry'}: ${i.message}`).join('; ') };
  const e = parsed.data;
  const blocks = splitPemChain(e.certPem);
  if (blocks.length !== 1 || (e.certPem.match(/-----BEGIN /g) ?? []).length !== 1) return { why: 'certPem is not exactly one certificate' };
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(blocks[0]!);
  } catch {
    return { why: 'certPem does not parse as an X.509 certificate' };
  }
  if (normalizeSerial(cert.serialNumber) !== serial) return { why: `the certificate's serial ${cert.serialNumber} is not the key's` };
  // SECURITY: only what this node's CA signed enters its inventory.
  let ours = false;
  try {
    ours = cert.checkIssued(issuing.cert) && cert.verify(issuing.cert.publicKey);
  } catch {
    ours = false;
  }
  if (!ours) return 'foreign';
  let info: ReturnType<typeof describeCertificate>;
  try {
    info = describeCertificate(cert.toString());
  } catch {
    return { why: 'the certificate cannot be described' };
  }
  const kind = kindOf(info.extendedKeyUsages, info.isCa);
  if (kind === null) return { why: 'not a server or client leaf certificate' };
  const standing: Standing = { issuedAt: e.issuedAt, status: e.status, revokedAt: e.revokedAt, reason: e.reason };
  const record: InventoryRecord = {
    serialNumber: serial,
    kind,
    issuerSerial: issuing.serialNumber,
    subject: info.subject,
    commonName: info.commonName,
    sans: [...info.sans.dns.map((v) => `DNS:${v}`), ...info.sans.ip.map((v) => `IP:${v}`), ...info.sans.uri.map((v) => `URI:${v}`), ...info.sans.email.map((v) => `email:${v}`)],
    fingerprint256: info.fingerprint256,
    notBefore: info.notBefore,
    notAfter: info.notAfter,
    certPem: cert.toString(),
    issuedAt: new Date(e.issuedAt),
    status: e.status,
    revokedAt: e.revokedAt === null ? null : new Date(e.revokedAt),
    reason: e.reason,
  };
  return { serialNumber: serial, standing, record };
}
