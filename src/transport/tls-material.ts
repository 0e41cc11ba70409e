/**
 * The files behind a TLS listener: certificate chain, key, CA, CRLs and PSK keys. Owns:
 * reading them, checking that they form a usable secure context, and telling which of
 * them changed since the last load. Must not: apply anything to a server.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, join, relative } from 'node:path';
import tls from 'node:tls';
import { BastionError } from '../core/errors.js';
import { parsePskFile } from './tls-psk.js';

export interface TlsPaths {
  cert: string;
  key: string;
  ca?: string;
  crl?: string;
  psk?: string;
}

export interface TlsMaterial {
  cert: string;
  key: string;
  ca?: string;
  /** The CRL file's text, as read. */
  crlPem?: string;
  /** One entry per CRL block: Node reads only the first CRL of a string. */
  crls?: string[];
  psk?: Map<string, Buffer>;
  /** SHA-256 of each file's bytes, by role. */
  hashes: Record<keyof TlsPaths, string | undefined>;
}

const CRL_BLOCK = /-----BEGIN X509 CRL-----[\s\S]+?-----END X509 CRL-----/g;

function splitCrls(pem: string): string[] {
  return pem.match(CRL_BLOCK) ?? [];
}

function hash(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

async function readText(role: string, path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new BastionError('ERR_TLS_MATERIAL', `cannot read tls.${role} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/**
 * Reads every file and proves the set usable by building a secure context from it: a bad
 * PEM, a key that does not match the certificate or an unparsable CRL fails here, before
 * anything is applied. Throws ERR_TLS_MATERIAL naming the file.
 */
export async function loadTlsMaterial(paths: TlsPaths): Promise<TlsMaterial> {
  const cert = await readText('cert', paths.cert);
  const key = await readText('key', paths.key);
  const ca = paths.ca !== undefined ? await readText('ca', paths.ca) : undefined;
  const crlPem = paths.crl !== undefined ? await readText('crl', paths.crl) : undefined;
  const pskText = paths.psk !== undefined ? await readText('psk', paths.psk) : undefined;

  if (!cert.includes('-----BEGIN CERTIFICATE-----')) throw new BastionError('ERR_TLS_MATERIAL', `tls.cert ${paths.cert} holds no PEM certificate`);
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(key)) throw new BastionError('ERR_TLS_MATERIAL', `tls.key ${paths.key} holds no PEM private key`);
  if (ca !== undefined && !ca.includes('-----BEGIN CERTIFICATE-----')) throw new BastionError('ERR_TLS_MATERIAL', `tls.ca ${paths.ca} holds no PEM certificate`);
  const crls = crlPem !== undefined ? splitCrls(crlPem) : undefined;
  if (crls !== undefined && crls.length === 0) throw new BastionError('ERR_TLS_MATERIAL', `tls.crl ${paths.crl} holds no "X509 CRL" PEM block`);

  try {
    tls.createSecureContext({ cert, key });
  } catch (err) {
    throw new BastionError('ERR_TLS_MATERIAL', `tls.cert ${paths.cert} / tls.key ${paths.key} unusable: ${(err as Error).message}`);
  }
  try {
    if (ca !== undefined || crls !== undefined) tls.createSecureContext({ ...(ca !== undefined ? { ca } : {}), ...(crls !== undefined ? { crl: crls } : {}) });
  } catch (err) {
    throw new BastionError('ERR_TLS_MATERIAL', `tls.ca / tls.crl unusable: ${(err as Error).message}`);
  }
  // A bad PSK file is a ConfigError (ERR_CONFIG) naming the entry.
  const psk = pskText !== undefined ? parsePskFile(pskText, paths.psk!) : undefined;
  return {
    cert,
    key,
    ...(ca !== undefined ? { ca } : {}),
    ...(crlPem !== undefined ? { crlPem, crls: crls! } : {}),
    ...(psk !== undefined ? { psk } : {}),
    hashes: {
      cert: hash(cert),
      key: hash(key),
      ca: ca !== undefined ? hash(ca) : undefined,
      crl: crlPem !== undefined ? hash(crlPem) : undefined,
      psk: pskText !== undefined ? hash(pskText) : undefined,
    },
  };
}

/** The roles whose file content differs between two loads. */
export function changedFiles(before: TlsMaterial, after: TlsMaterial): Array<keyof TlsPaths> {
  return (Object.keys(after.hashes) as Array<keyof TlsPaths>).filter((role) => before.hashes[role] !== after.hashes[role]);
}

/** Where a config's files resolve, and where the built-in PKI keeps its own. */
export interface TlsFileDirs {
  /** The folder relative paths resolve against (the config file's). */
  baseDir: string;
  /** The built-in PKI's directory (`pki.dir`, default `<dataDir>/pki`). */
  pkiDir: string;
  dataDir: string;
}

/**
 * Adds to a failed load what the operator most likely meant, when a configured file is
 * missing: relative paths resolve beside the config file, while the PKI the zero-config
 * start made lives in `<dataDir>/pki`, so `cert: pki/server.crt` beside a `bastion-data`
 * folder names a file that does not exist. Only says where a file is; never reads it in
 * its place (SECURITY: the config names the files a listener uses, nothing else does).
 */
export function withMissingFileHint(err: unknown, paths: TlsPaths, dirs: TlsFileDirs): unknown {
  if (!(err instanceof BastionError) || err.code !== 'ERR_TLS_MATERIAL' || !err.message.endsWith(': ENOENT')) return err;
  const missing = [paths.cert, paths.key, paths.ca, paths.crl, paths.psk].find((p) => p !== undefined && err.message.includes(` ${p}: `) && !existsSync(p));
  if (missing === undefined) return err;
  const shown = (p: string): string => {
    const rel = relative(dirs.baseDir, p);
    return rel.startsWith('..') || rel === '' ? p : rel;
  };
  const inPki = join(dirs.pkiDir, basename(missing));
  if (inPki !== missing && existsSync(inPki)) {
    return new BastionError('ERR_TLS_MATERIAL', `${err.message} (relative paths resolve against the config file's folder ${dirs.baseDir}; the built-in PKI has ${shown(inPki)})`);
  }
  if (dirname(missing) === dirs.pkiDir && !existsSync(join(dirs.pkiDir, 'root.crt'))) {
    return new BastionError('ERR_TLS_MATERIAL', `${err.message} (no PKI has been made in ${dirs.pkiDir} yet: \`bastion serve --data-dir ${dirs.dataDir}\`, without -c, makes the development PKI there)`);
  }
  return err;
}
