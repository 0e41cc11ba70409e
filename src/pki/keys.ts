/**
 * Key pairs for the PKI. Owns: the supported algorithms (`KeyAlgorithm`), generating key
 * pairs, PKCS#8 PEM export, reading a PEM private key back, and the signature algorithm
 * each key signs with. Must not: write keys anywhere (callers decide where and with
 * which file mode), or log key material.
 */
import { createPrivateKey, type KeyObject, type webcrypto } from 'node:crypto';
import { PkiError } from './pki-error.js';
import { subtle } from './x509.js';

/** Supported key algorithms. `ec-p256` is the default everywhere. */
export type KeyAlgorithm = 'ec-p256' | 'ec-p384' | 'rsa-2048' | 'rsa-3072';

export const KEY_ALGORITHMS: readonly KeyAlgorithm[] = ['ec-p256', 'ec-p384', 'rsa-2048', 'rsa-3072'];

export const DEFAULT_KEY_ALGORITHM: KeyAlgorithm = 'ec-p256';

export type CryptoKey = webcrypto.CryptoKey;
export type CryptoKeyPair = webcrypto.CryptoKeyPair;

type EcParams = { name: 'ECDSA'; namedCurve: 'P-256' | 'P-384' };
type RsaParams = { name: 'RSASSA-PKCS1-v1_5'; hash: 'SHA-256' };

/** WebCrypto import parameters for a key of this algorithm. */
function importParams(alg: KeyAlgorithm): EcParams | RsaParams {
  switch (alg) {
    case 'ec-p256':
      return { name: 'ECDSA', namedCurve: 'P-256' };
    case 'ec-p384':
      return { name: 'ECDSA', namedCurve: 'P-384' };
    case 'rsa-2048':
    case 'rsa-3072':
      return { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  }
}

/** True for the RSA algorithms (they also get keyEncipherment on server certificates). */
export function isRsa(alg: KeyAlgorithm): boolean {
  return alg === 'rsa-2048' || alg === 'rsa-3072';
}

/** Throws ERR_PKI_INVALID_INPUT unless `value` is one of KEY_ALGORITHMS. */
export function assertKeyAlgorithm(value: unknown): asserts value is KeyAlgorithm {
  if (typeof value !== 'string' || !(KEY_ALGORITHMS as readonly string[]).includes(value)) {
    throw new PkiError('ERR_PKI_INVALID_INPUT', `unsupported key algorithm ${JSON.stringify(value)}; expected one of ${KEY_ALGORITHMS.join(', ')}`);
  }
}

/**
 * The signature algorithm a key of this algorithm signs certificates with.
 * SECURITY: the hash matches the curve strength (P-384 → SHA-384); RSA uses SHA-256.
 */
export function signingAlgorithmFor(alg: KeyAlgorithm): { name: string; hash: string } {
  switch (alg) {
    case 'ec-p256':
      return { name: 'ECDSA', hash: 'SHA-256' };
    case 'ec-p384':
      return { name: 'ECDSA', hash: 'SHA-384' };
    case 'rsa-2048':
    case 'rsa-3072':
      return { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  }
}

/** Generates an extractable signing key pair (the private key must be exportable to PEM). */
export async function generateKeyPair(alg: KeyAlgorithm = DEFAULT_KEY_ALGORITHM): Promise<CryptoKeyPair> {
  assertKeyAlgorithm(alg);
  const usages: webcrypto.KeyUsage[] = ['sign', 'verify'];
  switch (alg) {
    case 'ec-p256':
    case 'ec-p384':
      return subtle.generateKey({ name: 'ECDSA', namedCurve: alg === 'ec-p256' ? 'P-256' : 'P-384' }, true, usages);
    case 'rsa-2048':
    case 'rsa-3072':
      return subtle.generateKey(
        {
          name: 'RSASSA-PKCS1-v1_5',
          hash: 'SHA-256',
          modulusLength: alg === 'rsa-2048' ? 2048 : 3072,
          publicExponent: new Uint8Array([0x01, 0x00, 0x01]),
        },
        true,
        usages,
      );
  }
}

/** Wraps DER bytes in PEM armour with 64-character lines and a trailing newline. */
export function derToPem(der: ArrayBuffer | Uint8Array, label: string): string {
  const b64 = Buffer.from(der instanceof Uint8Array ? der : new Uint8Array(der)).toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/**
 * Exports a private key as unencrypted PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), the
 * form Node's tls, OpenSSL and mosquitto all read.
 */
export async function exportPrivateKeyPem(key: CryptoKey): Promise<string> {
  const der = await subtle.exportKey('pkcs8', key);
  return derToPem(der, 'PRIVATE KEY');
}

/** The KeyAlgorithm of a Node KeyObject, or a PkiError if it is not one we support. */
export function keyAlgorithmOf(key: KeyObject): KeyAlgorithm {
  const details = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'ec') {
    if (details.namedCurve === 'prime256v1') return 'ec-p256';
    if (details.namedCurve === 'secp384r1') return 'ec-p384';
    throw new PkiError('ERR_PKI_UNSUPPORTED_KEY', `unsupported EC curve ${String(details.namedCurve)}; expected P-256 or P-384`);
  }
  if (key.asymmetricKeyType === 'rsa') {
    if (details.modulusLength === 2048) return 'rsa-2048';
    if (details.modulusLength === 3072) return 'rsa-3072';
    throw new PkiError('ERR_PKI_UNSUPPORTED_KEY', `unsupported RSA modulus length ${String(details.modulusLength)}; expected 2048 or 3072`);
  }
  throw new PkiError('ERR_PKI_UNSUPPORTED_KEY', `unsupported key type ${String(key.asymmetricKeyType)}; expected EC (P-256, P-384) or RSA (2048, 3072)`);
}

/** Names for the curves Node reports, in our `ec-…` style. */
const CURVE_NAMES: Readonly<Record<string, string>> = { prime256v1: 'p256', secp384r1: 'p384', secp521r1: 'p521', prime192v1: 'p192' };

/**
 * A readable name for any key, supported or not (`ec-p256`, `rsa-1024`, `ec-secp256k1`,
 * `ed25519`): for describing certificates and naming a refused key.
 */
export function describeKeyAlgorithm(key: KeyObject): string {
  const details = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'ec') {
    const curve = String(details.namedCurve ?? 'unknown');
    return `ec-${CURVE_NAMES[curve] ?? curve}`;
  }
  if (key.asymmetricKeyType === 'rsa' || key.asymmetricKeyType === 'rsa-pss') {
    return `${key.asymmetricKeyType}-${String(details.modulusLength ?? 'unknown')}`;
  }
  return String(key.asymmetricKeyType ?? 'unknown');
}

/**
 * The KeyAlgorithm of a key someone else generated (a CSR's public key).
 * SECURITY: EC curves other than P-256/P-384 (P-192, secp256k1, …) and RSA under 2048 bits
 * are refused as ERR_PKI_WEAK_KEY, naming the key; other strong keys we do not issue for
 * (RSA-4096, Ed25519) are ERR_PKI_UNSUPPORTED_KEY.
 */
export function assertStrongKey(key: KeyObject): KeyAlgorithm {
  const details = key.asymmetricKeyDetails ?? {};
  const name = describeKeyAlgorithm(key);
  if (key.asymmetricKeyType === 'ec' && name !== 'ec-p256' && name !== 'ec-p384') {
    throw new PkiError('ERR_PKI_WEAK_KEY', `key ${name} is refused: only EC curves P-256 and P-384 are accepted`);
  }
  if ((key.asymmetricKeyType === 'rsa' || key.asymmetricKeyType === 'rsa-pss') && (details.modulusLength ?? 0) < 2048) {
    throw new PkiError('ERR_PKI_WEAK_KEY', `key ${name} is refused: RSA keys need at least 2048 bits`);
  }
  return keyAlgorithmOf(key);
}

export interface ImportedPrivateKey {
  /** A non-extractable WebCrypto key usable for signing. */
  readonly privateKey: CryptoKey;
  readonly keyAlgorithm: KeyAlgorithm;
  /** The same key as a Node KeyObject (for matching it against a certificate). */
  readonly keyObject: KeyObject;
}

/**
 * Reads an unencrypted PEM private key (PKCS#8, or the legacy SEC1 / PKCS#1 forms) and
 * imports it for signing. Throws ERR_PKI_UNSUPPORTED_KEY for anything else.
 */
export async function importPrivateKeyPem(pem: string): Promise<ImportedPrivateKey> {
  let keyObject: KeyObject;
  try {
    keyObject = createPrivateKey({ key: pem, format: 'pem' });
  } catch (err) {
    // SECURITY: do not echo the input; it is a private key.
    const reason = err instanceof Error && 'code' in err ? String((err as { code: unknown }).code) : 'unreadable';
    throw new PkiError('ERR_PKI_UNSUPPORTED_KEY', `cannot read private key PEM (${reason}); expected an unencrypted PKCS#8, SEC1 or PKCS#1 key`);
  }
  const keyAlgorithm = keyAlgorithmOf(keyObject);
  const der = keyObject.export({ format: 'der', type: 'pkcs8' });
  const privateKey = await subtle.importKey('pkcs8', der, importParams(keyAlgorithm), false, ['sign']);
  return { privateKey, keyAlgorithm, keyObject };
}
