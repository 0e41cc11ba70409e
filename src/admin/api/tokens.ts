/**
 * Admin bearer tokens: 32 random bytes, shown once, stored only as their SHA-256 hash.
 * Owns: the token format and its hash. Must not: store anything (a TokenStore does).
 *
 * SECURITY: a SHA-256 of 256 random bits needs no salt or slow hash (nothing to guess);
 * the lookup is by hash, so the secret itself is never compared byte by byte.
 */
import { createHash, randomBytes } from 'node:crypto';

/** Recognisable prefix, so a leaked token is easy to grep for in logs and repositories. */
export const TOKEN_PREFIX = 'bst_';
const TOKEN_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function generateAdminToken(): string {
  return TOKEN_PREFIX + randomBytes(32).toString('base64url');
}

export function hashAdminToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** Token names appear in logs as the actor: keep them short and plain. */
export function isValidTokenName(name: string): boolean {
  return TOKEN_NAME.test(name);
}

export const TOKEN_NAME_RULE = '1-64 characters: letters, digits, . _ - (starting with a letter or digit)';
