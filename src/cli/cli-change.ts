/**
 * Recording an administrative change the CLI makes on a data directory directly (`cert
 * revoke`, `user add|del`, `acl role|rule|bind add|del`, `admin token create|revoke`): one
 * row in `<dataDir>/pending-changes.db`, which the broker drains into its audit log at its
 * next start, or within about a second while it runs (server/pending-changes-drain.ts).
 * Owns: the actor, the outcome of a failed change, and the order "store open, change,
 * record". Must not: write the audit log (the broker is its one writer).
 *
 *   await auditedChange(dataDir, 'user.del', name, async () => { ... });
 */
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import type { AdminChange } from '../admin/api/admin-change.js';
import { BastionError } from '../core/errors.js';
import type { SqlitePendingChangesStore } from '../store/sqlite/pending-changes-store.js';

/** `local:<OS user>` as the actor of every CLI change; "unknown" without a passwd entry (some containers). */
export function localUserName(): string {
  try {
    return userInfo().username;
  } catch {
    return 'unknown';
  }
}

/** How a refusal is recorded, by the error code the command threw. */
function outcomeOf(err: unknown): AdminChange['outcome'] {
  const code = err instanceof BastionError ? err.code : '';
  if (code === 'ERR_NOT_FOUND' || code.endsWith('_UNKNOWN') || code.endsWith('_UNKNOWN_SERIAL')) return 'not-found';
  if (code.endsWith('_EXISTS') || code === 'ERR_CONFLICT') return 'conflict';
  if (code === 'ERR_USAGE' || code.endsWith('_INVALID') || code.endsWith('_INVALID_INPUT') || code.endsWith('_READONLY')) return 'invalid';
  return 'failed';
}

async function openPending(dataDir: string): Promise<SqlitePendingChangesStore> {
  // SQLite loads only when a changing command runs.
  const { SqlitePendingChangesStore, PENDING_CHANGES_DB_FILE } = await import('../store/sqlite/pending-changes-store.js');
  return SqlitePendingChangesStore.open(join(dataDir, PENDING_CHANGES_DB_FILE));
}

/**
 * Runs `change` and records its outcome; a refusal is recorded and rethrown (the command's
 * one error line). `detail` adds facts to the record (never a secret).
 *
 * SECURITY: the pending store opens before the change, so a data directory where the change
 * could not be recorded refuses the change instead of making it unaudited. A refusal is
 * recorded only when the data directory exists: a mistyped --data-dir creates nothing.
 */
export async function auditedChange<T>(dataDir: string, action: string, target: string, change: () => Promise<T> | T, detail?: (result: T) => Record<string, unknown> | undefined): Promise<T> {
  const existed = existsSync(dataDir);
  let pending: SqlitePendingChangesStore | null = null;
  if (existed) pending = await openPending(dataDir);
  const record = (outcome: AdminChange['outcome'], extra: Record<string, unknown> | undefined): void => {
    pending?.append({ changeId: randomUUID(), createdAt: Date.now(), actor: `local:${localUserName()}`, remoteAddress: 'local', action, target, outcome, detail: { pid: process.pid, ...(extra ?? {}) } });
  };
  try {
    let result: T;
    try {
      result = await change();
    } catch (err) {
      record(outcomeOf(err), { reason: err instanceof Error ? err.message : String(err) });
      throw err;
    }
    if (pending === null) {
      // The change created the data directory: record it there now.
      mkdirSync(dataDir, { recursive: true, mode: 0o700 });
      pending = await openPending(dataDir);
    }
    record('ok', detail?.(result));
    return result;
  } finally {
    pending?.close();
  }
}
