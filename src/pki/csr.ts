/**
 * Certificate signing requests (PKCS#10). Owns: reading a CSR with every check a CA must
 * make before certifying someone else's key (self-signature, key strength, a usable
 * commonName, SANs we understand) and signing it under a profile. Must not: copy requested
 * extensions into the certificate; only the SANs are taken, after canonicalSans.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { loadCa, type CaMaterial } from './ca.js';
import {
  DerError,
  childrenOf,
  contextTag,
  expectTag,
  parseDer,
  readBitString,
  readOid,
  readOctetString,
  sequenceOf,
  Tag,
  type DerElement,
} from './der.js';
import { assertStrongKey, type KeyAlgorithm } from './keys.js';
import { assertProfile, leafSans, signLeafCertificate, type CertificateProfile, type SignedCertificate } from './leaf.js';
import { assertNameText, buildSubject } from './names.js';
import { PkiError } from './pki-error.js';
import { canonicalSans, type SubjectAltName } from './san.js';
import { DEFAULT_LEAF_DAYS } from './issue.js';
import { hashForSignatureOid, verifySignature } from './signing.js';
import { assertDays } from './validity.js';
import { x509 } from './x509.js';

export interface CsrInfo {
  readonly commonName: string;
  readonly organizationalUnits: string[];
  /** Canonical (see canonicalSans). */
  readonly sans: SubjectAltName[];
  readonly keyAlgorithm: KeyAlgorithm;
}

export interface SignCsrOptions {
  readonly ca: CaMaterial;
  readonly csrPem: string;
  readonly profile: CertificateProfile;
  /** Lifetime in days; default 365, never past the CA's notAfter. */
  readonly days?: number;
  readonly now?: Date;
  readonly ocspUrl?: string;
  readonly crlUrl?: string;
  /**
   * The identity to certify instead of the CSR's subject and SANs (device provisioning:
   * the template decides it); the CSR then needs no subject at all.
   */
  readonly identity?: { readonly commonName: string; readonly organizationalUnits: readonly string[]; readonly sans: readonly SubjectAltName[] };
}

/** A CSR is a few hundred bytes; anything this large is not one. */
const MAX_CSR_PEM_LENGTH = 64 * 1024;
const CSR_BLOCK = /-----BEGIN (NEW )?CERTIFICATE REQUEST-----([\s\S]*?)-----END \1CERTIFICATE REQUEST-----/;
const OID_EXTENSION_REQUEST = '1.2.840.113549.1.9.14';
const OID_SUBJECT_ALT_NAME = '2.5.29.17';
const OID_BASIC_CONSTRAINTS = '2.5.29.19';

function badCsr(message: string): never {
  throw new PkiError('ERR_PKI_BAD_CSR', message);
}

interface CsrParts {
  readonly info: DerElement;
  readonly subject: DerElement;
  readonly spki: DerElement;
  readonly attributes: DerElement | undefined;
  readonly signatureOid: string;
  readonly signature: Buffer;
}

function csrDer(pem: string): Buffer {
  if (typeof pem !== 'string') badCsr('CSR must be a PEM string');
  if (pem.length > MAX_CSR_PEM_LENGTH) badCsr(`CSR PEM is larger than ${MAX_CSR_PEM_LENGTH} bytes`);
  const match = CSR_BLOCK.exec(pem);
  if (match === null) badCsr('no "CERTIFICATE REQUEST" PEM block found');
  const body = (match[2] ?? '').replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(body)) badCsr('CSR PEM is not valid base64');
  return Buffer.from(body, 'base64');
}

function splitCsr(der: Buffer): CsrParts {
  const [info, algorithm, signature] = sequenceOf(parseDer(der), 'CertificationRequest');
  const fields = sequenceOf(info, 'CertificationRequestInfo');
  const [version, subject, spki, attributes] = fields;
  if (expectTag(version, Tag.Integer, 'version').content[0] !== 0) throw new DerError('unsupported CSR version');
  return {
    info: info!,
    subject: expectTag(subject, Tag.Sequence, 'subject'),
    spki: expectTag(spki, Tag.Sequence, 'subjectPKInfo'),
    attributes: attributes === undefined ? undefined : expectTag(attributes, contextTag(0, true), 'attributes'),
    signatureOid: readOid(sequenceOf(algorithm, 'signatureAlgorithm')[0], 'signature algorithm'),
    signature: readBitString(signature, 'signature'),
  };
}

/** The value (DER) of extension `oid` from the extensionRequest attribute, if the CSR asks for it. */
function requestedExtension(attributes: DerElement | undefined, oid: string): Buffer | undefined {
  if (attributes === undefined) return undefined;
  for (const attribute of childrenOf(attributes)) {
    const [type, values] = sequenceOf(attribute, 'attribute');
    if (readOid(type, 'attribute type') !== OID_EXTENSION_REQUEST) continue;
    for (const extensions of childrenOf(expectTag(values, Tag.Set, 'attribute values'))) {
      for (const ext of sequenceOf(extensions, 'extensions')) {
        const parts = sequenceOf(ext, 'extension');
        if (readOid(parts[0], 'extension id') === oid) return readOctetString(parts[parts.length - 1], 'extension value');
      }
    }
  }
  return undefined;
}

/** Whether a requested basicConstraints says cA TRUE (its first element, a BOOLEAN, non-zero). */
function asksForCa(extensionValue: Buffer | undefined): boolean {
  if (extensionValue === undefined) return false;
  const fields = sequenceOf(parseDer(extensionValue), 'basicConstraints');
  const first = fields[0];
  return first !== undefined && first.tag === Tag.Boolean && first.content.length === 1 && first.content[0] !== 0;
}

/** GeneralName tags we issue (RFC 5280 §4.2.1.6, IMPLICIT primitive context tags). */
const GENERAL_NAME_TAGS: Readonly<Record<number, SubjectAltName['type']>> = {
  [contextTag(1, false)]: 'email',
  [contextTag(2, false)]: 'dns',
  [contextTag(6, false)]: 'uri',
  [contextTag(7, false)]: 'ip',
};

function ipText(bytes: Uint8Array): string {
  if (bytes.length === 4) return [...bytes].join('.');
  if (bytes.length === 16) return Array.from({ length: 8 }, (_, i) => ((bytes[2 * i]! << 8) | bytes[2 * i + 1]!).toString(16)).join(':');
  return badCsr('the CSR requests an IP subjectAltName that is neither 4 nor 16 bytes');
}

/** The requested SANs, read here rather than by a library so that every name type is seen. */
function sansFrom(extensionValue: Buffer | undefined): SubjectAltName[] {
  if (extensionValue === undefined) return [];
  const sans: SubjectAltName[] = [];
  for (const name of sequenceOf(parseDer(extensionValue), 'subjectAltName')) {
    const type = GENERAL_NAME_TAGS[name.tag];
    // SECURITY: a name type we cannot show or check (otherName, directoryName, …) is refused
    // rather than silently dropped, so the requester learns what the certificate will not say.
    if (type === undefined) badCsr(`the CSR requests a subjectAltName of tag 0x${name.tag.toString(16)}; only DNS, IP, URI and email are issued`);
    sans.push({ type, value: type === 'ip' ? ipText(name.content) : Buffer.from(name.content).toString('latin1') });
  }
  return sans;
}

function publicKeyOf(spki: DerElement): KeyObject {
  try {
    return createPublicKey({ key: Buffer.from(spki.raw), format: 'der', type: 'spki' });
  } catch {
    throw new PkiError('ERR_PKI_UNSUPPORTED_KEY', 'the CSR public key cannot be read (unknown algorithm or explicit curve parameters)');
  }
}

interface CheckedCsr extends CsrInfo {
  readonly spki: Uint8Array;
}

/** A CSR's key, checked: what a CA may certify when it chooses the subject itself. */
export interface CsrKeyInfo {
  readonly keyAlgorithm: KeyAlgorithm;
  /** The CSR asks for a CA certificate (basicConstraints cA TRUE); signCsr never grants it. */
  readonly requestsCa: boolean;
  readonly spki: Uint8Array;
}

interface CheckedKey extends CsrKeyInfo {
  readonly parts: CsrParts;
  readonly requestedSans: SubjectAltName[];
}

/** Parses a CSR and proves its key: strong enough, and the self-signature verifies. */
function checkKey(pem: string): CheckedKey {
  const der = csrDer(pem);
  let parts: CsrParts;
  let requestedSans: SubjectAltName[];
  let requestsCa: boolean;
  try {
    parts = splitCsr(der);
    requestedSans = sansFrom(requestedExtension(parts.attributes, OID_SUBJECT_ALT_NAME));
    requestsCa = asksForCa(requestedExtension(parts.attributes, OID_BASIC_CONSTRAINTS));
  } catch (err) {
    if (err instanceof DerError) badCsr(`malformed CSR: ${err.message}`);
    throw err;
  }
  const key = publicKeyOf(parts.spki);
  // SECURITY: weak keys are refused before anything else is trusted.
  const keyAlgorithm = assertStrongKey(key);
  if (hashForSignatureOid(parts.signatureOid) === undefined) {
    badCsr(`unsupported CSR signature algorithm ${parts.signatureOid} (SHA-256/384/512 with ECDSA or RSA PKCS#1 v1.5 only)`);
  }
  // SECURITY: the self-signature proves the requester holds the private key.
  if (!verifySignature(parts.signatureOid, parts.info.raw, key, parts.signature)) badCsr('CSR signature does not verify');
  return { keyAlgorithm, requestsCa, spki: parts.spki.raw, parts, requestedSans };
}

/**
 * Checks a CSR whose subject the CA will choose (device provisioning): only the key and
 * its proof of possession count; ERR_PKI_BAD_CSR / ERR_PKI_WEAK_KEY / ERR_PKI_UNSUPPORTED_KEY
 * as parseCsr.
 */
export function checkCsrKey(pem: string): CsrKeyInfo {
  const { keyAlgorithm, requestsCa, spki } = checkKey(pem);
  return { keyAlgorithm, requestsCa, spki };
}

function checkCsr(pem: string): CheckedCsr {
  const { parts, requestedSans, keyAlgorithm } = checkKey(pem);

  let subject: x509.Name;
  try {
    subject = new x509.Name(parts.subject.raw);
  } catch {
    badCsr('the CSR subject cannot be read');
  }
  const commonNames = subject.getField('CN');
  if (commonNames.length === 0) badCsr('the CSR subject has no commonName (CN)');
  if (commonNames.length > 1) badCsr('the CSR subject has more than one commonName; which identity is meant is ambiguous');
  const commonName = commonNames[0]!;
  const organizationalUnits = subject.getField('OU');
  try {
    assertNameText('commonName', commonName);
    organizationalUnits.forEach((ou) => assertNameText('organizationalUnit', ou));
  } catch (err) {
    if (err instanceof PkiError) badCsr(`CSR subject refused: ${err.message}`);
    throw err;
  }
  return { commonName, organizationalUnits, sans: canonicalSans(requestedSans), keyAlgorithm, spki: parts.spki.raw };
}

/**
 * Reads and checks a CSR: ERR_PKI_BAD_CSR when it is malformed, its self-signature does
 * not verify, it lacks a single commonName or asks for SAN types we do not issue;
 * ERR_PKI_WEAK_KEY for weak keys; ERR_PKI_UNSUPPORTED_KEY for keys we do not certify.
 */
export function parseCsr(pem: string): CsrInfo {
  const { commonName, organizationalUnits, sans, keyAlgorithm } = checkCsr(pem);
  return { commonName, organizationalUnits, sans, keyAlgorithm };
}

/**
 * Certifies a CSR's key under `profile`. The subject is the CSR's CN and OUs; the SANs are
 * the CSR's (canonical; a server without any gets its CN); every other extension comes
 * from the profile, whatever the CSR asked for.
 */
export async function signCsr(options: SignCsrOptions): Promise<SignedCertificate> {
  const { ca, csrPem, profile, days = DEFAULT_LEAF_DAYS, now = new Date(), ocspUrl, crlUrl, identity } = options;
  assertProfile(profile);
  assertDays(days);
  let csr: { commonName: string; organizationalUnits: readonly string[]; sans: readonly SubjectAltName[]; keyAlgorithm: KeyAlgorithm; spki: Uint8Array };
  if (identity !== undefined) {
    assertNameText('commonName', identity.commonName);
    identity.organizationalUnits.forEach((ou) => assertNameText('organizationalUnit', ou));
    const key = checkCsrKey(csrPem);
    csr = { ...identity, sans: canonicalSans([...identity.sans]), keyAlgorithm: key.keyAlgorithm, spki: key.spki };
  } else csr = checkCsr(csrPem);
  const issuer = await loadCa({ certPem: ca.certPem, keyPem: ca.keyPem }, now);
  return signLeafCertificate({
    issuer,
    profile,
    subject: buildSubject(csr.commonName, [...csr.organizationalUnits]),
    publicKey: new x509.PublicKey(csr.spki),
    keyAlgorithm: csr.keyAlgorithm,
    sans: leafSans(profile, csr.commonName, [...csr.sans]),
    days,
    now,
    ocspUrl,
    crlUrl,
  });
}
