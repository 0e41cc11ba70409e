/**
 * Hybrid (classic + post-quantum) signatures: one message signed by a classic key (ECDSA
 * P-256/P-384/P-521, Ed25519/Ed448 or RSA-PSS, as the KeyObject is) and by an ML-DSA key
 * (FIPS 204; ML-DSA-65 by default). Owns: generating, exporting and importing ML-DSA
 * keys, the bytes both signatures cover, signing and verifying both halves, and the
 * SHA-256 fingerprint that names a public key. Must not: read or write files, or decide
 * which keys to trust (callers bind the ML-DSA key to their PKI: X.509 certificates stay
 * ECDSA/RSA, because OpenSSL 3.0 peers cannot verify ML-DSA certificates).
 *
 * SECURITY: both halves sign the same framed bytes: a fixed prefix, the caller's context,
 * both algorithm names, then the message (each length-prefixed, so no two inputs frame
 * alike).
 * - The context separates uses (audit checkpoints, OTA manifests): a signature made for
 *   one never verifies as the other, even over equal message bytes.
 * - The algorithm names bind the pair: a half cannot be lifted off and presented as a
 *   signature of some other (e.g. classic-only) format, and the verifier re-derives the
 *   names from the public keys it trusts, not from what the signature claims.
 * - `ok` needs both halves: the result holds while either algorithm is unbroken.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, constants, type KeyObject } from 'node:crypto';
import { PkiError } from './pki-error.js';

export const ML_DSA_65 = 'ML-DSA-65';
const FRAME_PREFIX = 'bastion-hybrid-signature-v1';

/** The private halves that sign. */
export interface HybridPrivateKeys {
  classic: KeyObject;
  pq: KeyObject;
}

/** The public halves that verify. */
export interface HybridPublicKeys {
  classicPublic: KeyObject;
  pqPublic: KeyObject;
}

export interface HybridSignature {
  /** Base64 classic signature (DER for ECDSA). */
  classic: string;
  /** Base64 ML-DSA signature. */
  pq: string;
  /** e.g. "ECDSA P-256". */
  classicAlg: string;
  /** e.g. "ML-DSA-65". */
  pqAlg: string;
}

export interface HybridVerification {
  /** Both halves valid. */
  ok: boolean;
  classic: boolean;
  pq: boolean;
  /** The algorithms of the given public keys (what was checked). */
  classicAlg: string;
  pqAlg: string;
}

/** Digest and padding of a classic key's signatures, and the name they go by. */
interface ClassicProfile {
  name: string;
  digest: string | null;
  pss: boolean;
}

const CURVES: Record<string, { name: string; digest: string }> = {
  prime256v1: { name: 'ECDSA P-256', digest: 'sha256' },
  secp384r1: { name: 'ECDSA P-384', digest: 'sha384' },
  secp521r1: { name: 'ECDSA P-521', digest: 'sha512' },
};

function classicProfile(key: KeyObject): ClassicProfile {
  const type = key.asymmetricKeyType;
  if (type === 'ec') {
    const curve = CURVES[key.asymmetricKeyDetails?.namedCurve ?? ''];
    if (curve !== undefined) return { name: curve.name, digest: curve.digest, pss: false };
  } else if (type === 'ed25519') return { name: 'Ed25519', digest: null, pss: false };
  else if (type === 'ed448') return { name: 'Ed448', digest: null, pss: false };
  else if (type === 'rsa') return { name: 'RSA-PSS SHA-256', digest: 'sha256', pss: true };
  throw new PkiError('ERR_PKI_INVALID_INPUT', `unsupported classic key for a hybrid signature: ${type ?? 'unknown'}${key.asymmetricKeyDetails?.namedCurve !== undefined ? ` ${key.asymmetricKeyDetails.namedCurve}` : ''}`);
}

function pqAlgorithmOf(key: KeyObject): string {
  const type = key.asymmetricKeyType;
  if (type === undefined || !/^ml-dsa-(44|65|87)$/.test(type)) throw new PkiError('ERR_PKI_INVALID_INPUT', `not an ML-DSA key: ${type ?? 'unknown'}`);
  return type.toUpperCase();
}

function publicOf(key: KeyObject): KeyObject {
  return key.type === 'private' ? createPublicKey(key) : key;
}

/** The name of a classic key's signature algorithm, e.g. "ECDSA P-256". */
export function classicAlgorithmOf(key: KeyObject): string {
  return classicProfile(key).name;
}

/** A fresh ML-DSA-65 key pair. */
export function generateMlDsaKeyPair(): { privateKey: KeyObject; publicKey: KeyObject } {
  return generateKeyPairSync('ml-dsa-65');
}

/** PKCS#8 PEM of an ML-DSA private key (unencrypted: the caller writes it 0600). */
export function exportMlDsaPrivateKeyPem(key: KeyObject): string {
  pqAlgorithmOf(key);
  return key.export({ type: 'pkcs8', format: 'pem' }) as string;
}

/** SPKI PEM of a public key (or of a private key's public half). */
export function exportPublicKeyPem(key: KeyObject): string {
  return publicOf(key).export({ type: 'spki', format: 'pem' }) as string;
}

/** Reads an ML-DSA key of the given kind from PEM; refuses any other key type with one line. */
function importMlDsaKey(pem: string, kind: 'private' | 'public'): KeyObject {
  let key: KeyObject;
  try {
    key = kind === 'private' ? createPrivateKey(pem) : createPublicKey(pem);
  } catch (err) {
    throw new PkiError('ERR_PKI_INVALID_INPUT', `cannot read the ML-DSA ${kind} key: ${err instanceof Error ? err.message : String(err)}`);
  }
  pqAlgorithmOf(key);
  return key;
}

/** Reads an ML-DSA private key from PEM; refuses any other key type. */
export function importMlDsaPrivateKey(pem: string): KeyObject {
  return importMlDsaKey(pem, 'private');
}

/** Reads an ML-DSA public key from SPKI PEM; refuses any other key type. */
export function importMlDsaPublicKey(pem: string): KeyObject {
  return importMlDsaKey(pem, 'public');
}

/** SHA-256 of the public key's SPKI DER, as upper-case hex pairs joined by ':' (the certificate fingerprint format). */
export function publicKeyFingerprint(key: KeyObject): string {
  const der = publicOf(key).export({ type: 'spki', format: 'der' });
  return (
    createHash('sha256')
      .update(der)
      .digest('hex')
      .toUpperCase()
      .match(/../g)
      ?.join(':') ?? ''
  );
}

function lengthPrefixed(part: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(part.length);
  return Buffer.concat([len, part]);
}

/** The bytes both halves sign. */
function framed(context: string, message: string | Uint8Array, classicAlg: string, pqAlg: string): Buffer {
  if (context.length === 0) throw new PkiError('ERR_PKI_INVALID_INPUT', 'a hybrid signature needs a context string');
  return Buffer.concat([
    lengthPrefixed(Buffer.from(FRAME_PREFIX)),
    lengthPrefixed(Buffer.from(context)),
    lengthPrefixed(Buffer.from(classicAlg)),
    lengthPrefixed(Buffer.from(pqAlg)),
    typeof message === 'string' ? Buffer.from(message) : Buffer.from(message.buffer, message.byteOffset, message.byteLength),
  ]);
}

function classicSign(profile: ClassicProfile, data: Buffer, key: KeyObject): Buffer {
  if (profile.pss) return sign(profile.digest, data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST });
  return sign(profile.digest, data, key);
}

function classicVerify(profile: ClassicProfile, data: Buffer, key: KeyObject, signature: Buffer): boolean {
  if (profile.pss) return verify(profile.digest, data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST }, signature);
  return verify(profile.digest, data, key, signature);
}

/** Signs `message` under `context` with both keys. */
export function hybridSign(context: string, message: string | Uint8Array, keys: HybridPrivateKeys): HybridSignature {
  const profile = classicProfile(keys.classic);
  const pqAlg = pqAlgorithmOf(keys.pq);
  const data = framed(context, message, profile.name, pqAlg);
  return {
    classic: classicSign(profile, data, keys.classic).toString('base64'),
    pq: sign(null, data, keys.pq).toString('base64'),
    classicAlg: profile.name,
    pqAlg,
  };
}

/**
 * Checks both halves of `sig` over `message` under `context`. Each half is judged on its
 * own (a malformed one is false, not an exception); `ok` needs both.
 */
export function hybridVerify(context: string, message: string | Uint8Array, sig: Pick<HybridSignature, 'classic' | 'pq'>, keys: HybridPublicKeys): HybridVerification {
  const profile = classicProfile(keys.classicPublic);
  const pqAlg = pqAlgorithmOf(keys.pqPublic);
  const data = framed(context, message, profile.name, pqAlg);
  const half = (check: () => boolean): boolean => {
    try {
      return check();
    } catch {
      return false;
    }
  };
  const classic = half(() => classicVerify(profile, data, publicOf(keys.classicPublic), Buffer.from(sig.classic, 'base64')));
  const pq = half(() => verify(null, data, publicOf(keys.pqPublic), Buffer.from(sig.pq, 'base64')));
  return { ok: classic && pq, classic, pq, classicAlg: profile.name, pqAlg };
}

/** The functions above as one value, for modules that receive the scheme instead of importing pki/ (security/audit). */
export const HYBRID_SIGNATURES = {
  sign: hybridSign,
  verify: hybridVerify,
  fingerprint: publicKeyFingerprint,
  classicAlgorithm: classicAlgorithmOf,
} as const;
