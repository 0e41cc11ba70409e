/**
 * The error type of the pki module, with stable ERR_PKI_* codes that tests assert.
 * Must not: carry key material in messages.
 */
import { BastionError } from '../core/errors.js';

export type PkiErrorCode =
  /** A caller-supplied value (name, SAN, lifetime, algorithm) was rejected. */
  | 'ERR_PKI_INVALID_INPUT'
  /** A private key could not be read, or its type/size is not one we support. */
  | 'ERR_PKI_UNSUPPORTED_KEY'
  /** The CA material is unusable: not a CA, key does not match, expired, unparsable. */
  | 'ERR_PKI_INVALID_CA'
  /** A certificate signing request is unparsable, unsigned, or lacks a commonName. */
  | 'ERR_PKI_BAD_CSR'
  /** A key is too weak to certify (EC curve other than P-256/P-384, RSA under 2048 bits). */
  | 'ERR_PKI_WEAK_KEY'
  /** An encrypted private key needs a passphrase, or the one given is wrong. */
  | 'ERR_PKI_PASSPHRASE'
  /** A CRL is unparsable or not a v2 certificate list. */
  | 'ERR_PKI_BAD_CRL'
  /** An OCSP request or response is malformed. */
  | 'ERR_PKI_BAD_OCSP';

export class PkiError extends BastionError {
  declare readonly code: PkiErrorCode;
  constructor(code: PkiErrorCode, message: string) {
    super(code, message);
    this.name = 'PkiError';
  }
}
