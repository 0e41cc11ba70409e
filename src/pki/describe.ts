/**
 * Reading certificates for people and for inventory. Owns: `describeCertificate` (the
 * fields the CLI shows and the state records) and splitting a PEM bundle into certificates.
 * Must not: judge validity or trust (verification belongs to the TLS layer and OpenSSL).
 */
import type { X509Certificate } from 'node:crypto';
import { parseNodeCertificate } from './fingerprint.js';
import { derToPem, describeKeyAlgorithm } from './keys.js';
import { formatName } from './names.js';
import { PkiError } from './pki-error.js';
import { x509 } from './x509.js';

export interface CertificateSans {
  readonly dns: string[];
  readonly ip: string[];
  readonly uri: string[];
  readonly email: string[];
}

export interface CertificateInfo {
  /** Upper-case hex, as Node's X509Certificate.serialNumber reports it. */
  readonly serialNumber: string;
  /** RFC 4514 order, e.g. `CN=dev1, OU=ops`. */
  readonly subject: string;
  /** The first CN, or '' when the subject has none. */
  readonly commonName: string;
  readonly organizationalUnits: string[];
  readonly issuer: string;
  readonly sans: CertificateSans;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** `AB:CD:…`, as Node's fingerprint256 reports it. */
  readonly fingerprint256: string;
  readonly isCa: boolean;
  /** `serverAuth`, `clientAuth`, other known names, or the OID for the rest. */
  readonly extendedKeyUsages: string[];
  /** `ec-p256`, `rsa-2048`, …; also for keys we would not issue (`rsa-1024`). */
  readonly keyAlgorithm: string;
}

const EKU_NAMES: Readonly<Record<string, string>> = {
  '1.3.6.1.5.5.7.3.1': 'serverAuth',
  '1.3.6.1.5.5.7.3.2': 'clientAuth',
  '1.3.6.1.5.5.7.3.3': 'codeSigning',
  '1.3.6.1.5.5.7.3.4': 'emailProtection',
  '1.3.6.1.5.5.7.3.8': 'timeStamping',
  '1.3.6.1.5.5.7.3.9': 'OCSPSigning',
};

function parseCertificate(pem: string): x509.X509Certificate {
  try {
    return new x509.X509Certificate(pem);
  } catch {
    throw new PkiError('ERR_PKI_INVALID_INPUT', 'cannot parse certificate PEM');
  }
}

function sansOf(cert: x509.X509Certificate): CertificateSans {
  const sans: CertificateSans = { dns: [], ip: [], uri: [], email: [] };
  const ext = cert.getExtension(x509.SubjectAlternativeNameExtension);
  for (const name of ext?.names.toJSON() ?? []) {
    if (name.type === 'dns') sans.dns.push(name.value);
    else if (name.type === 'ip') sans.ip.push(name.value);
    else if (name.type === 'url') sans.uri.push(name.value);
    else if (name.type === 'email') sans.email.push(name.value);
  }
  return sans;
}

/** The fields of the first certificate in `pem`. Throws ERR_PKI_INVALID_INPUT if unparsable. */
export function describeCertificate(pem: string): CertificateInfo {
  if (typeof pem !== 'string') throw new PkiError('ERR_PKI_INVALID_INPUT', 'certificate must be a PEM string');
  const first = splitPemChain(pem)[0];
  if (first === undefined) throw new PkiError('ERR_PKI_INVALID_INPUT', 'no certificate found in PEM input');
  const node = parseNodeCertificate(first);
  const cert = parseCertificate(first);
  try {
    return readFields(node, cert);
  } catch (err) {
    // The x509 library parses extensions lazily and throws its own errors on odd ones.
    if (err instanceof PkiError) throw err;
    throw new PkiError('ERR_PKI_INVALID_INPUT', 'cannot read the certificate\'s names or extensions');
  }
}

function readFields(node: X509Certificate, cert: x509.X509Certificate): CertificateInfo {
  const eku = cert.getExtension(x509.ExtendedKeyUsageExtension);
  return {
    serialNumber: node.serialNumber,
    subject: formatName(cert.subjectName),
    commonName: cert.subjectName.getField('CN')[0] ?? '',
    organizationalUnits: cert.subjectName.getField('OU'),
    issuer: formatName(cert.issuerName),
    sans: sansOf(cert),
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    fingerprint256: node.fingerprint256,
    isCa: node.ca,
    extendedKeyUsages: [...(eku?.usages ?? [])].map((oid) => EKU_NAMES[String(oid)] ?? String(oid)),
    keyAlgorithm: describeKeyAlgorithm(node.publicKey),
  };
}

const CERTIFICATE_BLOCK = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g;

/**
 * The certificates of a PEM bundle (leaf first, as written), each re-armoured with
 * 64-character lines and a trailing newline. Other blocks (keys, CRLs) are skipped;
 * a bundle with no certificate gives [].
 */
export function splitPemChain(pem: string): string[] {
  if (typeof pem !== 'string') throw new PkiError('ERR_PKI_INVALID_INPUT', 'PEM bundle must be a string');
  const out: string[] = [];
  for (const match of pem.matchAll(CERTIFICATE_BLOCK)) {
    const body = (match[1] ?? '').replace(/\s+/g, '');
    if (body.length === 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(body)) {
      throw new PkiError('ERR_PKI_INVALID_INPUT', `certificate ${out.length + 1} in the PEM bundle is not valid base64`);
    }
    out.push(derToPem(Buffer.from(body, 'base64'), 'CERTIFICATE'));
  }
  return out;
}
