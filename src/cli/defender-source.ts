/**
 * What every `bastion defender …` command shares: the one-line bad-input exit (2), and
 * which data directory and config the options name (`-c CONFIG`, `--data-dir DIR`, the
 * same resolution as `defender audit` and `bastion serve`). Owns: those two. Must not:
 * open a store or create anything.
 */
import { resolve } from 'node:path';
import type { BastionConfig } from '../core/config.js';
import { BastionError } from '../core/errors.js';
import { DEFAULT_DATA_DIR } from '../server/pki-layout.js';

export interface SourceOptions {
  config?: string;
  dataDir?: string;
}

/** Bad input (a flag, a config, a data directory): one line on stderr, exit 2, so a script can tell it from a result. */
export function badInput(err: unknown): never {
  const message = err instanceof BastionError || err instanceof Error ? err.message : String(err);
  process.stderr.write(`bastion: ${message.split('\n')[0]}\n`);
  process.exit(2);
}

/** The config of `-c` (null without it); a config that cannot be read or is invalid throws a ConfigError. */
export async function configOf(opts: SourceOptions): Promise<BastionConfig | null> {
  if (opts.config === undefined) return null;
  const { loadConfigFile } = await import('../server/load-config.js');
  return loadConfigFile(opts.config).config;
}

/** `--data-dir`, else the config's `dataDir`, else `./bastion-data`; absolute. */
export async function dataDirOf(opts: SourceOptions): Promise<string> {
  // The config is read even when --data-dir overrides its dataDir: a broken one is bad input either way.
  const config = await configOf(opts);
  if (opts.dataDir !== undefined) return resolve(process.cwd(), opts.dataDir);
  return config?.dataDir ?? resolve(process.cwd(), DEFAULT_DATA_DIR);
}

/** Control characters in an identity, rule or item must not forge output lines. */
export const clean = (s: string): string => s.replace(/[\u0000-\u001f\u007f]/g, '?');
