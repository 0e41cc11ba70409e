/**
 * Where `bastion acl` finds the rule set a broker would use: its config file (or the
 * zero-config default) plus the rule store in its data dir. Owns: that lookup. Must not:
 * create a store when only reading.
 */
import type { Command } from 'commander';
import { resolve } from 'node:path';
import { DEFAULT_DATA_DIR } from '../server/pki-layout.js';
import type { AclPolicy } from '../core/authz-config.js';
import { policyFromConfig } from '../security/authz/default-policy.js';
import { storedPolicy } from '../server/authz-side.js';
import { loadConfigFile } from '../server/load-config.js';
import { ADMIN_URL_ENV, wrap } from './admin-client.js';

const LOCAL_ONLY = `Target: the rule store authz.db in the data directory on this machine (--data-dir, else the dataDir of -c CONFIG, else ./${DEFAULT_DATA_DIR}); ${ADMIN_URL_ENV} is not used.`;

export interface PolicySourceOptions {
  config?: string;
  dataDir?: string;
}

/** The config's rule set (or the zero-config default) and the data dir of its store. */
export function baseOf(opts: PolicySourceOptions): { base: AclPolicy; dataDir: string } {
  if (opts.config !== undefined) {
    const { config } = loadConfigFile(opts.config);
    return { base: policyFromConfig(config.authz), dataDir: opts.dataDir !== undefined ? resolve(process.cwd(), opts.dataDir) : config.dataDir };
  }
  return { base: policyFromConfig(undefined), dataDir: resolve(process.cwd(), opts.dataDir ?? DEFAULT_DATA_DIR) };
}

/** The rule set a broker started with these options would use right now. */
export function effectivePolicy(opts: PolicySourceOptions): AclPolicy {
  const { base, dataDir } = baseOf(opts);
  return storedPolicy(base, dataDir);
}

export function addPolicySourceOptions(cmd: Command): Command {
  // Commands that can also ask an admin API say so in admin-client.ts's help text instead.
  cmd.addHelpText('after', () => (cmd.options.some((o) => o.long === '--admin-url') ? '' : `\n${wrap(LOCAL_ONLY)}\n`));
  return cmd
    .option('-c, --config <file>', "the broker's YAML config (default: the zero-config policy)")
    .option('--data-dir <dir>', `data directory holding the rule store authz.db (default: the config dataDir, or ./${DEFAULT_DATA_DIR})`);
}
