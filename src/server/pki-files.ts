/**
 * Careful file writing for the PKI directory. Owns: private directories (0700), key
 * files (0600), atomic replacement (temp file + fsync + rename) and the key-mode check.
 * Must not: know which file holds what (pki-layout.ts does).
 *
 * Why atomic: a running broker watches `crl.pem` and the certificate files; it must only
 * ever read a complete old file or a complete new one, never a half-written one.
 */
import { randomBytes } from 'node:crypto';
import { link, lstat, mkdir, open, rename, rm, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { BastionError } from '../core/errors.js';

export const DIR_MODE = 0o700;
export const KEY_MODE = 0o600;
export const CERT_MODE = 0o644;

export function isErrno(err: unknown, ...codes: string[]): boolean {
  return err instanceof Error && 'code' in err && codes.includes(String((err as NodeJS.ErrnoException).code));
}

/** Creates `dir` (and parents) with mode 0700 when missing. */
export async function ensurePrivateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: DIR_MODE });
}

/** Writes a new file with its final mode set at creation, then flushes it to disk. */
export async function writeNewFile(path: string, data: string | Buffer, mode: number): Promise<void> {
  // SECURITY: the mode is applied by open(2) itself ('wx' = O_CREAT|O_EXCL), so a key is
  // never readable by others, not even for a moment, and an existing file is never replaced.
  const handle = await open(path, 'wx', mode);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** fsync of a directory, so a rename in it survives a crash. Best effort. */
export async function syncDir(path: string): Promise<void> {
  try {
    const handle = await open(path, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // Directory fsync is not supported on every platform.
  }
}

/**
 * Replaces (or creates) `path` atomically: the data goes to a private temporary file in
 * the same directory, is flushed, and is renamed over the target. Readers see the old
 * file or the new one, never a mix.
 */
export async function writeFileAtomic(path: string, data: string | Buffer, mode: number): Promise<void> {
  const dir = dirname(path);
  const temp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    await writeNewFile(temp, data, mode);
    await rename(temp, path);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
  await syncDir(dir);
}

/**
 * Creates `path` atomically and only if it does not exist: the complete file is written
 * under a temporary name and hard-linked into place (link(2) fails with EEXIST instead of
 * replacing), so a watcher never sees it half written and an existing file is kept.
 */
export async function writeNewFileAtomic(path: string, data: string | Buffer, mode: number): Promise<void> {
  const dir = dirname(path);
  const temp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  await writeNewFile(temp, data, mode);
  try {
    await link(temp, path);
  } finally {
    await unlink(temp).catch(() => undefined);
  }
  await syncDir(dir);
}

/** True when `path` exists as a regular file; throws if it exists as something else. */
export async function isRegularFile(path: string): Promise<boolean> {
  try {
    const st = await lstat(path);
    if (!st.isFile()) throw new BastionError('ERR_PKI_FILES', `${path} exists but is not a regular file`);
    return true;
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return false;
    throw err;
  }
}

/** SECURITY: refuse private keys that group or others can read (like ssh does). */
export async function checkKeyMode(path: string): Promise<void> {
  if (process.platform === 'win32') return; // POSIX modes are not meaningful there.
  const st = await lstat(path);
  if ((st.mode & 0o077) !== 0) {
    throw new BastionError('ERR_PKI_FILES', `private key ${path} is accessible by group or others (mode ${(st.mode & 0o777).toString(8)}); run: chmod 600 ${path}`);
  }
}
