/**
 * Shared pieces of the PKI commands (`ca`, `cert`, `crl`, `ocsp`): the data-dir and
 * root-key options, opening the PKI service, and parsing of durations, SANs and key
 * algorithms into clear usage errors. Must not: load the PKI libraries at import time
 * (the service is imported when a command runs, so `bastion pub` stays light).
 */
import type { Command } from 'commander';
import { resolve } from 'node:path';
import { BastionError } from '../core/errors.js';
import { parseSanText, type KeyAlgorithm, type SubjectAltName } from '../pki/index.js';
import { DEFAULT_DATA_DIR, pkiDirOf } from '../server/pki-layout.js';
import { PASSPHRASE_ENV, rootKeyPassphraseFromEnv } from '../server/pki-passphrase.js';
import type { PkiService } from '../server/pki-service.js';

const KEY_CHOICES: readonly KeyAlgorithm[] = ['ec-p256', 'ec-p384', 'rsa-2048', 'rsa-3072'];

export interface DataDirOptions {
  dataDir?: string;
}

export interface RootKeyOptions extends DataDirOptions {
  rootKeyPassphraseStdin?: boolean;
  rootKey?: string;
}

export function usage(message: string): BastionError {
  return new BastionError('ERR_USAGE', message);
}

export function addDataDirOption(cmd: Command): Command {
  return cmd.option('--data-dir <dir>', `data directory (default ./${DEFAULT_DATA_DIR}); the PKI lives in <dir>/pki`);
}

export function addRootKeyOptions(cmd: Command, withKeyFile: boolean): Command {
  cmd.option('--root-key-passphrase-stdin', `read the root key passphrase from stdin (or set ${PASSPHRASE_ENV})`);
  if (withKeyFile) cmd.option('--root-key <file>', 'use this root key (brought back from offline storage) for this command');
  return cmd;
}

/** `<dataDir>/pki`, resolved against the working directory. */
export function pkiDirFrom(opts: DataDirOptions): string {
  return pkiDirOf(opts.dataDir ?? DEFAULT_DATA_DIR);
}

let stdinText: Promise<string> | undefined;

/** The first line of stdin (read once), for passphrases that must not be in argv. */
function readStdinLine(): Promise<string> {
  stdinText ??= new Promise((resolvePromise, reject) => {
    let data = '';
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (chunk: string) => (data += chunk));
    process.stdin.on('end', () => resolvePromise(data));
    process.stdin.on('error', reject);
  });
  return stdinText.then((text) => text.split(/\r?\n/)[0] ?? '');
}

/** The root key passphrase: stdin when asked, else the environment, else none. */
export async function rootKeyPassphrase(opts: RootKeyOptions): Promise<string | undefined> {
  if (opts.rootKeyPassphraseStdin === true) {
    const line = await readStdinLine();
    if (line.length === 0) throw usage('--root-key-passphrase-stdin: stdin held no passphrase');
    return line;
  }
  return rootKeyPassphraseFromEnv();
}

/** Opens the PKI of the data directory (loading the PKI libraries now). */
export async function openPki(opts: RootKeyOptions): Promise<PkiService> {
  const { PkiService } = await import('../server/pki-service.js');
  const passphrase = await rootKeyPassphrase(opts);
  return PkiService.open(pkiDirFrom(opts), {
    passphrase,
    keyFile: opts.rootKey !== undefined ? resolve(process.cwd(), opts.rootKey) : undefined,
  });
}

/** Runs `fn` with the PKI open and closes it afterwards, whatever happens. */
export async function withPki<T>(opts: RootKeyOptions, fn: (pki: PkiService) => Promise<T> | T): Promise<T> {
  const pki = await openPki(opts);
  try {
    return await fn(pki);
  } finally {
    pki.close();
  }
}

export function parseDays(value: string | undefined, flag = '--days'): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d{1,6}$/.test(value) || Number(value) < 1) throw usage(`${flag} must be a whole number of days from 1, got "${value}"`);
  return Number(value);
}

export function parseKeyAlgorithm(value: string | undefined): KeyAlgorithm | undefined {
  if (value === undefined) return undefined;
  if (!(KEY_CHOICES as readonly string[]).includes(value)) throw usage(`--key must be one of ${KEY_CHOICES.join(', ')}, got "${value}"`);
  return value as KeyAlgorithm;
}

/** `DNS:host,IP:1.2.3.4,URI:spiffe://x/y,email:a@b` (repeatable flag) → SANs. */
export function parseSans(values: readonly string[] | undefined): SubjectAltName[] | undefined {
  if (values === undefined || values.length === 0) return undefined;
  const out: SubjectAltName[] = [];
  for (const item of values.flatMap((v) => v.split(','))) {
    const text = item.trim();
    if (text.length === 0) continue;
    const san = parseSanText(text);
    if (san === undefined) throw usage(`--san entries look like DNS:name, IP:address, URI:uri or email:address; got "${text}"`);
    out.push(san);
  }
  return out;
}

/** `30d`, `12h`, `2w` or a bare number of days → milliseconds. */
export function parseDuration(value: string, flag: string): number {
  const m = /^(\d{1,6})([hdw]?)$/.exec(value.trim());
  if (m === null) throw usage(`${flag} takes a duration like 30d, 12h or 2w; got "${value}"`);
  const n = Number(m[1]);
  const unit = m[2] === 'h' ? 3_600_000 : m[2] === 'w' ? 7 * 86_400_000 : 86_400_000;
  return n * unit;
}

/** Collects a repeatable option into an array (commander's reducer). */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}
