/**
 * Signing DER structures we assemble ourselves (CRLs, OCSP responses) and reading the
 * pieces of a certificate they refer to. Owns: the AlgorithmIdentifier for each CA key
 * algorithm and the node:crypto signature over a TBS block. Must not: sign for anything
 * but a loaded, checked CA (loadCa).
 */
import { sign, verify, type KeyObject } from 'node:crypto';
import type { LoadedCa } from './ca.js';
import { DerError, childrenOf, expectTag, nullValue, oid, parseDer, readBitString, sequence, sequenceOf, Tag, type DerElement } from './der.js';
import type { KeyAlgorithm } from './keys.js';

/** The AlgorithmIdentifier (DER) and node:crypto hash a key of this algorithm signs with. */
export function signatureAlgorithm(alg: KeyAlgorithm): { der: Buffer; hash: 'sha256' | 'sha384' } {
  switch (alg) {
    case 'ec-p256':
      return { der: sequence(oid('1.2.840.10045.4.3.2')), hash: 'sha256' };
    case 'ec-p384':
      // SECURITY: the hash matches the curve strength, as for certificates (keys.ts).
      return { der: sequence(oid('1.2.840.10045.4.3.3')), hash: 'sha384' };
    case 'rsa-2048':
    case 'rsa-3072':
      // sha256WithRSAEncryption, parameters NULL (RFC 4055 §5).
      return { der: sequence(oid('1.2.840.113549.1.1.11'), nullValue()), hash: 'sha256' };
  }
}

/** Hash for each signature algorithm we verify. SECURITY: no SHA-1, no MD5. */
const SIGNATURE_HASHES: Readonly<Record<string, string>> = {
  '1.2.840.10045.4.3.2': 'sha256',
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
  '1.2.840.113549.1.1.11': 'sha256',
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
};

/** The node:crypto hash for a signature algorithm OID, or undefined if we do not accept it. */
export function hashForSignatureOid(signatureOid: string): string | undefined {
  return SIGNATURE_HASHES[signatureOid];
}

/**
 * Verifies `signature` over `signed` with `key`; false (never a throw) for a bad signature
 * or an algorithm we do not accept. ECDSA signatures are DER, as X.509 writes them.
 */
export function verifySignature(signatureOid: string, signed: Uint8Array, key: KeyObject, signature: Uint8Array): boolean {
  const hash = hashForSignatureOid(signatureOid);
  if (hash === undefined) return false;
  try {
    return verify(hash, signed, key, signature);
  } catch {
    return false;
  }
}

/** Signs `tbs` with the CA key: ECDSA signatures come out DER-encoded, as X.509 wants. */
export function signWithCa(ca: LoadedCa, tbs: Uint8Array): Buffer {
  return sign(signatureAlgorithm(ca.keyAlgorithm).hash, tbs, ca.keyObject);
}

/** The parts of a certificate that CRLs and OCSP refer to, as their exact DER bytes. */
export interface CertificateParts {
  /** The subject Name element (tag and all): what an issuer name hash covers. */
  readonly subjectName: Uint8Array;
  /** The subjectPublicKey BIT STRING's bits: what an OCSP issuer key hash covers. */
  readonly publicKeyBits: Uint8Array;
}

/** Splits a DER certificate into the parts above. Throws DerError if it is not a certificate. */
export function certificateParts(der: Uint8Array): CertificateParts {
  const [tbsElement] = sequenceOf(parseDer(der), 'Certificate');
  const tbs = sequenceOf(tbsElement, 'TBSCertificate');
  // version [0] is optional (v1 certificates omit it); the rest are positional.
  const start = tbs[0]?.tag === 0xa0 ? 1 : 0;
  const subject: DerElement = expectTag(tbs[start + 4], Tag.Sequence, 'subject');
  const spki = childrenOf(expectTag(tbs[start + 5], Tag.Sequence, 'subjectPublicKeyInfo'));
  if (spki.length !== 2) throw new DerError('subjectPublicKeyInfo: expected algorithm and key');
  return { subjectName: subject.raw, publicKeyBits: readBitString(spki[1], 'subjectPublicKey') };
}
