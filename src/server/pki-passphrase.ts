/**
 * The root key passphrase from the environment: one rule for the CLI, the zero-config
 * start and a running broker. Owns: the variable's name and what an empty value means.
 * Must not: import the PKI libraries (the CLI loads this at start).
 */

export const PASSPHRASE_ENV = 'BASTION_ROOT_KEY_PASSPHRASE';

/**
 * BASTION_ROOT_KEY_PASSPHRASE, or undefined when unset or EMPTY. An empty value counts as
 * no passphrase, so an encrypted key gets the clear "needs its passphrase" error rather
 * than a failed decryption with "".
 */
export function rootKeyPassphraseFromEnv(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const value = env[PASSPHRASE_ENV];
  return value !== undefined && value.length > 0 ? value : undefined;
}
