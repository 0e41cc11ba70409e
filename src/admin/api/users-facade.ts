/**
 * The UsersFacade over security/authn's user store: the admin API adds users with the same
 * record (scrypt hash + SCRAM keys) and the same rules as `bastion user add`. Owns: that
 * adaptation. Must not: show a hash or key, or log a password.
 */
import { BastionError } from '../../core/errors.js';
import { makeUserRecord, passwordProblem, type PasswordHasher } from '../../security/authn/password-hash.js';
import { isValidUserName, type UserAdmin } from '../../security/authn/user-store.js';
import type { UsersFacade, UserView } from './services.js';

/** SCRAM iterations for users added through the API (the CLI's default). */
const SCRAM_ITERATIONS = 4096;

function check(username: string, password: string): void {
  if (!isValidUserName(username)) throw new BastionError('ERR_USAGE', `user name "${username}" is not valid: use 1-128 of A-Z a-z 0-9 . _ @ -`);
  const problem = passwordProblem(password);
  if (problem !== null) throw new BastionError('ERR_USAGE', problem);
}

export function usersFacade(store: UserAdmin, hasher: PasswordHasher): UsersFacade {
  return {
    list: (): UserView[] => store.list().map((u) => ({ username: u.name, createdAt: new Date(u.createdAt).toISOString() })),
    async add(username, password) {
      check(username, password);
      if ((await store.find(username)) !== null) return 'exists';
      store.put(await makeUserRecord(username, password, hasher, SCRAM_ITERATIONS));
      return 'added';
    },
    async put(username, password) {
      check(username, password);
      const record = await makeUserRecord(username, password, hasher, SCRAM_ITERATIONS);
      const existing = await store.find(username);
      // A new password keeps the user's creation time, as `bastion user add` does.
      store.put(existing !== null ? { ...record, createdAt: existing.createdAt } : record);
      return existing !== null ? 'changed' : 'added';
    },
    remove: (username) => store.delete(username),
  };
}
