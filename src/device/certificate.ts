/**
 * What the device checks in a certificate it receives or loads. Owns: splitting "leaf then
 * chain", checking that a certificate certifies the device's own key, reading its
 * lifetime, and the key algorithm of a stored key. Must not: verify chains (TLS does, at
 * the next connection) or read files.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { DEFAULT_KEY_ALGORITHM, keyAlgorithmOf, splitPemChain, type KeyAlgorithm } from '../pki/index.js';
import { DeviceError, type DeviceErrorCode } from './errors.js';

export interface CertificateFacts {
  /** The leaf, PEM. */
  leafPem: string;
  /** The certificates after the leaf (the issuing CA chain), PEM, or undefined when there are none. */
  chainPem: string | undefined;
  notBefore: Date;
  notAfter: Date;
  serialNumber: string;
}

/**
 * Reads "leaf then chain" and checks that the leaf certifies `keyPem`.
 * SECURITY: a certificate for another key would be useless at best and, stored over a
 * working identity, would lock the device out; it is refused before anything is stored.
 */
export function checkCertificateForKey(certPem: string, keyPem: string, code: DeviceErrorCode, what: string): CertificateFacts {
  let certs: string[];
  let leaf: X509Certificate;
  try {
    certs = splitPemChain(certPem);
    if (certs.length === 0) throw new Error('no certificate');
    leaf = new X509Certificate(certs[0]!);
  } catch {
    throw new DeviceError(code, `${what}: the certificate cannot be read`);
  }
  let matches = false;
  try {
    matches = leaf.checkPrivateKey(createPrivateKey({ key: keyPem, format: 'pem' }));
  } catch {
    throw new DeviceError(code, `${what}: the private key cannot be read`);
  }
  if (!matches) throw new DeviceError(code, `${what}: the certificate does not certify the device's key`);
  const rest = certs.slice(1);
  return {
    leafPem: certs[0]!,
    chainPem: rest.length > 0 ? rest.join('') : undefined,
    notBefore: leaf.validFromDate,
    notAfter: leaf.validToDate,
    serialNumber: leaf.serialNumber.toLowerCase(),
  };
}

/** The algorithm of a stored key, so a renewal makes a key of the same kind (default ec-p256). */
export function keyAlgorithmOfPem(keyPem: string): KeyAlgorithm {
  try {
    return keyAlgorithmOf(createPrivateKey({ key: keyPem, format: 'pem' }));
  } catch {
    return DEFAULT_KEY_ALGORITHM;
  }
}

/** How much of its lifetime a certificate has used at `now`, 0 (fresh) to 1 (expired). */
export function lifetimeUsed(facts: Pick<CertificateFacts, 'notBefore' | 'notAfter'>, now: Date): number {
  const total = facts.notAfter.getTime() - facts.notBefore.getTime();
  if (total <= 0) return 1;
  return Math.min(1, Math.max(0, (now.getTime() - facts.notBefore.getTime()) / total));
}
