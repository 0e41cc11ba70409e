/**
 * The secrets of provisioning: one-time token secrets and ownership token secrets, their
 * SHA-256 (the only form stored), token ids, and the text an operator hands to a device
 * (`bpt_<id>_<secret>`). Owns: those formats. Must not: store or log a secret.
 *
 * SECURITY: a secret is 32 bytes from the CSPRNG (256 bits), so a plain SHA-256 is enough
 * to store it (no salt or slow hash: nobody can guess a 256-bit value, unlike a password),
 * and it lets a secret be looked up by its hash.
 */
import { createHash, randomBytes } from 'node:crypto';

/** The prefix of a one-time provisioning token, so one is recognisable in a config or a leak scan. */
export const TOKEN_PREFIX = 'bpt_';

/** 12 lower-case hex characters: the token id (visible, not secret). */
const TOKEN_ID_RE = /^[0-9a-f]{12}$/;
/** 32 bytes in base64url without padding: 43 characters. */
const SECRET_RE = /^[A-Za-z0-9_-]{43}$/;
/** `bpt_<id>_<secret>`: the id is fixed-length, so an `_` inside the secret is not ambiguous. */
const TOKEN_RE = /^bpt_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$/;

/** A fresh secret: 32 random bytes, base64url (43 characters). */
export function newSecret(): string {
  return randomBytes(32).toString('base64url');
}

/** The stored form of a secret: SHA-256, lower-case hex. */
export function secretHash(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** A short random token id (12 hex characters, 48 bits: unique enough for a list, not a secret). */
export function newTokenId(): string {
  return randomBytes(6).toString('hex');
}

export function isTokenId(text: string): boolean {
  return TOKEN_ID_RE.test(text);
}

/** The text handed to an operator: `bpt_<id>_<secret>`. */
export function formatToken(id: string, secret: string): string {
  if (!TOKEN_ID_RE.test(id)) throw new Error('a token id is 12 lower-case hex characters');
  if (!SECRET_RE.test(secret)) throw new Error('a token secret is 43 base64url characters');
  return `${TOKEN_PREFIX}${id}_${secret}`;
}

/** Splits `bpt_<id>_<secret>`; null for anything else (no trimming, no other case). */
export function parseToken(text: string): { id: string; secret: string } | null {
  const m = TOKEN_RE.exec(text);
  if (m === null) return null;
  return { id: m[1]!, secret: m[2]! };
}
