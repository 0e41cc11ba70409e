/**
 * The pki module's public surface: root CAs, leaf certificates, keys and SANs.
 * Other modules import from here. Must not: import node:fs, node:net or node:tls
 * (only node:crypto), so everything here works on PEM strings in memory.
 */
export { createRootCa, loadCa, DEFAULT_CA_DAYS } from './ca.js';
export type { CaMaterial, CertificateWithKey, CreateRootCaOptions, LoadedCa } from './ca.js';
export { issueCertificate, issueLocalServerCertificate, DEFAULT_LEAF_DAYS, LOCAL_SERVER_SANS } from './issue.js';
export type { CertificateProfile, IssueCertificateOptions, IssuedCertificate } from './issue.js';
export {
  KEY_ALGORITHMS,
  DEFAULT_KEY_ALGORITHM,
  generateKeyPair,
  exportPrivateKeyPem,
  importPrivateKeyPem,
  keyAlgorithmOf,
} from './keys.js';
export type { KeyAlgorithm, ImportedPrivateKey } from './keys.js';
export { canonicalSans } from './san.js';
export type { SanType, SubjectAltName } from './san.js';
export { fingerprint256 } from './fingerprint.js';
export { randomSerialNumber } from './serial.js';
export { BACKDATE_MS, MAX_DAYS } from './validity.js';
export { PkiError } from './pki-error.js';
export type { PkiErrorCode } from './pki-error.js';
