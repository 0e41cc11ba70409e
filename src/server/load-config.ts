/**
 * Reads and validates a YAML config file. Errors are one line naming the key.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { ZodError } from 'zod';
import { ConfigError } from '../core/errors.js';
import { configSchema, formatConfigError, type BastionConfig } from '../core/config.js';
import { validateAddressLists } from '../security/limits/connection-guard.js';

export interface LoadedConfig {
  config: BastionConfig;
  /** Directory that relative paths in the config are resolved against. */
  baseDir: string;
}

export function parseConfig(raw: unknown, baseDir: string): LoadedConfig {
  try {
    const config = configSchema.parse(raw ?? {});
    // The CIDR parser lives in security/ (core may not import it), so the schema cannot check the ranges itself.
    validateAddressLists(config.limits);
    return { config: { ...config, dataDir: resolve(baseDir, config.dataDir) }, baseDir };
  } catch (err) {
    if (err instanceof ZodError) throw new ConfigError(formatConfigError(err));
    throw err;
  }
}

export function loadConfigFile(path: string): LoadedConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    const line = (err as { linePos?: Array<{ line: number }> }).linePos?.[0]?.line;
    throw new ConfigError(`config file ${path} is not valid YAML${line !== undefined ? ` (line ${line})` : ''}: ${(err as Error).message.split('\n')[0]}`);
  }
  return parseConfig(raw, dirname(resolve(path)));
}
