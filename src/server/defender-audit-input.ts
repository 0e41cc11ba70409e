/**
 * Builds the security audit's input from a data directory and its config: for `bastion
 * defender audit` (which names them with -c / --data-dir) and for the running broker's
 * scheduled audits (server/defender-audits.ts, which has its config already). Owns:
 * finding and reading what the checks look at, and the revoked serials the live checks
 * compare connected clients with. Must not: create or change anything: every store is
 * opened only when its file exists (a missing PKI or provisioning.db is simply absent).
 *
 * It lives in server/ because it needs the PKI layout, the zero-config listeners, the
 * listener revocation verdict (server/) and the revocation source (transport/); the
 * defender checks stay a pure function of the input.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { BastionConfig } from '../core/config.js';
import { BastionError } from '../core/errors.js';
import type { AuditClaim, AuditCrlFile, AuditInput, AuditPki, AuditThresholds } from '../defender/audit/index.js';
import { parseCrls, type CrlInfo } from '../pki/index.js';
import { policyFromConfig } from '../security/authz/default-policy.js';
import { revocationSourceOf } from '../transport/tls-revocation.js';
import { storedPolicy } from './authz-side.js';
import { DEV_DEVICE_COMMON_NAME } from './dev-pki.js';
import { revocationFinding } from './listener-lint.js';
import { configuredPkiDir, DEFAULT_DATA_DIR, pkiDirOf, pkiLayout } from './pki-layout.js';
import { zeroConfig } from './zero-config.js';

/** Where Debian's openssl-blacklist package puts its lists (blacklist.RSA-<bits>). */
export const DEBIAN_BLACKLIST_DIR = '/usr/share/openssl-blacklist';

/** What is audited: a config, where its relative paths resolve, its data and PKI directories. */
export interface AuditSource {
  readonly config: BastionConfig;
  readonly baseDir: string;
  readonly dataDir: string;
  readonly pkiDir: string;
}

/** The static input plus what the live checks need from the same files. */
export interface AuditSources {
  readonly input: AuditInput;
  /**
   * Serials (upper-case hex) revoked in the PKI inventory, in `<pki>/crl.pem` or in a
   * listener's `tls.crl`: a client connected with one of them should not be.
   */
  readonly revokedSerials: Set<string>;
}

const normSerial = (s: string): string => s.replace(/[:\s]/g, '').replace(/^0+(?=.)/, '').toUpperCase();

/** The CRLs of a file, or null when it cannot be read or parsed. */
function readCrls(path: string): CrlInfo[] | null {
  try {
    return parseCrls(readFileSync(path, 'utf8'));
  } catch {
    return null;
  }
}

// A CRL without nextUpdate never goes stale by date.
const nextUpdatesOf = (crls: readonly CrlInfo[]): Date[] => crls.flatMap((c) => (c.nextUpdate !== null ? [c.nextUpdate] : []));

function addRevoked(into: Set<string>, crls: readonly CrlInfo[] | null): void {
  for (const crl of crls ?? []) for (const serial of crl.revoked.keys()) into.add(normSerial(serial));
}

async function readPki(pkiDir: string, revoked: Set<string>): Promise<AuditPki | undefined> {
  const layout = pkiLayout(pkiDir);
  if (!existsSync(layout.inventory)) return undefined;
  const { PkiInventory } = await import('../store/sqlite/pki-inventory.js');
  const inventory = PkiInventory.open(layout.inventory);
  try {
    const records = inventory.list();
    for (const r of records) if (r.status === 'revoked') revoked.add(normSerial(r.serialNumber));
    const crls = existsSync(layout.crl) ? readCrls(layout.crl) : null;
    addRevoked(revoked, crls);
    return { dir: layout.dir, records, rootKeyOnline: existsSync(layout.rootKey), crlNextUpdates: nextUpdatesOf(crls ?? []) };
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

/** The thresholds of the config's `defender.audit` section. */
export function thresholdsOf(config: BastionConfig): AuditThresholds {
  const a = config.defender.audit;
  return { expiringDays: a.expiringDays, maxAgeDays: a.maxAgeDays, claimUseFraction: a.claimUseFraction };
}

/** The source of a running broker (or a loaded config file): its PKI directory from `pki.dir`. */
export function auditSourceOf(config: BastionConfig, baseDir: string, dataDir: string): AuditSource {
  return { config, baseDir, dataDir, pkiDir: configuredPkiDir(config.pki.dir, baseDir, dataDir) };
}

/** Reads everything the checks look at. `thresholds` default to the config's `defender.audit`. */
export async function buildAuditSources(source: AuditSource, now: Date, blacklistDir = DEBIAN_BLACKLIST_DIR, thresholds?: AuditThresholds): Promise<AuditSources> {
  const { config, baseDir, dataDir, pkiDir } = source;
  const revokedSerials = new Set<string>();
  const listenersWithoutRevocation: string[] = [];
  const crlFiles: AuditCrlFile[] = [];
  for (const l of config.listeners) {
    if (l.tls === undefined) continue;
    const at = (p: string | undefined): string | undefined => (p !== undefined ? resolve(baseDir, p) : undefined);
    const crl = at(l.tls.crl);
    if (revocationFinding(l.name, await revocationSourceOf(l.tls, at(l.tls.ca), crl, pkiDir)) !== null) listenersWithoutRevocation.push(l.name);
    if (crl !== undefined) {
      const crls = readCrls(crl);
      addRevoked(revokedSerials, crls);
      crlFiles.push({ listener: l.name, path: crl, nextUpdates: crls === null ? null : nextUpdatesOf(crls) });
    }
  }
  const pki = await readPki(pkiDir, revokedSerials);
  const claims = await readClaims(dataDir);
  const policy = storedPolicy(policyFromConfig(config.authz), dataDir);
  const debianBlacklist = readDebianBlacklist(blacklistDir);
  const input: AuditInput = {
    config,
    ...(pki !== undefined ? { pki } : {}),
    policy,
    ...(claims !== undefined ? { claims } : {}),
    listenersWithoutRevocation,
    crlFiles,
    ...(debianBlacklist !== undefined ? { debianBlacklist } : {}),
    now,
    thresholds: thresholds ?? thresholdsOf(config),
  };
  return { input, revokedSerials };
}

/** How `bastion defender audit` names what it audits. */
export interface AuditSourceOptions {
  /** The broker's YAML config; absent: the zero-config broker of `dataDir`. */
  config?: string;
  dataDir?: string;
}

/** The config `bastion serve` would use with these options (zero-config without a config file). */
export async function auditSourceFromOptions(opts: AuditSourceOptions, cwd = process.cwd()): Promise<AuditSource> {
  if (opts.config === undefined) {
    const dataDir = resolve(cwd, opts.dataDir ?? DEFAULT_DATA_DIR);
    if (!existsSync(dataDir)) throw new BastionError('ERR_USAGE', `data directory ${dataDir} does not exist (pass --data-dir DIR or -c CONFIG)`);
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
  const { loadConfigFile } = await import('./load-config.js');
  const { config, baseDir } = loadConfigFile(opts.config);
  const dataDir = opts.dataDir !== undefined ? resolve(cwd, opts.dataDir) : config.dataDir;
  return auditSourceOf(config, baseDir, dataDir);
}

/** The CLI's input: the source its options name, thresholds from that config's `defender.audit`. */
export async function loadAuditInput(opts: AuditSourceOptions, now: Date, blacklistDir = DEBIAN_BLACKLIST_DIR): Promise<AuditInput> {
  return (await buildAuditSources(await auditSourceFromOptions(opts), now, blacklistDir)).input;
}
