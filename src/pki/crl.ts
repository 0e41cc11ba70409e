/**
 * Certificate revocation lists (RFC 5280 §5). Owns: the revocation reasons, signing a v2
 * CRL (CRL number, authority key identifier, reason codes) in the `X509 CRL` PEM form
 * OpenSSL and Node's tls read, and reading CRLs back. Must not: decide who is revoked
 * (the caller's inventory does) or fetch CRLs.
 */
import { loadCa, type CaMaterial } from './ca.js';
import {
  DerError,
  Tag,
  bitString,
  contextTag,
  enumerated,
  expectTag,
  explicit,
  explicitInner,
  extension,
  integer,
  parseDer,
  readBitString,
  readIntegerHex,
  readOctetString,
  readOid,
  readTime,
  readUnsigned,
  sequence,
  sequenceOf,
  tlv,
  x509Time,
  type DerElement,
} from './der.js';
import { parseNodeCertificate } from './fingerprint.js';
import { derToPem } from './keys.js';
import { formatName } from './names.js';
import { PkiError } from './pki-error.js';
import { normalizeSerial } from './serial.js';
import { certificateParts, signatureAlgorithm, signWithCa, verifySignature } from './signing.js';
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

/** About a million entries: far beyond any CRL we expect, small enough to refuse a runaway file. */
const MAX_CRL_PEM_LENGTH = 64 * 1024 * 1024;
const CRL_BLOCK = /-----BEGIN (X509 CRL|CRL)-----([\s\S]*?)-----END \1-----/g;

function crlDers(pem: string): Buffer[] {
  if (typeof pem !== 'string') throw new PkiError('ERR_PKI_BAD_CRL', 'CRL must be a PEM string');
  if (pem.length > MAX_CRL_PEM_LENGTH) throw new PkiError('ERR_PKI_BAD_CRL', `CRL input is larger than ${MAX_CRL_PEM_LENGTH / 1024 / 1024} MiB`);
  const out: Buffer[] = [];
  for (const match of pem.matchAll(CRL_BLOCK)) {
    const body = (match[2] ?? '').replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(body)) throw new PkiError('ERR_PKI_BAD_CRL', `CRL ${out.length + 1} is not valid base64`);
    out.push(Buffer.from(body, 'base64'));
  }
  if (out.length === 0) throw new PkiError('ERR_PKI_BAD_CRL', 'no "X509 CRL" PEM block found');
  return out;
}

/** A CRL split into what we read and what a signature check needs. */
interface ParsedCrl {
  readonly info: CrlInfo;
  readonly tbs: Uint8Array;
  readonly issuerName: Uint8Array;
  readonly signatureOid: string;
  readonly signature: Uint8Array;
}

/** Extensions SEQUENCE → extnID → extnValue (the OCTET STRING's content). */
function extensionValues(extensions: DerElement): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const ext of sequenceOf(extensions, 'extensions')) {
    const parts = sequenceOf(ext, 'extension');
    out.set(readOid(parts[0], 'extnID'), readOctetString(parts[parts.length - 1], 'extnValue'));
  }
  return out;
}

function readEntry(element: DerElement): [string, RevokedEntry] {
  const [serial, date, extensions] = sequenceOf(element, 'revoked certificate');
  const serialNumber = readIntegerHex(serial, 'userCertificate');
  const revokedAt = readTime(date, 'revocationDate');
  const reasonValue = extensions === undefined ? undefined : extensionValues(extensions).get(OID_REASON_CODE);
  const reason = reasonValue === undefined ? undefined : reasonFromCode(Number(readUnsigned(parseDer(reasonValue), 'reasonCode', Tag.Enumerated)));
  return [serialNumber, reason === undefined ? { revokedAt } : { revokedAt, reason }];
}

/**
 * Reads a CRL with our own DER reader: it descends one level at a time and keeps no
 * per-node objects, so a CRL with tens of thousands of entries parses quickly and within
 * bounds (the x509 library's default ASN.1 node limit stops at about 1,500 entries).
 */
function readCrl(der: Uint8Array): ParsedCrl {
  const [tbsElement, algorithm, signature] = sequenceOf(parseDer(der), 'CertificateList');
  const fields = sequenceOf(tbsElement, 'TBSCertList');
  let i = fields[0]?.tag === Tag.Integer ? 1 : 0; // version: v2 (1) when present
  i++; // signature AlgorithmIdentifier, repeated below the TBS
  const issuer = expectTag(fields[i++], Tag.Sequence, 'issuer');
  const thisUpdate = readTime(fields[i++], 'thisUpdate');
  let nextUpdate: Date | null = null;
  if (fields[i]?.tag === Tag.UtcTime || fields[i]?.tag === Tag.GeneralizedTime) nextUpdate = readTime(fields[i++], 'nextUpdate');
  const revoked = new Map<string, RevokedEntry>();
  if (fields[i]?.tag === Tag.Sequence) {
    for (const entry of sequenceOf(fields[i++], 'revokedCertificates')) {
      const [serialNumber, value] = readEntry(entry);
      revoked.set(serialNumber, value);
    }
  }
  let crlNumber: bigint | null = null;
  if (fields[i]?.tag === contextTag(0, true)) {
    const number = extensionValues(explicitInner(fields[i++]!, 'crlExtensions')).get(OID_CRL_NUMBER);
    if (number !== undefined) crlNumber = readUnsigned(parseDer(number), 'CRL number');
  }
  if (i !== fields.length) throw new DerError('unexpected fields in TBSCertList');
  let issuerText: string;
  try {
    issuerText = formatName(new x509.Name(issuer.raw));
  } catch {
    throw new DerError('unreadable issuer name');
  }
  return {
    info: { issuer: issuerText, thisUpdate, nextUpdate, crlNumber, revoked },
    tbs: tbsElement!.raw,
    issuerName: issuer.raw,
    signatureOid: readOid(sequenceOf(algorithm, 'signatureAlgorithm')[0], 'signature algorithm'),
    signature: readBitString(signature, 'signature'),
  };
}

function parseCrlDer(der: Buffer, index: number): ParsedCrl {
  try {
    return readCrl(der);
  } catch (err) {
    const reason = err instanceof DerError || err instanceof PkiError ? `: ${err.message}` : '';
    throw new PkiError('ERR_PKI_BAD_CRL', `CRL ${index + 1} cannot be parsed${reason}`);
  }
}

/** Every CRL in a PEM bundle (`X509 CRL` or `CRL` labels). Throws ERR_PKI_BAD_CRL. */
export function parseCrls(pem: string): CrlInfo[] {
  return crlDers(pem).map((der, i) => parseCrlDer(der, i).info);
}

/** The first CRL in `pem`. Throws ERR_PKI_BAD_CRL. */
export function parseCrl(pem: string): CrlInfo {
  const [first] = crlDers(pem);
  return parseCrlDer(first!, 0).info;
}

/**
 * True when the (first) CRL in `crlPem` names the certificate's subject as its issuer
 * (byte for byte) and its signature verifies with the certificate's public key.
 */
export async function verifyCrlSignature(crlPem: string, issuerCertPem: string): Promise<boolean> {
  const [first] = crlDers(crlPem);
  const crl = parseCrlDer(first!, 0);
  const cert = parseNodeCertificate(issuerCertPem);
  if (!Buffer.from(crl.issuerName).equals(Buffer.from(certificateParts(cert.raw).subjectName))) return false;
  return verifySignature(crl.signatureOid, crl.tbs, cert.publicKey, crl.signature);
}
