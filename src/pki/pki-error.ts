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
  | 'ERR_PKI_INVALID_CA';

export class PkiError extends BastionError {
  declare readonly code: PkiErrorCode;
  constructor(code: PkiErrorCode, message: string) {
    super(code, message);
    this.name = 'PkiError';
  }
}
