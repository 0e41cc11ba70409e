/**
 * OCSP requests (RFC 6960 §4.1) and the CertID both sides name a certificate by. Owns:
 * building a request the way `openssl ocsp` does (SHA-1 CertID, optional nonce) and
 * parsing any request defensively. Must not: trust anything in a request; every field is
 * bounds-checked and any malformation is ERR_PKI_BAD_OCSP (answered as malformedRequest).
 */
import { createHash } from 'node:crypto';
import {
  DerError,
  contextTag,
  explicit,
  explicitInner,
  extension,
  integer,
  nullValue,
  octetString,
  oid,
  parseDer,
  readIntegerHex,
  readOctetString,
  readOid,
  sequence,
  sequenceOf,
  Tag,
  type DerElement,
} from './der.js';
import { parseNodeCertificate } from './fingerprint.js';
import { PkiError } from './pki-error.js';
import { certificateParts } from './signing.js';

/** A certificate as OCSP names it: hashes of its issuer's name and key, and its serial. */
export interface OcspCertId {
  readonly hashAlgorithm: 'sha1' | 'sha256';
  readonly issuerNameHash: Buffer;
  readonly issuerKeyHash: Buffer;
  /** Upper-case hex, as Node prints serials. */
  readonly serialNumber: string;
}

export interface OcspRequestInfo {
  readonly certIds: OcspCertId[];
  readonly nonce?: Buffer;
}

export const OID_OCSP_NONCE = '1.3.6.1.5.5.7.48.1.2';
const HASH_OIDS: Readonly<Record<OcspCertId['hashAlgorithm'], string>> = { sha1: '1.3.14.3.2.26', sha256: '2.16.840.1.101.3.4.2.1' };
const HASH_LENGTHS: Readonly<Record<OcspCertId['hashAlgorithm'], number>> = { sha1: 20, sha256: 32 };
/** RFC 8954 §2.1: a nonce is 1 to 32 octets. */
export const MAX_NONCE_LENGTH = 32;
/** Bounds on what we read: a real request is a few hundred bytes and names a handful of certificates. */
const MAX_REQUEST_BYTES = 16 * 1024;
const MAX_CERT_IDS = 64;

/** The hashes a CertID for certificates issued by `issuerCertDer` carries. */
export function issuerHashes(issuerCertDer: Uint8Array, hashAlgorithm: OcspCertId['hashAlgorithm']): { nameHash: Buffer; keyHash: Buffer } {
  const parts = certificateParts(issuerCertDer);
  return {
    nameHash: createHash(hashAlgorithm).update(parts.subjectName).digest(),
    keyHash: createHash(hashAlgorithm).update(parts.publicKeyBits).digest(),
  };
}

/** CertID ::= SEQUENCE { hashAlgorithm, issuerNameHash, issuerKeyHash, serialNumber }. */
export function certIdDer(id: OcspCertId): Buffer {
  return sequence(sequence(oid(HASH_OIDS[id.hashAlgorithm]), nullValue()), octetString(id.issuerNameHash), octetString(id.issuerKeyHash), integer(id.serialNumber));
}

/** Reads a CertID; only SHA-1 and SHA-256 CertIDs are understood. */
export function readCertId(element: DerElement | undefined): OcspCertId {
  const [algorithm, nameHash, keyHash, serial] = sequenceOf(element, 'CertID');
  const algOid = readOid(sequenceOf(algorithm, 'hashAlgorithm')[0], 'hash algorithm');
  const hashAlgorithm = (Object.keys(HASH_OIDS) as Array<OcspCertId['hashAlgorithm']>).find((h) => HASH_OIDS[h] === algOid);
  if (hashAlgorithm === undefined) throw new DerError(`unsupported CertID hash algorithm ${algOid}`);
  const issuerNameHash = readOctetString(nameHash, 'issuerNameHash');
  const issuerKeyHash = readOctetString(keyHash, 'issuerKeyHash');
  if (issuerNameHash.length !== HASH_LENGTHS[hashAlgorithm] || issuerKeyHash.length !== HASH_LENGTHS[hashAlgorithm]) {
    throw new DerError(`CertID hashes are not ${hashAlgorithm} digests`);
  }
  return { hashAlgorithm, issuerNameHash, issuerKeyHash, serialNumber: readIntegerHex(serial, 'serialNumber') };
}

/** The nonce extension (value wrapped in an OCTET STRING, as OpenSSL and RFC 8954 write it). */
export function nonceExtension(nonce: Uint8Array): Buffer {
  return extension(OID_OCSP_NONCE, octetString(nonce));
}

export function assertNonce(nonce: unknown): asserts nonce is Buffer {
  if (!(nonce instanceof Uint8Array) || nonce.length === 0 || nonce.length > MAX_NONCE_LENGTH) {
    throw new PkiError('ERR_PKI_INVALID_INPUT', `an OCSP nonce must be 1 to ${MAX_NONCE_LENGTH} bytes`);
  }
}

/** The nonce in an Extensions SEQUENCE, if any. Old clients put the bare bytes in extnValue. */
export function readNonce(extensions: DerElement): Buffer | undefined {
  for (const ext of sequenceOf(extensions, 'extensions')) {
    const parts = sequenceOf(ext, 'extension');
    if (readOid(parts[0], 'extension id') !== OID_OCSP_NONCE) continue;
    const value = readOctetString(parts[parts.length - 1], 'nonce');
    let nonce: Buffer = value;
    try {
      const inner = parseDer(value);
      if (inner.tag === Tag.OctetString) nonce = Buffer.from(inner.content);
    } catch {
      // Not wrapped: the bytes are the nonce.
    }
    if (nonce.length === 0 || nonce.length > MAX_NONCE_LENGTH) throw new DerError(`nonce of ${nonce.length} bytes (1 to ${MAX_NONCE_LENGTH} allowed)`);
    return nonce;
  }
  return undefined;
}

/**
 * An OCSP request for one certificate: SHA-1 CertID (what `openssl ocsp` sends and every
 * responder understands), with a nonce extension when `nonce` is given.
 */
export function buildOcspRequest(options: { certPem: string; issuerPem: string; nonce?: Buffer }): Buffer {
  const { certPem, issuerPem, nonce } = options;
  const cert = parseNodeCertificate(certPem);
  const issuer = parseNodeCertificate(issuerPem);
  if (!cert.checkIssued(issuer)) throw new PkiError('ERR_PKI_INVALID_INPUT', `certificate ${cert.serialNumber} was not issued by the given issuer`);
  if (nonce !== undefined) assertNonce(nonce);
  const { nameHash, keyHash } = issuerHashes(issuer.raw, 'sha1');
  const id = certIdDer({ hashAlgorithm: 'sha1', issuerNameHash: nameHash, issuerKeyHash: keyHash, serialNumber: cert.serialNumber });
  const tbs = sequence(sequence(sequence(id)), ...(nonce !== undefined ? [explicit(2, sequence(nonceExtension(nonce)))] : []));
  return sequence(tbs);
}

function readRequest(der: Uint8Array): OcspRequestInfo {
  const [tbsElement] = sequenceOf(parseDer(der), 'OCSPRequest');
  const fields = sequenceOf(tbsElement, 'TBSRequest');
  let i = 0;
  if (fields[i]?.tag === contextTag(0, true)) i++; // version, v1 only
  if (fields[i]?.tag === contextTag(1, true)) i++; // requestorName: not used for decisions
  const requests = sequenceOf(fields[i], 'requestList');
  i++;
  if (requests.length === 0) throw new DerError('empty requestList');
  if (requests.length > MAX_CERT_IDS) throw new DerError(`more than ${MAX_CERT_IDS} certificates in one request`);
  const certIds = requests.map((request) => readCertId(sequenceOf(request, 'Request')[0]));
  const extensions = fields[i];
  let nonce: Buffer | undefined;
  if (extensions !== undefined) {
    if (extensions.tag !== contextTag(2, true)) throw new DerError('unexpected field after requestList');
    nonce = readNonce(explicitInner(extensions, 'requestExtensions'));
    if (fields.length > i + 1) throw new DerError('unexpected fields after requestExtensions');
  }
  return nonce === undefined ? { certIds } : { certIds, nonce };
}

/** Parses an OCSP request. Throws ERR_PKI_BAD_OCSP for anything malformed, never anything else. */
export function parseOcspRequest(der: Uint8Array): OcspRequestInfo {
  if (!(der instanceof Uint8Array)) throw new PkiError('ERR_PKI_BAD_OCSP', 'OCSP request must be bytes');
  if (der.length > MAX_REQUEST_BYTES) throw new PkiError('ERR_PKI_BAD_OCSP', `OCSP request larger than ${MAX_REQUEST_BYTES} bytes`);
  try {
    return readRequest(Uint8Array.from(der));
  } catch (err) {
    if (err instanceof DerError || err instanceof PkiError) throw new PkiError('ERR_PKI_BAD_OCSP', `malformed OCSP request: ${err.message}`);
    throw new PkiError('ERR_PKI_BAD_OCSP', 'malformed OCSP request');
  }
}
