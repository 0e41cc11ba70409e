/**
 * Root certificate authorities. Owns: creating a self-signed root CA, and loading CA
 * material for signing with the checks that it really is a usable CA. Must not: persist
 * keys (callers write them, with owner-only permissions).
 */
import { X509Certificate as NodeX509Certificate, type KeyObject } from 'node:crypto';
import { fingerprint256 } from './fingerprint.js';
import {
  DEFAULT_KEY_ALGORITHM,
  assertKeyAlgorithm,
  exportPrivateKeyPem,
  generateKeyPair,
  importPrivateKeyPem,
  signingAlgorithmFor,
  type CryptoKey,
  type ImportedPrivateKey,
  type KeyAlgorithm,
} from './keys.js';
import { buildSubject } from './names.js';
import { PkiError } from './pki-error.js';
import { randomSerialNumber } from './serial.js';
import { validityWindow } from './validity.js';
import { x509 } from './x509.js';

/** A CA as two PEM strings: its certificate and its PKCS#8 private key. */
export interface CaMaterial {
  readonly certPem: string;
  readonly keyPem: string;
}

/** A newly created certificate (CA or leaf) with its key and identity strings. */
export interface CertificateWithKey {
  readonly certPem: string;
  /** Unencrypted PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`). */
  readonly keyPem: string;
  /** Upper-case hex, as Node's X509Certificate.serialNumber reports it. */
  readonly serialNumber: string;
  /** SHA-256 of the DER certificate, `AB:CD:…`, as Node's fingerprint256 reports it. */
  readonly fingerprint256: string;
}

export interface CreateRootCaOptions {
  readonly commonName: string;
  /** Default `ec-p256`. */
  readonly keyAlgorithm?: KeyAlgorithm;
  /** Lifetime in days; default 3650 (ten years). */
  readonly days?: number;
  /**
   * basicConstraints pathLenConstraint; default 0: the root signs end-entity certificates
   * only, so no certificate it issues can act as a CA even if mis-issued.
   */
  readonly pathLength?: number;
  /** Issuance time (tests); default the current time. */
  readonly now?: Date;
}

export const DEFAULT_CA_DAYS = 3650;

/** Turns a certificate from @peculiar/x509 into PEM with a trailing newline. */
export function certificateToPem(cert: x509.X509Certificate): string {
  const pem = cert.toString('pem');
  return pem.endsWith('\n') ? pem : `${pem}\n`;
}

/**
 * Creates a self-signed root CA: basicConstraints CA:true (critical), keyUsage
 * keyCertSign + cRLSign (critical), subject and authority key identifiers.
 */
export async function createRootCa(options: CreateRootCaOptions): Promise<CertificateWithKey> {
  // Copy the input before checking it, so a caller cannot change it between check and use.
  const { commonName, keyAlgorithm = DEFAULT_KEY_ALGORITHM, days = DEFAULT_CA_DAYS, pathLength = 0, now = new Date() } = options;
  assertKeyAlgorithm(keyAlgorithm);
  if (!Number.isInteger(pathLength) || pathLength < 0 || pathLength > 8) {
    throw new PkiError('ERR_PKI_INVALID_INPUT', `pathLength must be an integer from 0 to 8, got ${String(pathLength)}`);
  }
  const name = buildSubject(commonName);
  const { notBefore, notAfter } = validityWindow(days, now);
  const keys = await generateKeyPair(keyAlgorithm);
  const ski = await x509.SubjectKeyIdentifierExtension.create(keys.publicKey);
  const serialNumber = randomSerialNumber();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber,
    name,
    notBefore,
    notAfter,
    keys,
    signingAlgorithm: signingAlgorithmFor(keyAlgorithm),
    extensions: [
      new x509.BasicConstraintsExtension(true, pathLength, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      ski,
      new x509.AuthorityKeyIdentifierExtension(ski.keyId),
    ],
  });
  const certPem = certificateToPem(cert);
  return { certPem, keyPem: await exportPrivateKeyPem(keys.privateKey), serialNumber, fingerprint256: fingerprint256(certPem) };
}

/** A CA ready to sign: parsed certificate, signing key and the key id leaves point to. */
export interface LoadedCa {
  readonly cert: x509.X509Certificate;
  readonly privateKey: CryptoKey;
  /** The same private key as a Node KeyObject (node:crypto signing, e.g. OCSP responses). */
  readonly keyObject: KeyObject;
  readonly keyAlgorithm: KeyAlgorithm;
  /** Hex key identifier for the authority key identifier of issued certificates. */
  readonly keyId: string;
  readonly notAfter: Date;
}

/**
 * Loads CA material for signing at time `now`.
 * SECURITY: refuses (ERR_PKI_INVALID_CA) a certificate that is not a CA, lacks keyCertSign,
 * is outside its validity period, or whose public key does not match the private key, so
 * we never issue certificates that chain to nothing or that a verifier would reject.
 */
export async function loadCa(ca: CaMaterial, now: Date): Promise<LoadedCa> {
  const { certPem, keyPem } = ca;
  if (typeof certPem !== 'string' || typeof keyPem !== 'string') {
    throw new PkiError('ERR_PKI_INVALID_CA', 'CA certPem and keyPem must be PEM strings');
  }
  let cert: x509.X509Certificate;
  let nodeCert: NodeX509Certificate;
  try {
    cert = new x509.X509Certificate(certPem);
    nodeCert = new NodeX509Certificate(certPem);
  } catch {
    throw new PkiError('ERR_PKI_INVALID_CA', 'cannot parse the CA certificate');
  }
  const basic = cert.getExtension(x509.BasicConstraintsExtension);
  if (basic === null || !basic.ca) {
    throw new PkiError('ERR_PKI_INVALID_CA', `certificate "${cert.subject}" is not a CA (basicConstraints CA:TRUE missing)`);
  }
  const usage = cert.getExtension(x509.KeyUsagesExtension);
  if (usage !== null && (usage.usages & x509.KeyUsageFlags.keyCertSign) === 0) {
    throw new PkiError('ERR_PKI_INVALID_CA', `CA certificate "${cert.subject}" lacks keyUsage keyCertSign`);
  }
  if (now < cert.notBefore || now > cert.notAfter) {
    throw new PkiError('ERR_PKI_INVALID_CA', `CA certificate "${cert.subject}" is not valid at ${now.toISOString()} (valid ${cert.notBefore.toISOString()} to ${cert.notAfter.toISOString()})`);
  }
  let imported: ImportedPrivateKey;
  try {
    imported = await importPrivateKeyPem(keyPem);
  } catch (err) {
    throw new PkiError('ERR_PKI_INVALID_CA', `cannot use the CA private key: ${err instanceof Error ? err.message : 'unreadable'}`);
  }
  if (!nodeCert.checkPrivateKey(imported.keyObject)) {
    throw new PkiError('ERR_PKI_INVALID_CA', `the CA private key does not match certificate "${cert.subject}"`);
  }
  const ski = cert.getExtension(x509.SubjectKeyIdentifierExtension);
  const keyId = ski !== null ? ski.keyId : (await x509.SubjectKeyIdentifierExtension.create(cert.publicKey)).keyId;
  return { cert, privateKey: imported.privateKey, keyObject: imported.keyObject, keyAlgorithm: imported.keyAlgorithm, keyId, notAfter: cert.notAfter };
}
