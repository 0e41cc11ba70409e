/**
 * The password users of a cluster (issue 12): the users of each node's users.db kept in
 * step with the `user.<hash>` entries of the shared state bucket (cluster-mirror.ts), so a
 * user added, given a new password or removed through any node's admin API or
 * `bastion user` logs in (or fails) on every node. Owns: the entries' keys and wire form
 * and their validation on read. Must not: hash passwords or decide who may log in
 * (security/authn does).
 *
 * SECURITY: entries carry the scrypt hash and the SCRAM keys (as users.db does), never a
 * password. An entry read from the bucket must sit under its own name's key, carry a valid
 * user name, an scrypt hash in the hasher's form and SCRAM keys of the right sizes; one
 * that fails is logged and ignored.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { isValidUserName, type UserAdmin, type UserRecord } from '../security/authn/user-store.js';
import type { LocalRows } from './cluster-mirror.js';

export const USER_PREFIX = 'user';

const base64 = z.string().max(1024).regex(/^[A-Za-z0-9+/]*={0,2}$/);

const userEntry = z
  .object({
    name: z.string().refine(isValidUserName, 'invalid user name'),
    passwordHash: z.string().max(512).regex(/^\$scrypt\$ln=\d{1,2},r=\d{1,3},p=\d{1,3}\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/),
    scram: z.object({ salt: base64, iterations: z.number().int().min(1).max(10_000_000), storedKey: base64, serverKey: base64 }).strict(),
    createdAt: z.number().int().nonnegative(),
  })
  .strict();

/** User names may hold characters a bucket key cannot (`@`): the key is a hash of the name. */
export function userKey(name: string): string {
  return `${USER_PREFIX}.${createHash('sha256').update(name).digest('hex').slice(0, 40)}`;
}

function text(u: UserRecord): string {
  const scram = { salt: u.scram.salt.toString('base64'), iterations: u.scram.iterations, storedKey: u.scram.storedKey.toString('base64'), serverKey: u.scram.serverKey.toString('base64') };
  return JSON.stringify({ name: u.name, passwordHash: u.passwordHash, scram, createdAt: u.createdAt });
}

function decode(key: string, bytes: Uint8Array): UserRecord | string {
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    return 'not JSON';
  }
  const parsed = userEntry.safeParse(raw);
  if (!parsed.success) return parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
  const u = parsed.data;
  if (userKey(u.name) !== key) return 'a user under another user\'s key';
  const scram = { salt: Buffer.from(u.scram.salt, 'base64'), iterations: u.scram.iterations, storedKey: Buffer.from(u.scram.storedKey, 'base64'), serverKey: Buffer.from(u.scram.serverKey, 'base64') };
  if (scram.salt.length === 0 || scram.storedKey.length !== 32 || scram.serverKey.length !== 32) return 'SCRAM keys of the wrong size';
  return { name: u.name, passwordHash: u.passwordHash, scram, createdAt: u.createdAt };
}

/** users.db's users as `user.` entries (cluster-mirror.ts). */
export function userRows(store: UserAdmin): LocalRows {
  return {
    snapshot: () => new Map(store.list().map((u) => [userKey(u.name), text(u)])),
    check: (key, value) => {
      const u = decode(key, value);
      return typeof u === 'string' ? { why: u } : { text: text(u) };
    },
    write: (key, entry) => {
      const u = decode(key, Buffer.from(entry));
      if (typeof u !== 'string') store.put(u);
    },
    remove: (_key, row) => {
      store.delete((JSON.parse(row) as { name: string }).name);
    },
  };
}
