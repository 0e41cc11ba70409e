/**
 * Intermediate certificate authorities. Owns: creating a CA certificate signed by a root,
 * with the root's path-length budget checked first. Must not: persist keys.
 */
import { certificateToPem, loadCa, type CaMaterial, type CertificateWithKey } from './ca.js';
import { fingerprint256 } from './fingerprint.js';
import { DEFAULT_KEY_ALGORITHM, assertKeyAlgorithm, exportPrivateKeyPem, generateKeyPair, signingAlgorithmFor, type KeyAlgorithm } from './keys.js';
import { buildSubject } from './names.js';
import { PkiError } from './pki-error.js';
import { randomSerialNumber } from './serial.js';
import { assertDays, validityWindow } from './validity.js';
import { x509 } from './x509.js';

export interface CreateIntermediateCaOptions {
  /** The signing root; it needs basicConstraints pathLen >= 1 (or none). */
  readonly root: CaMaterial;
  readonly commonName: string;
  /** Default `ec-p256`. */
  readonly keyAlgorithm?: KeyAlgorithm;
  /** Lifetime in days; default 1825 (five years), never past the root's notAfter. */
  readonly days?: number;
  /** Issuance time (tests); default the current time. */
  readonly now?: Date;
}

export const DEFAULT_INTERMEDIATE_DAYS = 1825;

/**
 * Creates an intermediate CA: basicConstraints CA:true pathLen 0 (critical), keyUsage
 * keyCertSign + cRLSign (critical), subject and authority key identifiers.
 * SECURITY: pathLen 0 means the intermediate signs end-entity certificates only. A root
 * whose own pathLen is 0 is refused (ERR_PKI_INVALID_CA): verifiers would reject every
 * chain through the new intermediate, so issuing it would only hide the mistake.
 */
export async function createIntermediateCa(options: CreateIntermediateCaOptions): Promise<CertificateWithKey> {
  const { root, commonName, keyAlgorithm = DEFAULT_KEY_ALGORITHM, days = DEFAULT_INTERMEDIATE_DAYS, now = new Date() } = options;
  assertKeyAlgorithm(keyAlgorithm);
  assertDays(days);
  const name = buildSubject(commonName);
  const issuer = await loadCa({ certPem: root.certPem, keyPem: root.keyPem }, now);
  const basic = issuer.cert.getExtension(x509.BasicConstraintsExtension);
  const pathLength = basic?.pathLength;
  if (pathLength !== undefined && pathLength < 1) {
    throw new PkiError(
      'ERR_PKI_INVALID_CA',
      `CA "${issuer.cert.subject}" has pathLen ${pathLength}, so it cannot sign an intermediate CA; create the root with pathLength 1 or more`,
    );
  }
  const { notBefore, notAfter } = validityWindow(days, now, issuer.notAfter);
  const keys = await generateKeyPair(keyAlgorithm);
  const serialNumber = randomSerialNumber();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber,
    // Copied from the root as encoded, so chain building matches bytes.
    issuer: issuer.cert.subjectName,
    subject: name,
    notBefore,
    notAfter,
    publicKey: keys.publicKey,
    signingKey: issuer.privateKey,
    signingAlgorithm: signingAlgorithmFor(issuer.keyAlgorithm),
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      new x509.AuthorityKeyIdentifierExtension(issuer.keyId),
    ],
  });
  const certPem = certificateToPem(cert);
  return { certPem, keyPem: await exportPrivateKeyPem(keys.privateKey), serialNumber, fingerprint256: fingerprint256(certPem) };
}
