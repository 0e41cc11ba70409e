/**
 * Signing end-entity certificates. Owns: the `server` and `client` profiles (which
 * extensions each gets), the AIA / CRL distribution point URLs, and the one function that
 * signs a leaf for a public key, shared by issueCertificate (fresh key) and signCsr
 * (a requester's key). Must not: take extensions from a requester; the profile decides.
 */
import { certificateToPem, type LoadedCa } from './ca.js';
import { fingerprint256 } from './fingerprint.js';
import { isRsa, signingAlgorithmFor, type CryptoKey, type KeyAlgorithm } from './keys.js';
import { PkiError } from './pki-error.js';
import { canonicalSans, defaultServerSans, toJsonGeneralNames, type SubjectAltName } from './san.js';
import { randomSerialNumber } from './serial.js';
import { validityWindow } from './validity.js';
import { x509 } from './x509.js';

/** `server`: TLS server (EKU serverAuth). `client`: TLS client / device (EKU clientAuth). */
export type CertificateProfile = 'server' | 'client';

/** A signed certificate without a private key (the requester keeps it). */
export interface SignedCertificate {
  readonly certPem: string;
  /** Upper-case hex, as Node's X509Certificate.serialNumber reports it. */
  readonly serialNumber: string;
  /** SHA-256 of the DER certificate, `AB:CD:…`. */
  readonly fingerprint256: string;
}

export function assertProfile(profile: unknown): asserts profile is CertificateProfile {
  if (profile !== 'server' && profile !== 'client') {
    throw new PkiError('ERR_PKI_INVALID_INPUT', `unknown certificate profile ${JSON.stringify(profile)}; expected "server" or "client"`);
  }
}

/** Longest URL we embed; an AIA or CDP URL is fetched by relying parties, so keep it sane. */
const MAX_URL_LENGTH = 2048;

/** Throws ERR_PKI_INVALID_INPUT unless `url` is an absolute http(s) URL of printable ASCII. */
export function assertHttpUrl(field: string, url: unknown): asserts url is string {
  const ok =
    typeof url === 'string' &&
    url.length <= MAX_URL_LENGTH &&
    /^[\x21-\x7e]+$/.test(url) &&
    (() => {
      try {
        const parsed = new URL(url);
        return parsed.protocol === 'http:' || parsed.protocol === 'https:';
      } catch {
        return false;
      }
    })();
  // SECURITY: relying parties fetch these URLs; anything but plain http(s) (file:, data:,
  // spaces, control characters) could point them somewhere unexpected.
  if (!ok) throw new PkiError('ERR_PKI_INVALID_INPUT', `${field} must be an absolute http:// or https:// URL, got ${JSON.stringify(String(url).slice(0, 128))}`);
}

/** The SANs a leaf gets: the given ones canonicalised, or for a server without any, its CN. */
export function leafSans(profile: CertificateProfile, commonName: string, sans: readonly SubjectAltName[] | undefined): SubjectAltName[] {
  if (sans !== undefined && sans.length > 0) return canonicalSans(sans);
  return profile === 'server' ? defaultServerSans(commonName) : [];
}

export interface SignLeafOptions {
  readonly issuer: LoadedCa;
  readonly profile: CertificateProfile;
  readonly subject: x509.Name;
  /** The certified key: a WebCrypto key or the public key read from a CSR. */
  readonly publicKey: x509.PublicKey | CryptoKey;
  readonly keyAlgorithm: KeyAlgorithm;
  /** Already canonical (see leafSans). */
  readonly sans: readonly SubjectAltName[];
  readonly days: number;
  readonly now: Date;
  readonly ocspUrl?: string | undefined;
  readonly crlUrl?: string | undefined;
}

/**
 * Signs a leaf certificate. Both profiles: basicConstraints CA:false (critical), keyUsage
 * (critical), EKU, subject and authority key identifiers, optional AIA (OCSP) and CRL
 * distribution point, a random 16-byte serial, notBefore one minute ago, notAfter capped
 * at the issuer's own notAfter.
 */
export async function signLeafCertificate(options: SignLeafOptions): Promise<SignedCertificate> {
  const { issuer, profile, subject, publicKey, keyAlgorithm, sans, days, now, ocspUrl, crlUrl } = options;
  assertProfile(profile);
  if (ocspUrl !== undefined) assertHttpUrl('ocspUrl', ocspUrl);
  if (crlUrl !== undefined) assertHttpUrl('crlUrl', crlUrl);
  const { notBefore, notAfter } = validityWindow(days, now, issuer.notAfter);

  // SECURITY: keyUsage is the minimum each profile needs. ECDHE key exchange only signs;
  // keyEncipherment is added for RSA server keys, which TLS 1.2 RSA key transport uses.
  let usages = x509.KeyUsageFlags.digitalSignature;
  if (profile === 'server' && isRsa(keyAlgorithm)) usages |= x509.KeyUsageFlags.keyEncipherment;
  const eku = profile === 'server' ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth;

  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(usages, true),
    new x509.ExtendedKeyUsageExtension([eku], false),
    await x509.SubjectKeyIdentifierExtension.create(publicKey),
    new x509.AuthorityKeyIdentifierExtension(issuer.keyId),
  ];
  if (sans.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(toJsonGeneralNames(sans), false));
  if (ocspUrl !== undefined) extensions.push(new x509.AuthorityInfoAccessExtension({ ocsp: [ocspUrl] }, false));
  if (crlUrl !== undefined) extensions.push(new x509.CRLDistributionPointsExtension([crlUrl], false));

  const serialNumber = randomSerialNumber();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber,
    // The issuer name is copied from the CA certificate as encoded, so chain building matches bytes.
    issuer: issuer.cert.subjectName,
    subject,
    notBefore,
    notAfter,
    publicKey,
    signingKey: issuer.privateKey,
    signingAlgorithm: signingAlgorithmFor(issuer.keyAlgorithm),
    extensions,
  });
  const certPem = certificateToPem(cert);
  return { certPem, serialNumber, fingerprint256: fingerprint256(certPem) };
}
