/**
 * Shared pieces of the defender audit unit tests: a clean AuditInput, inventory records
 * made from real certificates of our PKI, and certificates with weak keys (made with
 * @peculiar/x509 and WebCrypto, as our PKI would refuse to issue them). Must not: be
 * imported by src/.
 */
import { randomBytes, webcrypto, X509Certificate } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { configSchema, type BastionConfig } from '../../src/core/config.js';
import { DEFAULT_THRESHOLDS, type AuditInput } from '../../src/defender/audit/index.js';
import { describeCertificate, type CertificateWithKey } from '../../src/pki/index.js';
import { policyFromConfig } from '../../src/security/authz/default-policy.js';
import type { CertificateKind, InventoryRecord } from '../../src/store/sqlite/pki-inventory.js';

x509.cryptoProvider.set(webcrypto);

export const NOW = new Date('2026-06-01T00:00:00Z');
export const DAY = 86_400_000;

/** An mTLS listener on loopback, as the zero-config broker has. */
export function cleanConfig(extra: Record<string, unknown> = {}): BastionConfig {
  return configSchema.parse({
    listeners: [{ name: 'mqtts', protocol: 'mqtts', host: '127.0.0.1', port: 8883, tls: { cert: 's.crt', key: 's.key', ca: 'root.crt', crl: 'crl.pem', clientCerts: 'required' } }],
    ...extra,
  });
}

export function input(overrides: Partial<AuditInput> = {}): AuditInput {
  const config = overrides.config ?? cleanConfig();
  return { config, policy: policyFromConfig(config.authz), listenersWithoutRevocation: [], crlFiles: [], now: NOW, thresholds: DEFAULT_THRESHOLDS, ...overrides };
}

export function recordOf(certPem: string, kind: CertificateKind, issuerSerial: string | null, status: 'valid' | 'revoked' = 'valid'): InventoryRecord {
  const c = new X509Certificate(certPem);
  // The subject as the inventory stores it (RFC 4514 order, `CN=x, OU=y`).
  const d = describeCertificate(certPem);
  return {
    serialNumber: c.serialNumber,
    kind,
    issuerSerial,
    subject: d.subject,
    commonName: d.commonName,
    sans: [],
    fingerprint256: c.fingerprint256,
    notBefore: new Date(c.validFrom),
    notAfter: new Date(c.validTo),
    certPem,
    issuedAt: new Date(c.validFrom),
    status,
    revokedAt: status === 'revoked' ? NOW : null,
    reason: null,
  };
}

export function pkiWith(...records: InventoryRecord[]): AuditInput['pki'] {
  return { dir: '/nonexistent/pki', records, rootKeyOnline: false, crlNextUpdates: [new Date(NOW.getTime() + DAY)] };
}

const b64u = (n: bigint): string => Buffer.from(n.toString(16).padStart(Math.ceil(n.toString(16).length / 2) * 2, '0'), 'hex').toString('base64url');

/**
 * A certificate for `subjectKey` signed by a fresh RSA key with `hash`, valid around NOW.
 * The subject key can be any RSA public key (a 1024-bit one, or a modulus with the ROCA fingerprint).
 */
export async function rsaCertificate(opts: { subjectKey?: webcrypto.CryptoKey; bits?: number; hash?: 'SHA-1' | 'SHA-256'; cn: string }): Promise<{ pem: string; serial: string }> {
  const hash = opts.hash ?? 'SHA-256';
  const alg = { name: 'RSASSA-PKCS1-v1_5', hash, publicExponent: new Uint8Array([1, 0, 1]), modulusLength: opts.bits ?? 2048 };
  const signer = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomBytes(8).toString('hex').replace(/^[89a-f]/, '1'),
    subject: `CN=${opts.cn}`,
    issuer: 'CN=weak test issuer',
    notBefore: new Date(NOW.getTime() - DAY),
    notAfter: new Date(NOW.getTime() + 200 * DAY),
    signingAlgorithm: { name: 'RSASSA-PKCS1-v1_5', hash },
    publicKey: opts.subjectKey ?? signer.publicKey,
    signingKey: signer.privateKey,
  });
  const pem = cert.toString('pem');
  return { pem, serial: new X509Certificate(pem).serialNumber };
}

/** An RSA public key with modulus `n` and e = 65537 (no private key exists or is needed). */
export async function rsaPublicKey(n: bigint): Promise<webcrypto.CryptoKey> {
  return webcrypto.subtle.importKey('jwk', { kty: 'RSA', n: b64u(n), e: 'AQAB', ext: true }, { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, true, ['verify']);
}

export type { CertificateWithKey };
