/**
 * The outcome of an OTA check: accepted with the value, or refused with a stable reason
 * code and one readable line. Owns: the reason codes (docs/OTA.md "Refusals"). Must not:
 * carry key material or image bytes in messages.
 *
 * Refusals are values, never exceptions: a device meets hostile input here, and a check
 * that throws is one a caller may forget to catch.
 */

export type RefusalReason =
  /** Not the expected shape (missing or mistyped field, bad base64, unsupported manifest version). */
  | 'Malformed'
  /** Parses, but its bytes are not the canonical encoding of what they parse to. */
  | 'NonCanonical'
  /** Signed by a key the current key set does not list (and never listed as rotated out). */
  | 'UnknownKey'
  /** Signed by a release key the key set lists as rotated out. */
  | 'RotatedOutKey'
  /** The classic signature (or a present post-quantum one) does not verify. */
  | 'BadSignature'
  /** Policy requires the ML-DSA half and it is absent or does not verify. */
  | 'MissingPostQuantum'
  /** The key set is not signed by a pinned root key. */
  | 'KeySetBadSignature'
  /** The key set's version is lower than the one the device holds. */
  | 'KeySetRollback'
  /** The key set's `expires` has passed (freeze defence). */
  | 'KeySetExpired'
  /** The manifest's sequence is not above the last installed one. */
  | 'Rollback'
  | 'WrongClass'
  | 'WrongVendor'
  /** Now is at or after the manifest's notAfter. */
  | 'Expired'
  /** Now is before the manifest's notBefore. */
  | 'NotYetValid'
  /** A dependency's installed sequence is missing or below its minSequence. */
  | 'DependencyUnmet'
  | 'DigestMismatch'
  | 'SizeMismatch';

export interface Refusal {
  ok: false;
  reason: RefusalReason;
  message: string;
}

export type Checked<T> = ({ ok: true } & T) | Refusal;

export function refuse(reason: RefusalReason, message: string): Refusal {
  return { ok: false, reason, message };
}
