/**
 * The UsersFacade over security/authn's user store: the admin API adds users with the same
 * record (scrypt hash + SCRAM keys) and the same rules as `bastion user add`. Owns: that
 * adaptation. Must not: show a hash or key, or log a password.
 */
import { BastionError } from '../../core/errors.js';
import { makeUserRecord, passwordProblem, type PasswordHasher } from '../../security/authn/password-hash.js';
import { setUser, userNameProblem, type UserAdmin } from '../../security/authn/user-store.js';
import type { UsersFacade, UserView } from './services.js';

/** SCRAM iterations for users added through the API (the CLI's default). */
const SCRAM_ITERATIONS = 4096;

function check(username: string, password: string): void {
  const problem = userNameProblem(username) ?? passwordProblem(password);
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
      // What `bastion user add` does: a new password keeps the user's creation time.
      return setUser(store, await makeUserRecord(username, password, hasher, SCRAM_ITERATIONS));
    },
    remove: (username) => store.delete(username),
  };
}
