/**
 * End-entity certificates. Owns: the `server` and `client` profiles (extensions, SAN
 * defaults, lifetimes) and signing a fresh key pair's certificate with a CA.
 * Must not: issue CA certificates (ca.ts does), or persist keys.
 */
import { loadCa, certificateToPem, type CaMaterial, type CertificateWithKey } from './ca.js';
import { fingerprint256 } from './fingerprint.js';
import {
  DEFAULT_KEY_ALGORITHM,
  assertKeyAlgorithm,
  exportPrivateKeyPem,
  generateKeyPair,
  isRsa,
  signingAlgorithmFor,
  type KeyAlgorithm,
} from './keys.js';
import { buildSubject } from './names.js';
import { PkiError } from './pki-error.js';
import { canonicalSans, defaultServerSans, toJsonGeneralNames, type SubjectAltName } from './san.js';
import { randomSerialNumber } from './serial.js';
import { validityWindow } from './validity.js';
import { x509 } from './x509.js';

/** `server`: TLS server (EKU serverAuth). `client`: TLS client / device (EKU clientAuth). */
export type CertificateProfile = 'server' | 'client';

export interface IssueCertificateOptions {
  /** The issuing CA. */
  readonly ca: CaMaterial;
  readonly profile: CertificateProfile;
  readonly commonName: string;
  /**
   * Subject alternative names. A server certificate without any gets one for its
   * commonName (DNS, or IP when the commonName is an address).
   */
  readonly sans?: readonly SubjectAltName[];
  readonly organizationalUnit?: string;
  /** Default `ec-p256`. */
  readonly keyAlgorithm?: KeyAlgorithm;
  /** Lifetime in days; default 365. Never extends past the CA's own notAfter. */
  readonly days?: number;
  /** Issuance time (tests); default the current time. */
  readonly now?: Date;
}

/** A freshly issued leaf certificate and its private key. */
export type IssuedCertificate = CertificateWithKey;

export const DEFAULT_LEAF_DAYS = 365;

function assertProfile(profile: unknown): asserts profile is CertificateProfile {
  if (profile !== 'server' && profile !== 'client') {
    throw new PkiError('ERR_PKI_INVALID_INPUT', `unknown certificate profile ${JSON.stringify(profile)}; expected "server" or "client"`);
  }
}

/**
 * Issues an end-entity certificate for a new key pair, signed by `ca`.
 * Both profiles: basicConstraints CA:false (critical), keyUsage (critical), EKU,
 * subject and authority key identifiers, a random 16-byte serial, notBefore one minute ago.
 */
export async function issueCertificate(options: IssueCertificateOptions): Promise<IssuedCertificate> {
  // Copy the input before checking it, so a caller cannot change it between check and use.
  const {
    ca,
    profile,
    commonName,
    sans,
    organizationalUnit,
    keyAlgorithm = DEFAULT_KEY_ALGORITHM,
    days = DEFAULT_LEAF_DAYS,
    now = new Date(),
  } = options;
  const sanList = sans === undefined ? undefined : [...sans];
  assertProfile(profile);
  assertKeyAlgorithm(keyAlgorithm);
  const subject = buildSubject(commonName, organizationalUnit);
  const names =
    sanList !== undefined && sanList.length > 0
      ? canonicalSans(sanList)
      : profile === 'server'
        ? defaultServerSans(commonName)
        : [];
  const issuer = await loadCa({ certPem: ca.certPem, keyPem: ca.keyPem }, now);
  const { notBefore, notAfter } = validityWindow(days, now, issuer.notAfter);

  // SECURITY: keyUsage is the minimum each profile needs. ECDHE key exchange only signs;
  // keyEncipherment is added for RSA server keys, which TLS 1.2 RSA key transport uses.
  let usages = x509.KeyUsageFlags.digitalSignature;
  if (profile === 'server' && isRsa(keyAlgorithm)) usages |= x509.KeyUsageFlags.keyEncipherment;
  const eku = profile === 'server' ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth;

  const keys = await generateKeyPair(keyAlgorithm);
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(usages, true),
    new x509.ExtendedKeyUsageExtension([eku], false),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    new x509.AuthorityKeyIdentifierExtension(issuer.keyId),
  ];
  if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(toJsonGeneralNames(names), false));

  const serialNumber = randomSerialNumber();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber,
    // The issuer name is copied from the CA certificate as encoded, so chain building matches bytes.
    issuer: issuer.cert.subjectName,
    subject,
    notBefore,
    notAfter,
    publicKey: keys.publicKey,
    signingKey: issuer.privateKey,
    signingAlgorithm: signingAlgorithmFor(issuer.keyAlgorithm),
    extensions,
  });
  const certPem = certificateToPem(cert);
  return { certPem, keyPem: await exportPrivateKeyPem(keys.privateKey), serialNumber, fingerprint256: fingerprint256(certPem) };
}

/** The names a broker on this machine answers to: `localhost`, 127.0.0.1 and ::1. */
export const LOCAL_SERVER_SANS: readonly SubjectAltName[] = [
  { type: 'dns', value: 'localhost' },
  { type: 'ip', value: '127.0.0.1' },
  { type: 'ip', value: '::1' },
];

/** A server certificate for a broker reached on this machine (development, tests, bench). */
export function issueLocalServerCertificate(ca: CaMaterial): Promise<IssuedCertificate> {
  return issueCertificate({ ca, profile: 'server', commonName: 'localhost', sans: [...LOCAL_SERVER_SANS] });
}
