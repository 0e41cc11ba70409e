/**
 * The pki module's public surface: root and intermediate CAs, leaf certificates, CSRs,
 * keys (and their encryption), SANs, CRLs and OCSP.
 * Other modules import from here. Must not: import node:fs, node:net or node:tls
 * (only node:crypto), so everything here works on PEM strings in memory.
 */
export { createRootCa, loadCa, DEFAULT_CA_DAYS } from './ca.js';
export type { CaMaterial, CertificateWithKey, CreateRootCaOptions, LoadedCa } from './ca.js';
export { issueCertificate, issueLocalServerCertificate, DEFAULT_LEAF_DAYS, LOCAL_SERVER_SANS } from './issue.js';
export type { CertificateProfile, IssueCertificateOptions, IssuedCertificate } from './issue.js';
export type { SignedCertificate } from './leaf.js';
export { checkCsrKey, parseCsr, signCsr } from './csr.js';
export type { CsrInfo, CsrKeyInfo, SignCsrOptions } from './csr.js';
export { createCsrWithKey } from './csr-request.js';
export type { CreateCsrOptions, CsrWithKey } from './csr-request.js';
export { createIntermediateCa, DEFAULT_INTERMEDIATE_DAYS } from './intermediate.js';
export type { CreateIntermediateCaOptions } from './intermediate.js';
export { describeCertificate, splitPemChain } from './describe.js';
export type { CertificateInfo, CertificateSans } from './describe.js';
export {
  KEY_ALGORITHMS,
  DEFAULT_KEY_ALGORITHM,
  generateKeyPair,
  exportPrivateKeyPem,
  importPrivateKeyPem,
  keyAlgorithmOf,
  describeKeyAlgorithm,
} from './keys.js';
export type { KeyAlgorithm, ImportedPrivateKey } from './keys.js';
export { canonicalSans, parseSanText } from './san.js';
export { assertNameText } from './names.js';
export type { SanType, SubjectAltName } from './san.js';
export { fingerprint256 } from './fingerprint.js';
export { randomSerialNumber, normalizeSerial } from './serial.js';
export { encryptPrivateKeyPem, decryptPrivateKeyPem, isEncryptedPrivateKeyPem } from './key-encryption.js';
export { createCrl, parseCrl, parseCrls, verifyCrlSignature, REVOCATION_REASONS } from './crl.js';
export { buildOcspRequest, issuerHashes, parseOcspRequest } from './ocsp-request.js';
export type { OcspCertId, OcspRequestInfo } from './ocsp-request.js';
export { createOcspResponse, ocspErrorResponse, parseOcspResponse, DEFAULT_OCSP_VALIDITY_SECONDS } from './ocsp-response.js';
export type { CreateOcspResponseOptions, OcspErrorStatus, OcspResponseInfo, OcspSingleResponse, OcspStatus } from './ocsp-response.js';
export type { CreateCrlOptions, CrlEntryInput, CrlInfo, RevocationReason, RevokedEntry } from './crl.js';
export { BACKDATE_MS, MAX_DAYS } from './validity.js';
export { PkiError } from './pki-error.js';
export type { PkiErrorCode } from './pki-error.js';
