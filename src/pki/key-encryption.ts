/**
 * Private keys at rest. Owns: encrypting a PEM private key with a passphrase (PKCS#8,
 * AES-256-CBC, OpenSSL's default PBKDF2) and reading it back. Must not: log, echo or keep
 * keys or passphrases (error messages name the problem, never the input).
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { PkiError } from './pki-error.js';

/** Most characters a passphrase may have: a guard against passing a file's content by mistake. */
export const MAX_PASSPHRASE_LENGTH = 1024;

const ENCRYPTED_PKCS8 = /-----BEGIN ENCRYPTED PRIVATE KEY-----/;
/** Legacy OpenSSL encryption inside `RSA/EC PRIVATE KEY` blocks. */
const LEGACY_ENCRYPTED = /-----BEGIN (?:RSA |EC )?PRIVATE KEY-----\r?\nProc-Type: 4,ENCRYPTED/;

/** True when the PEM holds an encrypted private key (PKCS#8 or legacy OpenSSL form). */
export function isEncryptedPrivateKeyPem(pem: string): boolean {
  return typeof pem === 'string' && (ENCRYPTED_PKCS8.test(pem) || LEGACY_ENCRYPTED.test(pem));
}

function assertPassphrase(passphrase: unknown): asserts passphrase is string {
  if (typeof passphrase !== 'string' || passphrase.length === 0) {
    throw new PkiError('ERR_PKI_PASSPHRASE', 'a non-empty passphrase is required');
  }
  if (passphrase.length > MAX_PASSPHRASE_LENGTH) {
    throw new PkiError('ERR_PKI_PASSPHRASE', `the passphrase is longer than ${MAX_PASSPHRASE_LENGTH} characters`);
  }
}

function errorCode(err: unknown): string {
  return err instanceof Error && 'code' in err ? String((err as { code: unknown }).code) : 'unreadable';
}

/**
 * Encrypts an unencrypted PEM private key (PKCS#8, SEC1 or PKCS#1) into
 * `-----BEGIN ENCRYPTED PRIVATE KEY-----` (PKCS#8, AES-256-CBC), which OpenSSL, Node's tls
 * (with `passphrase`) and mosquitto (with a password prompt) read.
 */
export function encryptPrivateKeyPem(pem: string, passphrase: string): string {
  assertPassphrase(passphrase);
  if (isEncryptedPrivateKeyPem(pem)) throw new PkiError('ERR_PKI_INVALID_INPUT', 'the private key is already encrypted');
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: 'pem' });
  } catch (err) {
    // SECURITY: never echo the input; it is a private key.
    throw new PkiError('ERR_PKI_UNSUPPORTED_KEY', `cannot read private key PEM (${errorCode(err)})`);
  }
  return key.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase }).toString();
}

/**
 * Returns the key as unencrypted PKCS#8 PEM. An unencrypted input is returned as is; an
 * encrypted one without a passphrase, or with a wrong one, is ERR_PKI_PASSPHRASE.
 */
export function decryptPrivateKeyPem(pem: string, passphrase?: string): string {
  if (typeof pem !== 'string') throw new PkiError('ERR_PKI_INVALID_INPUT', 'private key must be a PEM string');
  if (!isEncryptedPrivateKeyPem(pem)) return pem;
  if (passphrase === undefined || passphrase === '') {
    throw new PkiError('ERR_PKI_PASSPHRASE', 'the private key is encrypted: a passphrase is needed');
  }
  assertPassphrase(passphrase);
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: 'pem', passphrase });
  } catch (err) {
    // OpenSSL cannot tell a wrong passphrase from a damaged file: both fail the decryption.
    throw new PkiError('ERR_PKI_PASSPHRASE', `cannot decrypt the private key: wrong passphrase or damaged key (${errorCode(err)})`);
  }
  return key.export({ type: 'pkcs8', format: 'pem' }).toString();
}
