/**
 * End-entity certificates for a fresh key pair. Owns: generating the key and the option
 * defaults (algorithm, lifetime, SANs); the profile extensions come from leaf.ts, shared
 * with signCsr. Must not: issue CA certificates (ca.ts, intermediate.ts do), or persist keys.
 */
import { loadCa, type CaMaterial, type CertificateWithKey } from './ca.js';
import { DEFAULT_KEY_ALGORITHM, assertKeyAlgorithm, exportPrivateKeyPem, generateKeyPair, type KeyAlgorithm } from './keys.js';
import { assertProfile, leafSans, signLeafCertificate, type CertificateProfile } from './leaf.js';
import { buildSubject } from './names.js';
import type { SubjectAltName } from './san.js';
import { assertDays } from './validity.js';

export type { CertificateProfile } from './leaf.js';

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
  /** OCSP responder URL, written as the authorityInfoAccess id-ad-ocsp entry. */
  readonly ocspUrl?: string;
  /** CRL location, written as a CRL distribution point. */
  readonly crlUrl?: string;
}

/** A freshly issued leaf certificate and its private key. */
export type IssuedCertificate = CertificateWithKey;

export const DEFAULT_LEAF_DAYS = 365;

/** Issues an end-entity certificate for a new key pair, signed by `ca` (see signLeafCertificate). */
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
    ocspUrl,
    crlUrl,
  } = options;
  const sanList = sans === undefined ? undefined : [...sans];
  assertProfile(profile);
  assertKeyAlgorithm(keyAlgorithm);
  assertDays(days);
  const subject = buildSubject(commonName, organizationalUnit);
  const names = leafSans(profile, commonName, sanList);
  const issuer = await loadCa({ certPem: ca.certPem, keyPem: ca.keyPem }, now);
  const keys = await generateKeyPair(keyAlgorithm);
  const signed = await signLeafCertificate({
    issuer,
    profile,
    subject,
    publicKey: keys.publicKey,
    keyAlgorithm,
    sans: names,
    days,
    now,
    ocspUrl,
    crlUrl,
  });
  return { ...signed, keyPem: await exportPrivateKeyPem(keys.privateKey) };
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
