/**
 * The zero-config PKI: on the first `bastion serve` without a config, a root CA, an
 * intermediate, a localhost server certificate and the demo device certificate
 * `device-demo` under `<dataDir>/pki/`, all made through the PkiService (so they are in
 * the inventory and can be listed and revoked like any other). Owns: deciding whether to
 * create, reuse or refuse. Must not: overwrite an existing CA, or be used for production
 * as is (its root key sits next to the broker until `bastion ca export-root`).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, rename, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { BastionError } from '../core/errors.js';
import { LOCAL_SERVER_SANS } from '../pki/index.js';
import { DIR_MODE, checkKeyMode, isErrno, isRegularFile, syncDir } from './pki-files.js';
import { pkiLayout } from './pki-layout.js';
import { rootKeyPassphraseFromEnv } from './pki-passphrase.js';
import { PkiService } from './pki-service.js';

export interface DevPkiPaths {
  /** Absolute path of `<dataDir>/pki`. */
  readonly dir: string;
  /** The trust anchor clients and the broker use (`--cafile`). */
  readonly rootCert: string;
  /** Intermediate + root. */
  readonly caChain: string;
  readonly crl: string;
  /** Leaf + intermediate. */
  readonly serverCert: string;
  readonly serverKey: string;
  /** The demo device's common name (`device-demo`), which its topics are named after. */
  readonly clientCommonName: string;
  /** The demo device (client profile), leaf + intermediate. */
  readonly clientCert: string;
  readonly clientKey: string;
  /** True when this call generated the CA, false when it reused one. */
  readonly created: boolean;
}

export const DEV_ROOT_COMMON_NAME = 'Bastion Development Root CA';
export const DEV_INTERMEDIATE_COMMON_NAME = 'Bastion Development Intermediate CA';
export const DEV_DEVICE_COMMON_NAME = 'device-demo';
const SERVER_STEM = 'server';

function devPkiError(message: string): BastionError {
  return new BastionError('ERR_DEV_PKI', message);
}

function pathsOf(dir: string, created: boolean): DevPkiPaths {
  const l = pkiLayout(dir);
  return {
    dir: l.dir,
    rootCert: l.rootCert,
    caChain: l.caChain,
    crl: l.crl,
    serverCert: join(l.dir, `${SERVER_STEM}.crt`),
    serverKey: join(l.dir, `${SERVER_STEM}.key`),
    clientCommonName: DEV_DEVICE_COMMON_NAME,
    clientCert: join(l.dir, `${DEV_DEVICE_COMMON_NAME}.crt`),
    clientKey: join(l.dir, `${DEV_DEVICE_COMMON_NAME}.key`),
    created,
  };
}

/** Every file the zero-config PKI consists of (root.key may have been exported). */
function knownFiles(p: DevPkiPaths): string[] {
  const l = pkiLayout(p.dir);
  return [l.rootKey, l.intermediateCert, l.intermediateKey, l.caChain, l.crl, l.inventory, p.serverCert, p.serverKey, p.clientCert, p.clientKey];
}

/** Issues the server and demo device certificates that are missing (both files absent). */
async function completeLeaves(service: PkiService, p: DevPkiPaths): Promise<void> {
  const pairs = [
    { cert: p.serverCert, key: p.serverKey, issue: () => service.issue({ profile: 'server', commonName: 'localhost', sans: LOCAL_SERVER_SANS, outDir: p.dir, fileStem: SERVER_STEM }) },
    { cert: p.clientCert, key: p.clientKey, issue: () => service.issue({ profile: 'client', commonName: DEV_DEVICE_COMMON_NAME, outDir: p.dir, fileStem: DEV_DEVICE_COMMON_NAME }) },
  ];
  for (const pair of pairs) {
    const [hasCert, hasKey] = [await isRegularFile(pair.cert), await isRegularFile(pair.key)];
    if (hasCert && hasKey) continue;
    if (hasCert !== hasKey) {
      throw devPkiError(
        `the PKI in ${p.dir} is incomplete: found ${hasCert ? pair.cert : pair.key} but not ${hasCert ? pair.key : pair.cert}. ` +
          'Refusing to replace half a certificate: restore the missing file, or move the other away to issue a new pair.',
      );
    }
    await pair.issue();
  }
}

/** Uses an existing CA: checks key modes, issues missing leaves, makes sure crl.pem exists. */
async function reuse(p: DevPkiPaths): Promise<DevPkiPaths> {
  const service = await PkiService.open(p.dir, { passphrase: rootKeyPassphraseFromEnv() });
  try {
    await completeLeaves(service, p);
    const l = pkiLayout(p.dir);
    for (const key of [l.rootKey, l.intermediateKey, p.serverKey, p.clientKey]) if (await isRegularFile(key)) await checkKeyMode(key);
    if (!(await isRegularFile(p.crl))) await service.writeCrl();
  } finally {
    service.close();
  }
  return p;
}

/** Builds the whole PKI in `staging` (a fresh private directory). */
async function generate(staging: string): Promise<void> {
  const service = await PkiService.init(staging, { commonName: DEV_ROOT_COMMON_NAME });
  try {
    await service.createIntermediate({ commonName: DEV_INTERMEDIATE_COMMON_NAME });
    await completeLeaves(service, pathsOf(staging, true));
  } finally {
    service.close();
  }
}

/**
 * Makes sure `<dataDir>/pki/` holds a usable PKI and returns the file paths.
 *
 * First call: builds everything in a private temporary directory and renames it into
 * place, so a crash never leaves half a PKI behind and two processes starting at once
 * agree on one CA. With a CA already there (from an earlier start, or `bastion ca init`),
 * it is reused and only the missing server / demo device pairs are issued. Files of a PKI
 * without its root certificate, or half a pair, make it refuse (ERR_DEV_PKI) rather than
 * replace a CA that certificates may already chain to.
 */
export async function ensureDevPki(dataDir: string): Promise<DevPkiPaths> {
  if (typeof dataDir !== 'string' || dataDir.length === 0) throw devPkiError('dataDir must be a non-empty path');
  const root = resolve(dataDir);
  const paths = pathsOf(join(root, 'pki'), false);

  const existing = async (): Promise<DevPkiPaths | undefined> => {
    if (await isRegularFile(join(paths.dir, 'ca.crt'))) {
      throw devPkiError(`${paths.dir} holds a development PKI of an older layout (ca.crt); move it away to generate the new one (root, intermediate, inventory)`);
    }
    if (await isRegularFile(pkiLayout(paths.dir).rootCert)) return reuse(paths);
    const present: string[] = [];
    for (const f of knownFiles(paths)) if (await isRegularFile(f)) present.push(f);
    if (present.length > 0) {
      throw devPkiError(
        `the PKI in ${paths.dir} is incomplete: found ${present.join(', ')} but no root certificate. Refusing to overwrite it: ` +
          `restore root.crt, or delete ${paths.dir} to generate a new PKI (certificates issued by the old CA will stop working).`,
      );
    }
    return undefined;
  };

  const found = await existing();
  if (found !== undefined) return found;

  await mkdir(root, { recursive: true, mode: DIR_MODE });
  const staging = join(root, `.pki-staging-${randomBytes(6).toString('hex')}`);
  await mkdir(staging, { mode: DIR_MODE });
  try {
    await generate(staging);
    await syncDir(staging);
    try {
      // Atomic publish. Replaces `dir` only if it is an empty directory (POSIX rename).
      await rename(staging, paths.dir);
    } catch (err) {
      if (!isErrno(err, 'ENOTEMPTY', 'EEXIST', 'EPERM', 'EISDIR', 'ENOTDIR')) throw err;
      // Someone else created it meanwhile (use theirs), or it holds unrelated files.
      const raced = await existing();
      if (raced !== undefined) return raced;
      throw devPkiError(`${paths.dir} exists and is not empty, but holds no PKI; move its contents away or choose another data directory`);
    }
    await syncDir(root);
    return { ...paths, created: true };
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}
