/**
 * Password hashing with scrypt and the SCRAM-SHA-256 keys derived when a password is set.
 * Owns: parameters, the stored hash format, constant-time verification and the dummy hash
 * that keeps an unknown user's login as expensive as a known one's.
 * Must not: store anything (the UserStore does).
 *
 * Cost measured on the 2-vCPU test VM: scrypt N=2^15, r=8, p=1 (32 MiB) takes ~97 ms per
 * hash (N=2^16 ~196 ms); PBKDF2-SHA-256 with 4096 iterations ~1 ms. The async scrypt runs
 * on libuv's thread pool, so logins do not block the event loop.
 */
import { pbkdf2, randomBytes, scrypt, timingSafeEqual, createHash, createHmac } from 'node:crypto';
import type { ScramCredentials, UserRecord } from './user-store.js';

export interface ScryptParams {
  /** log2 of N. */
  ln: number;
  r: number;
  p: number;
}

/** SECURITY: N=2^15, r=8, p=1 is the floor the issue sets (OWASP's scrypt minimum is lower). */
const DEFAULT_SCRYPT: ScryptParams = { ln: 15, r: 8, p: 1 };
const KEY_LENGTH = 32;
const SALT_LENGTH = 16;

/** The derivation function; injectable so tests can count calls on the real one. */
export type ScryptFn = (password: Buffer, salt: Buffer, params: ScryptParams) => Promise<Buffer>;

export const realScrypt: ScryptFn = (password, salt, params) =>
  new Promise((resolvePromise, reject) => {
    const N = 2 ** params.ln;
    // maxmem must exceed 128·N·r (Node's default of 32 MiB is exactly N=2^15's need).
    scrypt(password, salt, KEY_LENGTH, { N, r: params.r, p: params.p, maxmem: 256 * N * params.r }, (err, key) => (err !== null ? reject(err) : resolvePromise(key)));
  });

interface ParsedHash {
  params: ScryptParams;
  salt: Buffer;
  hash: Buffer;
}

function encodeHash(params: ScryptParams, salt: Buffer, hash: Buffer): string {
  return `$scrypt$ln=${params.ln},r=${params.r},p=${params.p}$${salt.toString('base64')}$${hash.toString('base64')}`;
}

function parseHash(encoded: string): ParsedHash | null {
  const m = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/.exec(encoded);
  if (m === null) return null;
  const params = { ln: Number(m[1]), r: Number(m[2]), p: Number(m[3]) };
  // A stored hash with absurd parameters is treated as unusable rather than run.
  if (params.ln < 14 || params.ln > 20 || params.r < 1 || params.r > 32 || params.p < 1 || params.p > 16) return null;
  return { params, salt: Buffer.from(m[4]!, 'base64'), hash: Buffer.from(m[5]!, 'base64') };
}

export class PasswordHasher {
  private readonly dummy: ParsedHash;

  constructor(
    private readonly derive: ScryptFn = realScrypt,
    private readonly params: ScryptParams = DEFAULT_SCRYPT,
  ) {
    this.dummy = { params, salt: randomBytes(SALT_LENGTH), hash: randomBytes(KEY_LENGTH) };
  }

  async hash(password: string): Promise<string> {
    const salt = randomBytes(SALT_LENGTH);
    const hash = await this.derive(Buffer.from(password, 'utf8'), salt, this.params);
    return encodeHash(this.params, salt, hash);
  }

  /**
   * True when `password` matches. SECURITY: `encoded` null (unknown user) or unreadable
   * still runs one scrypt against the dummy hash, so both cost the same; the comparison is
   * constant time.
   */
  async verify(encoded: string | null, password: Buffer): Promise<boolean> {
    const parsed = encoded !== null ? parseHash(encoded) : null;
    const target = parsed ?? this.dummy;
    const derived = await this.derive(password, target.salt, target.params);
    const equal = derived.length === target.hash.length && timingSafeEqual(derived, target.hash);
    return parsed !== null && equal;
  }
}

function pbkdf2Sha256(password: Buffer, salt: Buffer, iterations: number): Promise<Buffer> {
  return new Promise((resolvePromise, reject) => pbkdf2(password, salt, iterations, 32, 'sha256', (err, key) => (err !== null ? reject(err) : resolvePromise(key))));
}

export function hmacSha256(key: Buffer, data: Buffer | string): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

export function sha256(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}

/**
 * SCRAM-SHA-256 keys (RFC 5802 §3): StoredKey = H(HMAC(SaltedPassword, "Client Key")),
 * ServerKey = HMAC(SaltedPassword, "Server Key"). The password is used as its UTF-8
 * bytes (SASLprep is the identity for the ASCII passwords most devices use).
 */
export async function scramCredentials(password: string, iterations: number, salt: Buffer = randomBytes(SALT_LENGTH)): Promise<ScramCredentials> {
  const salted = await pbkdf2Sha256(Buffer.from(password, 'utf8'), salt, iterations);
  return { salt, iterations, storedKey: sha256(hmacSha256(salted, 'Client Key')), serverKey: hmacSha256(salted, 'Server Key') };
}

/** SECURITY: the shortest password `user add` accepts (NIST SP 800-63B asks for at least 8). */
const MIN_PASSWORD_LENGTH = 10;

/** Why a new password is refused, or null when it is acceptable. */
export function passwordProblem(password: string): string | null {
  if (password.length === 0) return 'the password is empty';
  if ([...password].length < MIN_PASSWORD_LENGTH) return `the password is shorter than ${MIN_PASSWORD_LENGTH} characters`;
  if (/[\u0000-\u001f\u007f]/.test(password)) return 'the password holds control characters';
  return null;
}

/** A user record with both the scrypt hash and the SCRAM keys for `password`. */
export async function makeUserRecord(name: string, password: string, hasher: PasswordHasher, scramIterations: number, now: number = Date.now()): Promise<UserRecord> {
  const [passwordHash, scram] = await Promise.all([hasher.hash(password), scramCredentials(password, scramIterations)]);
  return { name, passwordHash, scram, createdAt: now };
}
