/**
 * Certificate revocation lists (RFC 5280 §5). Owns: the revocation reasons, signing a v2
 * CRL (CRL number, authority key identifier, reason codes) in the `X509 CRL` PEM form
 * OpenSSL and Node's tls read, and reading CRLs back. Must not: decide who is revoked
 * (the caller's inventory does) or fetch CRLs.
 */
import { loadCa, type CaMaterial } from './ca.js';
import {
  DerError,
  bitString,
  contextTag,
  enumerated,
  explicit,
  extension,
  integer,
  parseDer,
  readUnsigned,
  sequence,
  tlv,
  x509Time,
} from './der.js';
import { parseNodeCertificate } from './fingerprint.js';
import { derToPem } from './keys.js';
import { formatName } from './names.js';
import { PkiError } from './pki-error.js';
import { normalizeSerial } from './serial.js';
import { certificateParts, signatureAlgorithm, signWithCa } from './signing.js';
import { x509 } from './x509.js';

/** RFC 5280 §5.3.1 reason codes (removeFromCRL, 8, is delta-CRL only and not offered). */
export type RevocationReason =
  | 'unspecified'
  | 'keyCompromise'
  | 'cACompromise'
  | 'affiliationChanged'
  | 'superseded'
  | 'cessationOfOperation'
  | 'certificateHold'
  | 'privilegeWithdrawn'
  | 'aACompromise';

const REASON_CODES: Readonly<Record<RevocationReason, number>> = {
  unspecified: 0,
  keyCompromise: 1,
  cACompromise: 2,
  affiliationChanged: 3,
  superseded: 4,
  cessationOfOperation: 5,
  certificateHold: 6,
  privilegeWithdrawn: 9,
  aACompromise: 10,
};

export const REVOCATION_REASONS: readonly RevocationReason[] = Object.keys(REASON_CODES) as RevocationReason[];

/** The CRLReason code of a reason (also used by OCSP). */
export function reasonCode(reason: RevocationReason): number {
  return REASON_CODES[reason];
}

/** The reason for a CRLReason code, or undefined for codes we do not name. */
export function reasonFromCode(code: number): RevocationReason | undefined {
  return REVOCATION_REASONS.find((r) => REASON_CODES[r] === code);
}

export function assertRevocationReason(reason: unknown): asserts reason is RevocationReason {
  if (typeof reason !== 'string' || !(REVOCATION_REASONS as readonly string[]).includes(reason)) {
    throw new PkiError('ERR_PKI_INVALID_INPUT', `unknown revocation reason ${JSON.stringify(reason)}; expected one of ${REVOCATION_REASONS.join(', ')}`);
  }
}

export interface CrlEntryInput {
  /** Upper-case hex as Node prints it (lower case and colons are accepted too). */
  readonly serialNumber: string;
  readonly revokedAt: Date;
  readonly reason?: RevocationReason;
}

export interface CreateCrlOptions {
  readonly ca: CaMaterial;
  readonly entries: readonly CrlEntryInput[];
  /** Monotonically increasing per CA (RFC 5280 §5.2.3); at most 20 octets. */
  readonly crlNumber: bigint;
  /** Default: now. */
  readonly thisUpdate?: Date;
  readonly nextUpdate: Date;
}

const OID_CRL_NUMBER = '2.5.29.20';
const OID_AUTHORITY_KEY_ID = '2.5.29.35';
const OID_REASON_CODE = '2.5.29.21';
const MAX_CRL_NUMBER = (1n << 159n) - 1n;

function assertDate(field: string, value: unknown): asserts value is Date {
  if (!(value instanceof Date) || !Number.isFinite(value.getTime())) {
    throw new PkiError('ERR_PKI_INVALID_INPUT', `${field} must be a valid Date`);
  }
}

/**
 * Signs a v2 CRL with the CA's key. Extensions: CRL number and authority key identifier
 * (RFC 5280 §5.2); entries carry a reason code unless the reason is `unspecified`
 * (§5.3.1: that code SHOULD be absent). Returns PEM labelled `X509 CRL` (see FIELD-NOTES:
 * the library's `CRL` label is refused by OpenSSL and Node).
 */
export async function createCrl(options: CreateCrlOptions): Promise<string> {
  const { ca, crlNumber, nextUpdate, thisUpdate = new Date() } = options;
  if (!Array.isArray(options.entries)) throw new PkiError('ERR_PKI_INVALID_INPUT', 'entries must be an array');
  const entries = [...options.entries].map((e) => ({ serialNumber: e.serialNumber, revokedAt: e.revokedAt, reason: e.reason }));
  if (typeof crlNumber !== 'bigint' || crlNumber < 0n || crlNumber > MAX_CRL_NUMBER) {
    throw new PkiError('ERR_PKI_INVALID_INPUT', 'crlNumber must be a non-negative bigint of at most 20 octets');
  }
  assertDate('thisUpdate', thisUpdate);
  assertDate('nextUpdate', nextUpdate);
  if (nextUpdate.getTime() <= thisUpdate.getTime()) throw new PkiError('ERR_PKI_INVALID_INPUT', 'nextUpdate must be after thisUpdate');
  const seen = new Set<string>();
  const crlEntries = entries.map((entry) => {
    const serialNumber = normalizeSerial(entry.serialNumber);
    if (seen.has(serialNumber)) throw new PkiError('ERR_PKI_INVALID_INPUT', `serial ${serialNumber} is listed twice`);
    seen.add(serialNumber);
    assertDate(`revokedAt of ${serialNumber}`, entry.revokedAt);
    if (entry.reason !== undefined) assertRevocationReason(entry.reason);
    const code = entry.reason === undefined ? 0 : reasonCode(entry.reason);
    return { serialNumber, revokedAt: entry.revokedAt, reason: code };
  });

  const issuer = await loadCa({ certPem: ca.certPem, keyPem: ca.keyPem }, thisUpdate);
  const usage = issuer.cert.getExtension(x509.KeyUsagesExtension);
  if (usage !== null && (usage.usages & x509.KeyUsageFlags.cRLSign) === 0) {
    throw new PkiError('ERR_PKI_INVALID_CA', `CA certificate "${formatName(issuer.cert.subjectName)}" lacks keyUsage cRLSign`);
  }
  const tbs = sequence(
    integer(1n), // v2: needed for extensions
    signatureAlgorithm(issuer.keyAlgorithm).der,
    // Copied from the CA certificate as encoded, so verifiers match it byte for byte.
    certificateParts(parseNodeCertificate(ca.certPem).raw).subjectName,
    x509Time(thisUpdate),
    x509Time(nextUpdate),
    // RFC 5280: revokedCertificates and crlEntryExtensions are absent when empty, never empty SEQUENCEs.
    ...(crlEntries.length > 0 ? [sequence(...crlEntries.map(entryDer))] : []),
    explicit(0, sequence(extension(OID_CRL_NUMBER, integer(crlNumber)), extension(OID_AUTHORITY_KEY_ID, sequence(tlv(contextTag(0, false), Buffer.from(issuer.keyId, 'hex')))))),
  );
  const der = sequence(tbs, signatureAlgorithm(issuer.keyAlgorithm).der, bitString(signWithCa(issuer, tbs)));
  return derToPem(der, 'X509 CRL');
}

function entryDer(entry: { serialNumber: string; revokedAt: Date; reason: number }): Buffer {
  const parts = [integer(entry.serialNumber), x509Time(entry.revokedAt)];
  if (entry.reason !== 0) parts.push(sequence(extension(OID_REASON_CODE, enumerated(entry.reason))));
  return sequence(...parts);
}

export interface RevokedEntry {
  readonly revokedAt: Date;
  readonly reason?: RevocationReason;
}

export interface CrlInfo {
  /** RFC 4514 order, like describeCertificate's issuer. */
  readonly issuer: string;
  readonly thisUpdate: Date;
  readonly nextUpdate: Date | null;
  readonly crlNumber: bigint | null;
  /** By serial (upper-case hex, as Node prints it). */
  readonly revoked: Map<string, RevokedEntry>;
}

const CRL_BLOCK = /-----BEGIN (X509 CRL|CRL)-----([\s\S]*?)-----END \1-----/g;

function crlDers(pem: string): Buffer[] {
  if (typeof pem !== 'string') throw new PkiError('ERR_PKI_BAD_CRL', 'CRL must be a PEM string');
  const out: Buffer[] = [];
  for (const match of pem.matchAll(CRL_BLOCK)) {
    const body = (match[2] ?? '').replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(body)) throw new PkiError('ERR_PKI_BAD_CRL', `CRL ${out.length + 1} is not valid base64`);
    out.push(Buffer.from(body, 'base64'));
  }
  if (out.length === 0) throw new PkiError('ERR_PKI_BAD_CRL', 'no "X509 CRL" PEM block found');
  return out;
}

function parseCrlDer(der: Buffer, index: number): x509.X509Crl {
  try {
    const crl = new x509.X509Crl(der);
    // Touch the lazily parsed fields now, so a damaged CRL fails here with our error.
    void crl.entries;
    void crl.extensions;
    return crl;
  } catch {
    throw new PkiError('ERR_PKI_BAD_CRL', `CRL ${index + 1} cannot be parsed`);
  }
}

function crlNumberOf(crl: x509.X509Crl): bigint | null {
  const ext = crl.getExtension(OID_CRL_NUMBER);
  if (ext === null) return null;
  try {
    return readUnsigned(parseDer(new Uint8Array(ext.value)), 'CRL number');
  } catch (err) {
    if (err instanceof DerError) throw new PkiError('ERR_PKI_BAD_CRL', `bad CRL number: ${err.message}`);
    throw err;
  }
}

function describeCrl(crl: x509.X509Crl): CrlInfo {
  const revoked = new Map<string, RevokedEntry>();
  for (const entry of crl.entries) {
    const reason = entry.reason === undefined ? undefined : reasonFromCode(entry.reason);
    revoked.set(normalizeSerial(entry.serialNumber), reason === undefined ? { revokedAt: entry.revocationDate } : { revokedAt: entry.revocationDate, reason });
  }
  return { issuer: formatName(crl.issuerName), thisUpdate: crl.thisUpdate, nextUpdate: crl.nextUpdate ?? null, crlNumber: crlNumberOf(crl), revoked };
}

/** Every CRL in a PEM bundle (`X509 CRL` or `CRL` labels). Throws ERR_PKI_BAD_CRL. */
export function parseCrls(pem: string): CrlInfo[] {
  return crlDers(pem).map((der, i) => describeCrl(parseCrlDer(der, i)));
}

/** The first CRL in `pem`. Throws ERR_PKI_BAD_CRL. */
export function parseCrl(pem: string): CrlInfo {
  const [first] = crlDers(pem);
  return describeCrl(parseCrlDer(first!, 0));
}

/**
 * True when the (first) CRL in `crlPem` names the certificate's subject as its issuer and
 * its signature verifies with the certificate's public key.
 */
export async function verifyCrlSignature(crlPem: string, issuerCertPem: string): Promise<boolean> {
  const [first] = crlDers(crlPem);
  const crl = parseCrlDer(first!, 0);
  let cert: x509.X509Certificate;
  try {
    cert = new x509.X509Certificate(issuerCertPem);
  } catch {
    throw new PkiError('ERR_PKI_INVALID_INPUT', 'cannot parse the issuer certificate PEM');
  }
  if (!Buffer.from(crl.issuerName.toArrayBuffer()).equals(Buffer.from(cert.subjectName.toArrayBuffer()))) return false;
  try {
    return await crl.verify({ publicKey: cert });
  } catch {
    return false;
  }
}
