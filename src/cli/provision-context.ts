/**
 * Shared pieces of the provisioning commands (`bastion provision …`, `bastion cert issue
 * --profile claim`): where the data directory, the PKI and the templates come from (-c
 * CONFIG and --data-dir, as `bastion acl` finds them), opening provisioning.db, and parsing
 * --template, --count, --ttl and --max-devices into one clear usage line. Must not: load
 * SQLite or the PKI libraries at import time (they load when a command runs).
 */
import type { Command } from 'commander';
import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { BastionError } from '../core/errors.js';
import type { TemplateConfig } from '../core/provisioning-config.js';
import { configuredPkiDir, DEFAULT_DATA_DIR, pkiDirOf } from '../server/pki-layout.js';
import type { PkiService } from '../server/pki-service.js';
import type { SqliteProvisioningStore } from '../provisioning/sqlite-provisioning-store.js';
import { rootKeyPassphrase, type RootKeyOptions } from './pki-cli.js';

export interface ProvisionSourceOptions {
  config?: string;
  dataDir?: string;
}

/** What a provisioning command works on. */
export interface ProvisionSource {
  /** Absolute. */
  readonly dataDir: string;
  /** `pki.dir` of the config, else `<dataDir>/pki`. */
  readonly pkiDir: string;
  readonly templates: Readonly<Record<string, TemplateConfig>>;
  readonly configPath: string | undefined;
}

export function usage(message: string): BastionError {
  return new BastionError('ERR_USAGE', message);
}

export function addProvisionSourceOptions(cmd: Command): Command {
  return cmd
    .option('-c, --config <file>', "the broker's YAML config (its provisioning.templates, dataDir and pki.dir)")
    .option('--data-dir <dir>', `data directory (default: the config's dataDir, else ./${DEFAULT_DATA_DIR}); records live in <dir>/provisioning.db`);
}

/** The config's templates and directories (without -c: no templates, ./bastion-data). */
export async function provisionSource(opts: ProvisionSourceOptions): Promise<ProvisionSource> {
  const cwd = process.cwd();
  if (opts.config === undefined) {
    const dataDir = resolve(cwd, opts.dataDir ?? DEFAULT_DATA_DIR);
    return { dataDir, pkiDir: pkiDirOf(dataDir), templates: {}, configPath: undefined };
  }
  // The config loader pulls in the config schema: loaded only by the commands that need it.
  const { loadConfigFile } = await import('../server/load-config.js');
  const { config, baseDir } = loadConfigFile(opts.config);
  const dataDir = opts.dataDir !== undefined ? resolve(cwd, opts.dataDir) : config.dataDir;
  return { dataDir, pkiDir: configuredPkiDir(config.pki.dir, baseDir, dataDir), templates: config.provisioning.templates, configPath: opts.config };
}

/** The named template, or a usage error naming the known ones. */
export function requireTemplate(source: ProvisionSource, name: string | undefined): string {
  if (name === undefined || name.length === 0) throw usage('--template is required');
  if (Object.hasOwn(source.templates, name)) return name;
  const known = Object.keys(source.templates).sort();
  if (known.length > 0) throw usage(`unknown template "${name}"; the config has: ${known.join(', ')}`);
  if (source.configPath === undefined) throw usage(`unknown template "${name}": no config given; pass -c CONFIG with a provisioning.templates section`);
  throw usage(`unknown template "${name}": ${source.configPath} has no provisioning.templates`);
}

/** `--count`: a whole number from 1 to 10000. */
export function parseCount(value: string): number {
  if (!/^\d{1,5}$/.test(value) || Number(value) < 1 || Number(value) > 10_000) throw usage(`--count must be a whole number from 1 to 10000, got "${value}"`);
  return Number(value);
}

/** `--max-devices`: 0 (no limit, the default) or a positive whole number. */
export function parseMaxDevices(value: string | undefined): number {
  if (value === undefined) return 0;
  if (!/^\d{1,9}$/.test(value)) throw usage(`--max-devices must be a whole number (0: no limit), got "${value}"`);
  return Number(value);
}

const TTL_UNITS: Readonly<Record<string, number>> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
/** SECURITY: a one-time token is a bearer credential; it lives at most this long. */
export const MAX_TTL_MS = 30 * 86_400_000;

/** `--ttl`: `90s`, `15m`, `1h`, `7d` (a unit is required), more than 0 and at most 30d → ms. */
export function parseTtl(value: string): number {
  const m = /^(\d{1,7})([smhd])$/.exec(value);
  if (m === null) throw usage(`--ttl takes a number and a unit s, m, h or d (e.g. 1h, 7d), got "${value}"`);
  const ms = Number(m[1]) * TTL_UNITS[m[2]!]!;
  if (ms <= 0) throw usage(`--ttl must be more than 0, got "${value}"`);
  if (ms > MAX_TTL_MS) throw usage(`--ttl is at most 30d, got "${value}"`);
  return ms;
}

function storePath(dataDir: string, file: string): string {
  return join(dataDir, file);
}

/**
 * Runs `fn` on `<dataDir>/provisioning.db` and closes it. `create: false` (listing): when
 * there is no file, `fn` gets null and nothing is created.
 */
export async function withProvisioningStore<T>(dataDir: string, create: boolean, fn: (store: SqliteProvisioningStore | null) => T | Promise<T>): Promise<T> {
  const { SqliteProvisioningStore, PROVISIONING_DB_FILE } = await import('../provisioning/sqlite-provisioning-store.js');
  const path = storePath(dataDir, PROVISIONING_DB_FILE);
  if (!create && !existsSync(path)) return fn(null);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const store = SqliteProvisioningStore.open(path);
  try {
    return await fn(store);
  } finally {
    store.close();
  }
}

/** Runs `fn` with the PKI at `pkiDir` open (the root key passphrase as the PKI commands take it). */
export async function withPkiAt<T>(pkiDir: string, opts: RootKeyOptions, fn: (pki: PkiService) => Promise<T> | T): Promise<T> {
  const { PkiService } = await import('../server/pki-service.js');
  const pki = await PkiService.open(pkiDir, {
    passphrase: await rootKeyPassphrase(opts),
    keyFile: opts.rootKey !== undefined ? resolve(process.cwd(), opts.rootKey) : undefined,
  });
  try {
    return await fn(pki);
  } finally {
    pki.close();
  }
}

/** Prints rows under a header, columns padded (the last one is not). */
export function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const fmt = (cells: string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  process.stdout.write(`${[fmt(header), ...rows.map(fmt)].join('\n')}\n`);
}

export function iso(ms: number | null): string {
  return ms === null ? '-' : new Date(ms).toISOString();
}
