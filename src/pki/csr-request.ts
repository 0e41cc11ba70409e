/**
 * Making a certificate signing request (PKCS#10) for a new key: what a requester (the
 * device SDK in device/, or any client of a CA) sends. Owns: generating the key pair,
 * self-signing the request with it (proof of possession) and exporting both as PEM.
 * Must not: write the key anywhere (the caller decides where, with mode 0600), or ask for
 * anything but a subject name: no SANs, no CA flag, no key usages (the CA decides those).
 */
import { DEFAULT_KEY_ALGORITHM, assertKeyAlgorithm, exportPrivateKeyPem, generateKeyPair, signingAlgorithmFor, type KeyAlgorithm } from './keys.js';
import { buildSubject } from './names.js';
import { x509 } from './x509.js';

export interface CreateCsrOptions {
  /** The subject's CN (1-64 characters of text). A provisioning broker ignores it. */
  readonly commonName: string;
  /** Default `ec-p256`. */
  readonly keyAlgorithm?: KeyAlgorithm;
}

export interface CsrWithKey {
  /** `-----BEGIN CERTIFICATE REQUEST-----`, signed with the new key. */
  readonly csrPem: string;
  /** The new private key, unencrypted PKCS#8 PEM. SECURITY: never log it. */
  readonly keyPem: string;
  readonly keyAlgorithm: KeyAlgorithm;
}

/** Generates a fresh key pair and a CSR for it, signed with the hash that matches the key. */
export async function createCsrWithKey(options: CreateCsrOptions): Promise<CsrWithKey> {
  const keyAlgorithm = options.keyAlgorithm ?? DEFAULT_KEY_ALGORITHM;
  assertKeyAlgorithm(keyAlgorithm);
  const subject = buildSubject(options.commonName);
  const keys = await generateKeyPair(keyAlgorithm);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: subject,
    keys,
    signingAlgorithm: signingAlgorithmFor(keyAlgorithm),
  });
  const pem = csr.toString('pem');
  return { csrPem: pem.endsWith('\n') ? pem : `${pem}\n`, keyPem: await exportPrivateKeyPem(keys.privateKey), keyAlgorithm };
}
