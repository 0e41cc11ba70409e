/**
 * The user store port: what the password and SCRAM providers need to know about a user.
 * Adapters (SQLite in store/sqlite/user-store.ts) implement it; server/ picks one.
 * Owns: the record shape, the rule for valid user names, and that a new password keeps
 * the user's creation time (setUser). Must not: hash anything.
 */

/** SCRAM-SHA-256 keys (RFC 5802 §3), computed when the password is set; the password itself is never stored. */
export interface ScramCredentials {
  salt: Buffer;
  iterations: number;
  storedKey: Buffer;
  serverKey: Buffer;
}

export interface UserRecord {
  name: string;
  /** scrypt hash in PHC-like form: `$scrypt$ln=15,r=8,p=1$<salt>$<hash>`. */
  passwordHash: string;
  scram: ScramCredentials;
  /** ms since the epoch. */
  createdAt: number;
}

/** Read side, asked on every login (so a user added by the CLI is seen without a restart). */
export interface UserStore {
  find(name: string): UserRecord | null | Promise<UserRecord | null>;
}

/** Write side, for the CLI and the admin API. */
export interface UserAdmin extends UserStore {
  /** Adds or replaces the user. */
  put(user: UserRecord): void;
  /** True when the user existed. */
  delete(name: string): boolean;
  list(): UserRecord[];
}

/**
 * SECURITY: user names are plain tokens: no MQTT wildcards or separators (`+ # /`), no
 * control characters, no `,`/`=` (SCRAM attribute syntax), so a name can be substituted
 * into ACL patterns and SCRAM messages as is.
 */
const USER_NAME_PATTERN = /^[A-Za-z0-9._@-]{1,128}$/;

export function isValidUserName(name: string): boolean {
  return USER_NAME_PATTERN.test(name);
}

/** Why `name` is refused (the CLI's and the admin API's wording); null when it is valid. */
export function userNameProblem(name: string): string | null {
  return isValidUserName(name) ? null : `user name "${name}" is not valid: use 1-128 of A-Z a-z 0-9 . _ @ -`;
}

/** Adds the user or sets its new password: a user that exists keeps its creation time. */
export async function setUser(store: UserAdmin, record: UserRecord): Promise<'added' | 'changed'> {
  const existing = await store.find(record.name);
  store.put(existing !== null ? { ...record, createdAt: existing.createdAt } : record);
  return existing !== null ? 'changed' : 'added';
}
