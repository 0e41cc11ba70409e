/**
 * The development PKI: a local CA, a localhost server certificate and one demo device
 * certificate under `<dataDir>/pki/`, created on first start so the broker is TLS-only
 * from the first run. Owns: the file layout and file permissions. Must not: overwrite
 * an existing CA, or be used for production (its CA key sits next to the broker).
 */
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, open, rename, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { BastionError } from '../core/errors.js';
import { createRootCa, issueCertificate, issueLocalServerCertificate } from '../pki/index.js';

export interface DevPkiPaths {
  /** Absolute path of `<dataDir>/pki`. */
  readonly dir: string;
  readonly caCert: string;
  readonly caKey: string;
  readonly serverCert: string;
  readonly serverKey: string;
  /** The demo device (CN `device-demo`, client profile). */
  readonly clientCert: string;
  readonly clientKey: string;
  /** True when this call generated the files, false when it reused them. */
  readonly created: boolean;
}

export const DEV_CA_COMMON_NAME = 'Bastion Development CA';
export const DEV_DEVICE_COMMON_NAME = 'device-demo';

const FILES = {
  caCert: 'ca.crt',
  caKey: 'ca.key',
  serverCert: 'server.crt',
  serverKey: 'server.key',
  clientCert: 'device-demo.crt',
  clientKey: 'device-demo.key',
} as const;

type FileRole = keyof typeof FILES;
const ROLES = Object.keys(FILES) as FileRole[];
const KEY_ROLES: readonly FileRole[] = ['caKey', 'serverKey', 'clientKey'];

const DIR_MODE = 0o700;
const KEY_MODE = 0o600;
const CERT_MODE = 0o644;

function devPkiError(message: string): BastionError {
  return new BastionError('ERR_DEV_PKI', message);
}

function isErrno(err: unknown, ...codes: string[]): boolean {
  return err instanceof Error && 'code' in err && codes.includes(String((err as NodeJS.ErrnoException).code));
}

/** Writes a new file with its final mode set at creation, then flushes it to disk. */
async function writeNewFile(path: string, data: string, mode: number): Promise<void> {
  // SECURITY: the mode is applied by open(2) itself ('wx' = O_CREAT|O_EXCL), so a key is
  // never readable by others, not even for a moment, and an existing file is never replaced.
  const handle = await open(path, 'wx', mode);
  try {
    await handle.writeFile(data, 'utf8');
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function syncDir(path: string): Promise<void> {
  try {
    const handle = await open(path, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // Directory fsync is best effort (not supported on every platform).
  }
}

/** Which of the six files exist, as regular files. */
async function survey(dir: string): Promise<{ present: FileRole[]; missing: FileRole[] }> {
  const present: FileRole[] = [];
  const missing: FileRole[] = [];
  for (const role of ROLES) {
    const path = join(dir, FILES[role]);
    try {
      const st = await lstat(path);
      if (!st.isFile()) throw devPkiError(`${path} exists but is not a regular file`);
      present.push(role);
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err;
      missing.push(role);
    }
  }
  return { present, missing };
}

/** SECURITY: refuse to run with private keys that group or others can read (like ssh). */
async function checkKeyModes(paths: Record<FileRole, string>): Promise<void> {
  if (process.platform === 'win32') return; // POSIX modes are not meaningful there.
  for (const role of KEY_ROLES) {
    const st = await lstat(paths[role]);
    if ((st.mode & 0o077) !== 0) {
      throw devPkiError(
        `private key ${paths[role]} is accessible by group or others (mode ${(st.mode & 0o777).toString(8)}); run: chmod 600 ${paths[role]}`,
      );
    }
  }
}

function pathsIn(dir: string): Record<FileRole, string> {
  const out = {} as Record<FileRole, string>;
  for (const role of ROLES) out[role] = join(dir, FILES[role]);
  return out;
}

/** Generates the development CA, server and demo device certificates in memory. */
async function generate(): Promise<Record<FileRole, string>> {
  const ca = await createRootCa({ commonName: DEV_CA_COMMON_NAME });
  const server = await issueLocalServerCertificate(ca);
  const device = await issueCertificate({ ca, profile: 'client', commonName: DEV_DEVICE_COMMON_NAME });
  return {
    caCert: ca.certPem,
    caKey: ca.keyPem,
    serverCert: server.certPem,
    serverKey: server.keyPem,
    clientCert: device.certPem,
    clientKey: device.keyPem,
  };
}

/**
 * Makes sure `<dataDir>/pki/` holds the development PKI and returns the file paths.
 *
 * First call: generates everything, writes it into a private temporary directory
 * (mode 0700, keys 0600, certificates 0644) and renames that directory into place, so a
 * crash never leaves half a PKI behind and two processes starting at once agree on one CA.
 * Later calls reuse the files (`created: false`). If only some of the files exist, it
 * throws (code ERR_DEV_PKI) rather than replace a CA that certificates may already chain to.
 */
export async function ensureDevPki(dataDir: string): Promise<DevPkiPaths> {
  if (typeof dataDir !== 'string' || dataDir.length === 0) throw devPkiError('dataDir must be a non-empty path');
  const root = resolve(dataDir);
  const dir = join(root, 'pki');
  const paths = pathsIn(dir);
  const result = (created: boolean): DevPkiPaths => ({ dir, ...paths, created });

  const reuse = async (): Promise<DevPkiPaths | undefined> => {
    const { present, missing } = await survey(dir);
    if (missing.length === 0) {
      await checkKeyModes(paths);
      return result(false);
    }
    if (present.length > 0) {
      throw devPkiError(
        `development PKI in ${dir} is incomplete: found ${present.map((r) => FILES[r]).join(', ')}; ` +
          `missing ${missing.map((r) => FILES[r]).join(', ')}. Refusing to overwrite an existing CA: ` +
          `restore the missing files, or delete ${dir} to generate a new development PKI ` +
          `(certificates issued by the old CA will stop working).`,
      );
    }
    return undefined;
  };

  const existing = await reuse();
  if (existing !== undefined) return existing;

  const material = await generate();
  await mkdir(root, { recursive: true, mode: DIR_MODE });
  const staging = join(root, `.pki-staging-${randomBytes(6).toString('hex')}`);
  await mkdir(staging, { mode: DIR_MODE });
  try {
    for (const role of ROLES) {
      await writeNewFile(join(staging, FILES[role]), material[role], KEY_ROLES.includes(role) ? KEY_MODE : CERT_MODE);
    }
    await syncDir(staging);
    try {
      // Atomic publish. Replaces `dir` only if it is an empty directory (POSIX rename).
      await rename(staging, dir);
    } catch (err) {
      if (!isErrno(err, 'ENOTEMPTY', 'EEXIST', 'EPERM', 'EISDIR', 'ENOTDIR')) throw err;
      // Someone else created it meanwhile (use theirs), or it holds unrelated files.
      const raced = await reuse();
      if (raced !== undefined) return raced;
      throw devPkiError(`${dir} exists and is not empty, but holds no development PKI; move its contents away or choose another data directory`);
    }
    await syncDir(root);
    return result(true);
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}
