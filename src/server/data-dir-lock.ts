/**
 * One broker process per data directory: `<dataDir>/bastion.lock`, created exclusively and
 * holding the owner's pid, host name and start time, removed at a clean stop. Taken before
 * any store opens, so two brokers never write the same audit chain (the second one's
 * writer would fork it: `UNIQUE constraint failed: records.seq`) or the same session store.
 * Owns: taking, recovering and releasing the lock file. Must not: open a store.
 *
 * SECURITY: a lock is recovered only when it is provably stale: written on this host by a
 * pid that no longer runs (or by this very pid, reused after a container restart, when this
 * process holds no lock on the directory). A lock from another host, an unreadable lock, or
 * a live pid refuse the start: guessing wrong forks the audit chain.
 */
import { closeSync, linkSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { BastionError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';

export const DATA_DIR_LOCK_FILE = 'bastion.lock';

export interface LockOwner {
  pid: number;
  hostname: string;
  /** ISO 8601. */
  startedAt: string;
}

export interface DataDirLock {
  readonly path: string;
  readonly owner: LockOwner;
  /** Removes the lock file if it is still ours (idempotent). */
  release(): void;
}

/** Lock files this process holds: a second server in the same process (tests) is refused too. */
const heldHere = new Set<string>();

function readOwner(path: string): LockOwner | null {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  try {
    const v = JSON.parse(text) as Partial<LockOwner>;
    if (typeof v.pid === 'number' && Number.isInteger(v.pid) && v.pid > 0 && typeof v.hostname === 'string' && typeof v.startedAt === 'string') return { pid: v.pid, hostname: v.hostname, startedAt: v.startedAt };
  } catch {
    // Unreadable: handled below as a lock we cannot judge.
  }
  throw new BastionError('ERR_DATA_DIR_LOCKED', `${path} exists but is not a Bastion lock file; if no broker uses this data directory, remove it`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, owned by another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Stale: written on this host by a process that is gone (see the SECURITY note above). */
function isStale(owner: LockOwner, path: string): boolean {
  if (owner.hostname !== hostname()) return false;
  if (owner.pid === process.pid) return !heldHere.has(path);
  return !alive(owner.pid);
}

function sameOwner(a: LockOwner, b: LockOwner | null): boolean {
  return b !== null && a.pid === b.pid && a.hostname === b.hostname && a.startedAt === b.startedAt;
}

function refusal(shownDir: string, owner: LockOwner): BastionError {
  const where = owner.hostname === hostname() ? '' : ` on host ${owner.hostname}`;
  return new BastionError('ERR_DATA_DIR_LOCKED', `data directory ${shownDir} is in use by bastion pid ${owner.pid}${where} (started ${owner.startedAt}); stop it or use another --data-dir`);
}

/**
 * Moves a stale lock aside. rename is atomic, so of two brokers recovering the same stale
 * lock, the one whose rename finds a fresh lock (the other already took over) puts it back.
 */
function removeStale(path: string, stale: LockOwner): void {
  const aside = `${path}.stale-${process.pid}`;
  try {
    renameSync(path, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  let moved: LockOwner | null = null;
  try {
    moved = readOwner(aside);
  } catch {
    // Not a lock we can read: treated as someone else's, put back below.
  }
  if (!sameOwner(stale, moved)) {
    try {
      linkSync(aside, path);
    } catch {
      // A third broker took the lock meanwhile: it owns the directory now.
    }
  }
  unlinkSync(aside);
}

/**
 * Creates `path` holding `text`, failing with EEXIST if it exists. The text is written to a
 * private file (O_EXCL) first and hard-linked into place (link never replaces a file), so
 * the lock appears with its owner already in it: a broker starting at the same moment
 * never reads a half-written lock and mistakes it for a foreign file.
 */
function createExclusive(path: string, text: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    unlinkSync(tmp);
  } catch {
    // None left over: the usual case.
  }
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(tmp, path);
  } finally {
    unlinkSync(tmp);
  }
}

/**
 * Takes the lock on `dataDir` (which must exist) or throws ERR_DATA_DIR_LOCKED naming the
 * holder; `shownDir` is the directory as the operator wrote it, for that message.
 */
export function acquireDataDirLock(dataDir: string, logger: Logger, shownDir: string = dataDir): DataDirLock {
  const path = join(dataDir, DATA_DIR_LOCK_FILE);
  const owner: LockOwner = { pid: process.pid, hostname: hostname(), startedAt: new Date().toISOString() };
  // Up to three rounds: a stale lock is moved aside, then the create must succeed or lose to a live owner.
  for (let round = 0; round < 3; round++) {
    try {
      createExclusive(path, `${JSON.stringify(owner)}\n`);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new BastionError('ERR_DATA_DIR_LOCKED', `cannot create ${path}: ${(err as Error).message}`);
      const holder = readOwner(path);
      if (holder === null) continue; // released between our create and our read
      if (!isStale(holder, path)) throw refusal(shownDir, holder);
      logger.warn({ path, pid: holder.pid, startedAt: holder.startedAt }, 'recovered a stale data directory lock: its broker is no longer running (killed or crashed?)');
      removeStale(path, holder);
      continue;
    }
    heldHere.add(path);
    let released = false;
    return {
      path,
      owner,
      release() {
        if (released) return;
        released = true;
        heldHere.delete(path);
        // Only our own lock: never remove one another broker took after a recovery.
        try {
          if (sameOwner(owner, readOwner(path))) unlinkSync(path);
        } catch (err) {
          logger.warn({ path, err: err instanceof Error ? err.message : String(err) }, 'could not remove the data directory lock');
        }
      },
    };
  }
  throw new BastionError('ERR_DATA_DIR_LOCKED', `cannot take ${path}: another broker keeps taking it`);
}
