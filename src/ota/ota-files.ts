/**
 * The broker side's OTA files under `<dataDir>/ota/` (docs/OTA.md "Files"). Owns: the
 * layout, key files (hybrid pairs as one JSON file each), the pinned root public keys, the
 * current signed key set, atomic replacement, and the directory lock the changing
 * commands hold. Must not: sign or verify (src/firmware/ does), or print.
 *
 * SECURITY:
 * - Key files are created 0600 in a 0700 directory, and a key file others can read is
 *   refused at load (as ssh refuses one).
 * - `root.key.json` is meant to leave the machine: `bastion ota key init` writes it once
 *   and says to move it offline; `ota key rotate` takes it back with --root-key.
 * - Every replaced file is written to a temporary file, synced, then renamed over the old
 *   one, so a crash leaves the old file or the new one.
 */
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, open, readFile, rename, rm, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { BastionError } from '../core/errors.js';
import { exportFirmwarePrivateKeys, importFirmwareKeyPair, type FirmwareKeyPair, type FirmwarePublicKey, type SignedKeySet } from '../firmware/index.js';

export const OTA_DIR = 'ota';
export const ROOT_KEY_FILE = 'root.key.json';
export const ROOT_PUB_FILE = 'root.pub.json';
export const RELEASE_KEY_FILE = 'release.key.json';
export const KEYSET_FILE = 'keyset.json';
export const IMAGES_DIR = 'images';
export const RELEASES_FILE = 'releases.json';
const LOCK_FILE = '.lock';

export type OtaKeyRole = 'root' | 'release';

export const ROOT_KEY_WARNING = 'OFFLINE ROOT KEY: move this file to offline storage (an encrypted USB stick in a safe) and delete it from this machine. Anyone holding it can authorise firmware for every device. `bastion ota key rotate --root-key FILE` needs it back only to rotate release keys.';

export class OtaError extends BastionError {
  constructor(message: string) {
    super('ERR_OTA', message);
    this.name = 'OtaError';
  }
}

export function otaDirOf(dataDir: string): string {
  return join(dataDir, OTA_DIR);
}

function isErrno(err: unknown, code: string): boolean {
  return err instanceof Error && (err as NodeJS.ErrnoException).code === code;
}

export async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return false;
    throw err;
  }
}

async function syncDir(dir: string): Promise<void> {
  try {
    const h = await open(dir, 'r');
    try {
      await h.sync();
    } finally {
      await h.close();
    }
  } catch {
    // Directory fsync is not supported on every platform.
  }
}

/** Replaces (or creates) `path`: temporary file, fsync, rename, directory fsync. */
export async function writeFileAtomic(path: string, data: string | Buffer, mode: number, exclusive = false): Promise<void> {
  const dir = dirname(path);
  const temp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const h = await open(temp, 'wx', mode);
    try {
      await h.writeFile(data);
      await h.sync();
    } finally {
      await h.close();
    }
    if (exclusive && (await exists(path))) throw new OtaError(`${path} already exists; refusing to replace it`);
    await rename(temp, path);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
  await syncDir(dir);
}

export async function ensureOtaDir(dataDir: string): Promise<string> {
  const dir = otaDirOf(dataDir);
  await mkdir(join(dir, IMAGES_DIR), { recursive: true, mode: 0o700 });
  return dir;
}

/**
 * Runs `fn` holding `<ota>/.lock` (created exclusively), so two changing commands never
 * interleave their read-modify-write of releases.json or the key files.
 */
export async function withOtaLock<T>(dataDir: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await ensureOtaDir(dataDir);
  const lock = join(dir, LOCK_FILE);
  let h;
  try {
    h = await open(lock, 'wx', 0o600);
  } catch (err) {
    if (isErrno(err, 'EEXIST')) throw new OtaError(`another ota command holds ${lock}; if none is running, remove that file`);
    throw err;
  }
  try {
    await h.writeFile(`${process.pid}\n`);
    await h.close();
    return await fn(dir);
  } finally {
    await unlink(lock).catch(() => undefined);
  }
}

interface KeyFile {
  kind: 'bastion-ota-key';
  role: OtaKeyRole;
  id: string;
  createdAt: string;
  warning?: string;
  classicPrivatePem: string;
  pqPrivatePem: string;
}

/** Writes a key pair 0600; refuses to replace an existing file unless `replace`. */
export async function writeKeyFile(path: string, role: OtaKeyRole, pair: FirmwareKeyPair, replace: boolean): Promise<void> {
  const file: KeyFile = { kind: 'bastion-ota-key', role, id: pair.id, createdAt: new Date().toISOString(), ...(role === 'root' ? { warning: ROOT_KEY_WARNING } : {}), ...exportFirmwarePrivateKeys(pair) };
  await writeFileAtomic(path, `${JSON.stringify(file, null, 2)}\n`, 0o600, !replace);
}

/** Reads a key file of `role`; one readable line on any problem (never the key material). */
export async function readKeyFile(path: string, role: OtaKeyRole): Promise<FirmwareKeyPair> {
  let st;
  try {
    st = await stat(path);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) throw new OtaError(`no ${role} key at ${path}${role === 'release' ? ' (run `bastion ota key init` first)' : ''}`);
    throw err;
  }
  if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) throw new OtaError(`${path} is readable by other users (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it first`);
  let file: Partial<KeyFile>;
  try {
    file = JSON.parse(await readFile(path, 'utf8')) as Partial<KeyFile>;
  } catch {
    throw new OtaError(`${path} is not an OTA key file`);
  }
  if (file.kind !== 'bastion-ota-key' || typeof file.classicPrivatePem !== 'string' || typeof file.pqPrivatePem !== 'string') throw new OtaError(`${path} is not an OTA key file`);
  if (file.role !== role) throw new OtaError(`${path} holds a ${String(file.role)} key, not a ${role} key`);
  let pair: FirmwareKeyPair;
  try {
    pair = importFirmwareKeyPair(file.classicPrivatePem, file.pqPrivatePem);
  } catch {
    throw new OtaError(`${path} holds an unreadable key`);
  }
  if (pair.id !== file.id) throw new OtaError(`${path}: the keys do not match the id the file names`);
  return pair;
}

/** `root.pub.json`: the root public keys devices pin. */
export interface RootPins {
  rootKeys: FirmwarePublicKey[];
}

export async function readJson<T>(path: string, what: string): Promise<T> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if (isErrno(err, 'ENOENT')) throw new OtaError(`no ${what} at ${path} (run \`bastion ota key init\` first)`);
    throw err;
  }
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new OtaError(`${path} is not valid JSON`);
  }
}

export async function readRootPins(dir: string): Promise<FirmwarePublicKey[]> {
  const pins = await readJson<Partial<RootPins>>(join(dir, ROOT_PUB_FILE), 'root public keys');
  if (!Array.isArray(pins.rootKeys) || pins.rootKeys.length === 0) throw new OtaError(`${join(dir, ROOT_PUB_FILE)} lists no root keys`);
  return pins.rootKeys;
}

export async function readSignedKeySet(dir: string): Promise<SignedKeySet> {
  return readJson<SignedKeySet>(join(dir, KEYSET_FILE), 'key set');
}

export async function writeSignedKeySet(dir: string, signed: SignedKeySet): Promise<void> {
  await writeFileAtomic(join(dir, KEYSET_FILE), `${JSON.stringify(signed, null, 2)}\n`, 0o644);
}

export async function writeRootPins(dir: string, pins: RootPins): Promise<void> {
  await writeFileAtomic(join(dir, ROOT_PUB_FILE), `${JSON.stringify(pins, null, 2)}\n`, 0o644, true);
}
