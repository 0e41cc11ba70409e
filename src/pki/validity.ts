/**
 * Certificate validity windows. Owns: the lifetime limits and the clock-skew backdating
 * of notBefore. Must not: read the clock other than through the `now` it is given.
 */
import { PkiError } from './pki-error.js';

const DAY_MS = 24 * 60 * 60 * 1000;

/** notBefore is set this far in the past so peers with a slightly slow clock accept it. */
export const BACKDATE_MS = 60_000;

/** Longest lifetime we issue (100 years), to catch unit mistakes such as seconds for days. */
export const MAX_DAYS = 36_500;

export interface ValidityWindow {
  readonly notBefore: Date;
  readonly notAfter: Date;
}

/** Throws ERR_PKI_INVALID_INPUT unless `days` is an integer in 1..MAX_DAYS. */
export function assertDays(days: unknown): asserts days is number {
  if (typeof days !== 'number' || !Number.isInteger(days) || days < 1 || days > MAX_DAYS) {
    throw new PkiError('ERR_PKI_INVALID_INPUT', `days must be an integer from 1 to ${MAX_DAYS}, got ${String(days)}`);
  }
}

/**
 * notBefore = now − 1 minute; notAfter = now + `days`, but never later than `notAfterLimit`
 * (the issuing CA's own notAfter: a certificate cannot usefully outlive its issuer).
 */
export function validityWindow(days: number, now: Date, notAfterLimit?: Date): ValidityWindow {
  assertDays(days);
  const nowMs = now.getTime();
  if (!Number.isFinite(nowMs)) throw new PkiError('ERR_PKI_INVALID_INPUT', 'now is not a valid date');
  // Whole seconds: X.509 times carry no fractions, so the Date we hand out matches the certificate.
  const notBefore = new Date(Math.floor((nowMs - BACKDATE_MS) / 1000) * 1000);
  let notAfterMs = Math.floor((nowMs + days * DAY_MS) / 1000) * 1000;
  if (notAfterLimit !== undefined && notAfterLimit.getTime() < notAfterMs) notAfterMs = notAfterLimit.getTime();
  return { notBefore, notAfter: new Date(notAfterMs) };
}
