/**
 * Builds the security audit's input from a data directory and its config (`bastion
 * defender audit -c CONFIG | --data-dir DIR`). Owns: finding and reading what the checks
 * look at. Must not: create or change anything: every store is opened only when its file
 * exists (a missing PKI or provisioning.db is simply absent from the input).
 *
 * It lives in cli/ rather than defender/ because it needs server/ (the PKI layout, the
 * zero-config listeners, the listener revocation verdict) and transport/ (the revocation
 * source): the defender checks stay a pure function of the input.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { BastionConfig } from '../core/config.js';
import { BastionError } from '../core/errors.js';
import { DEFAULT_THRESHOLDS, type AuditClaim, type AuditCrlFile, type AuditInput, type AuditPki } from '../defender/audit/index.js';
import { parseCrls } from '../pki/index.js';
import { DEV_DEVICE_COMMON_NAME } from '../server/dev-pki.js';
import { revocationFinding } from '../server/listener-lint.js';
import { configuredPkiDir, DEFAULT_DATA_DIR, pkiDirOf, pkiLayout } from '../server/pki-layout.js';
import { zeroConfig } from '../server/zero-config.js';
import { revocationSourceOf } from '../transport/tls-revocation.js';
import { effectivePolicy } from './acl-policy-source.js';

export interface AuditSourceOptions {
  config?: string;
  dataDir?: string;
}

/** Where Debian's openssl-blacklist package puts its lists (blacklist.RSA-<bits>). */
export const DEBIAN_BLACKLIST_DIR = '/usr/share/openssl-blacklist';

function crlDates(path: string): Date[] | null {
  try {
    // A CRL without nextUpdate never goes stale by date.
    return parseCrls(readFileSync(path, 'utf8')).flatMap((c) => (c.nextUpdate !== null ? [c.nextUpdate] : []));
  } catch {
    return null;
  }
}

async function readPki(pkiDir: string): Promise<AuditPki | undefined> {
  const layout = pkiLayout(pkiDir);
  if (!existsSync(layout.inventory)) return undefined;
  const { PkiInventory } = await import('../store/sqlite/pki-inventory.js');
  const inventory = PkiInventory.open(layout.inventory);
  try {
    return {
      dir: layout.dir,
      records: inventory.list(),
      rootKeyOnline: existsSync(layout.rootKey),
      crlNextUpdates: existsSync(layout.crl) ? (crlDates(layout.crl) ?? []) : [],
    };
  } finally {
    inventory.close();
  }
}

async function readClaims(dataDir: string): Promise<AuditClaim[] | undefined> {
  const { SqliteProvisioningStore, PROVISIONING_DB_FILE } = await import('../provisioning/sqlite-provisioning-store.js');
  const path = join(dataDir, PROVISIONING_DB_FILE);
  if (!existsSync(path)) return undefined;
  const store = SqliteProvisioningStore.open(path);
  try {
    return store.listClaims();
  } finally {
    store.close();
  }
}

/** The Debian weak-key lists present in `dir`, by RSA size; undefined when there are none. */
export function readDebianBlacklist(dir: string): Map<number, Set<string>> | undefined {
  if (!existsSync(dir)) return undefined;
  const lists = new Map<number, Set<string>>();
  for (const name of readdirSync(dir)) {
    const m = /^blacklist\.RSA-(\d+)$/.exec(name);
    if (m === null) continue;
    const entries = new Set<string>();
    for (const line of readFileSync(join(dir, name), 'utf8').split('\n')) {
      const t = line.trim().toLowerCase();
      if (/^[0-9a-f]{20}$/.test(t)) entries.add(t);
    }
    lists.set(Number(m[1]), entries);
  }
  return lists.size > 0 ? lists : undefined;
}

/** The config `bastion serve` would use with these options (zero-config without -c). */
async function configOf(opts: AuditSourceOptions): Promise<{ config: BastionConfig; baseDir: string; dataDir: string; pkiDir: string }> {
  const cwd = process.cwd();
  if (opts.config === undefined) {
    const dataDir = resolve(cwd, opts.dataDir ?? DEFAULT_DATA_DIR);
    const l = pkiLayout(pkiDirOf(dataDir));
    // The listener `bastion serve` builds for this data dir. Its certificate and key paths
    // are not audited (the inventory is); the trust anchor and CRL paths are, and they come
    // from the shared layout.
    const config = zeroConfig(dataDir, {
      dir: l.dir,
      rootCert: l.rootCert,
      caChain: l.caChain,
      crl: l.crl,
      serverCert: join(l.dir, 'server.crt'),
      serverKey: join(l.dir, 'server.key'),
      clientCommonName: DEV_DEVICE_COMMON_NAME,
      clientCert: join(l.dir, `${DEV_DEVICE_COMMON_NAME}.crt`),
      clientKey: join(l.dir, `${DEV_DEVICE_COMMON_NAME}.key`),
      created: false,
    });
    return { config, baseDir: cwd, dataDir, pkiDir: l.dir };
  }
  const { loadConfigFile } = await import('../server/load-config.js');
  const { config, baseDir } = loadConfigFile(opts.config);
  const dataDir = opts.dataDir !== undefined ? resolve(cwd, opts.dataDir) : config.dataDir;
  return { config, baseDir, dataDir, pkiDir: configuredPkiDir(config.pki.dir, baseDir, dataDir) };
}

export async function loadAuditInput(opts: AuditSourceOptions, now: Date, blacklistDir = DEBIAN_BLACKLIST_DIR): Promise<AuditInput> {
  const { config, baseDir, dataDir, pkiDir } = await configOf(opts);
  if (opts.config === undefined && !existsSync(dataDir)) throw new BastionError('ERR_USAGE', `data directory ${dataDir} does not exist (pass --data-dir DIR or -c CONFIG)`);
  const listenersWithoutRevocation: string[] = [];
  const crlFiles: AuditCrlFile[] = [];
  for (const l of config.listeners) {
    if (l.tls === undefined) continue;
    const at = (p: string | undefined): string | undefined => (p !== undefined ? resolve(baseDir, p) : undefined);
    const crl = at(l.tls.crl);
    if (revocationFinding(l.name, await revocationSourceOf(l.tls, at(l.tls.ca), crl, pkiDir)) !== null) listenersWithoutRevocation.push(l.name);
    if (crl !== undefined) crlFiles.push({ listener: l.name, path: crl, nextUpdates: crlDates(crl) });
  }
  const pki = await readPki(pkiDir);
  const claims = await readClaims(dataDir);
  // The config's rules (or the zero-config default) plus the rule store, read only when it exists.
  const policy = effectivePolicy(opts.config !== undefined ? { config: opts.config, dataDir } : { dataDir });
  const debianBlacklist = readDebianBlacklist(blacklistDir);
  return {
    config,
    ...(pki !== undefined ? { pki } : {}),
    policy,
    ...(claims !== undefined ? { claims } : {}),
    listenersWithoutRevocation,
    crlFiles,
    ...(debianBlacklist !== undefined ? { debianBlacklist } : {}),
    now,
    thresholds: DEFAULT_THRESHOLDS,
  };
}
