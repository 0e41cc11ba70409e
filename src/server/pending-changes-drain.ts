/**
 * Brings the CLI's administrative changes into the audit log: reads
 * `<dataDir>/pending-changes.db` (store/sqlite/pending-changes-store.ts), emits one
 * `admin.change` event per row on the broker's security-event stream (so the one audit
 * writer records it, like a change through the admin API), and deletes each row once the
 * audit log holds it. Runs at start, before the listeners, then on a 1 s poll, and a last
 * time at stop. Owns: that hand-over and its timer. Must not: write the audit log itself
 * (the chain has one writer) or decide anything about the change.
 *
 * Exactly once, across crashes. The pending rows and the audit records live in two SQLite
 * files, so no one transaction spans "recorded" and "deleted". Per batch:
 *   1. mark the rows attempted (committed), 2. emit them, 3. flush the audit writer,
 *   4. read audit.db back and delete exactly the rows whose change id it now holds.
 * A crash before 3 commits leaves rows that are attempted but absent from the log; a crash
 * between 3 and 4 leaves rows that are attempted and present. At the next start every
 * attempted row is looked up in the log by its change id: present ones are deleted without
 * a second emit, absent ones are emitted again. Rows never attempted cannot be in the log
 * and are not looked up. A row is deleted only after its record was read back from
 * audit.db, never on the writer's word, so a failed audit write (kept and retried by the
 * writer) never loses a change. The one residue: the start-up lookup reads records from 10
 * minutes before the attempt on; a wall clock stepped back further than that between the
 * attempt and the record makes the lookup miss, and the change is recorded twice with the
 * same change id (visible in `bastion audit query --type admin.change`).
 *
 * Why a poll and not fs.watch: the CLI's commit lands in the -wal file, fs.watch is
 * unreliable on network and container file systems (the TLS watcher keeps a stat poll as a
 * fallback for that reason), and the poll costs one `PRAGMA data_version` a second, which
 * changes only when another process committed. A change made while the broker runs is
 * recorded within about a second.
 */
import { join } from 'node:path';
import type { Logger } from '../core/logger.js';
import type { SecurityEvent, SecurityEvents } from '../core/security-events.js';
import { SqliteAuditStore } from '../store/sqlite/audit-store.js';
import { PENDING_CHANGES_DB_FILE, SqlitePendingChangesStore, type StoredPendingChange } from '../store/sqlite/pending-changes-store.js';

/** How often the pending-changes file is looked at while the broker runs. */
export const PENDING_CHANGES_POLL_MS = 1000;
/** Rows emitted per audit flush. */
const BATCH = 500;
/** Audit records read per query when looking for change ids. */
const SCAN_PAGE = 1000;
/** How far before an attempt the start-up lookup reads, for a wall clock stepped back. */
const CLOCK_MARGIN_MS = 10 * 60_000;

export function pendingChangesPath(dataDir: string): string {
  return join(dataDir, PENDING_CHANGES_DB_FILE);
}

export interface PendingChangesDrainOptions {
  dataDir: string;
  events: SecurityEvents;
  /** The audit side: where its database is, and a way to write what it holds now. */
  audit: { readonly path: string; flush(): void };
  logger: Logger;
  pollMs?: number;
  now?: () => number;
}

export interface PendingChangesDrain {
  /** Emits what is pending and deletes what the audit log now holds; returns how many rows were emitted. */
  drain(): number;
  /** Rows emitted by this process whose record has not been read back from audit.db yet. */
  readonly unconfirmed: number;
  /** A last drain, then the timer stops and the files close (before the audit side stops). */
  stop(): void;
}

/** The admin.change event of a CLI change; the change id and the CLI's time travel in its detail. */
function eventOf(row: StoredPendingChange): SecurityEvent {
  return {
    type: 'admin.change',
    actor: row.actor,
    remoteAddress: row.remoteAddress,
    action: row.action,
    target: row.target,
    outcome: row.outcome,
    detail: { ...(row.detail ?? {}), via: 'cli', changeId: row.changeId, changedAt: new Date(row.createdAt).toISOString() },
  };
}

/** The change id an admin.change record carries, if it came from this drain. */
function changeIdOf(eventJson: string): string | null {
  try {
    const e = JSON.parse(eventJson) as { detail?: { changeId?: unknown } };
    return typeof e.detail?.changeId === 'string' ? e.detail.changeId : null;
  } catch {
    return null;
  }
}

/** Opens both files and runs the start-up recovery and first drain; throws (failing the start) if it cannot. */
export function startPendingChangesDrain(opts: PendingChangesDrainOptions): PendingChangesDrain {
  const { logger, events } = opts;
  const now = opts.now ?? Date.now;
  // SECURITY: fail closed. If the CLI's changes cannot be read, the broker does not start
  // as if there were none: they would never reach the audit log.
  const store = SqlitePendingChangesStore.open(pendingChangesPath(opts.dataDir));
  let reader: SqliteAuditStore;
  try {
    // A reader only: the audit writer (audit-side.ts) stays the one writer of the chain.
    reader = SqliteAuditStore.open(opts.audit.path, { create: false });
  } catch (err) {
    store.close();
    throw err;
  }
  /** Emitted by this process, awaiting their record: change id → attempt time. */
  const emitted = new Map<string, number>();
  /** Rows up to this seq were emitted by this process (new CLI rows always get a higher one). */
  let lastEmittedSeq = 0;
  /** Audit records up to this seq were looked at already (records land in seq order). */
  let scannedSeq = reader.last()?.seq ?? 0;

  /** The ids among `wanted` that admin.change records hold, reading from `since` / after `afterSeq`. */
  const scan = (wanted: ReadonlySet<string>, from: { since?: number; afterSeq?: number }): Set<string> => {
    const found = new Set<string>();
    let after = from.afterSeq ?? 0;
    for (;;) {
      const page = reader.query({ type: 'admin.change', since: from.since, afterSeq: after, limit: SCAN_PAGE });
      for (const r of page) {
        const id = changeIdOf(r.eventJson);
        if (id !== null && wanted.has(id)) found.add(id);
      }
      const last = page[page.length - 1];
      if (last !== undefined) after = last.seq;
      if (page.length < SCAN_PAGE) break;
    }
    if (from.afterSeq !== undefined) scannedSeq = Math.max(scannedSeq, after);
    return found;
  };

  /** Deletes the rows this process emitted whose record audit.db now holds. */
  const confirm = (): void => {
    if (emitted.size === 0) return;
    const found = scan(new Set(emitted.keys()), { afterSeq: scannedSeq });
    if (found.size === 0) return;
    store.remove([...found]);
    for (const id of found) emitted.delete(id);
  };

  const drain = (): number => {
    confirm();
    let total = 0;
    for (;;) {
      const rows = store.list(BATCH).filter((r) => r.seq > lastEmittedSeq);
      if (rows.length === 0) break;
      const at = now();
      const ids = rows.map((r) => r.changeId);
      // Committed before the emit: after a crash, only attempted rows can be in the log.
      store.markAttempted(ids, at);
      for (const r of rows) {
        events.emit(eventOf(r));
        emitted.set(r.changeId, at);
        lastEmittedSeq = r.seq;
      }
      opts.audit.flush();
      confirm();
      total += rows.length;
      if (rows.length < BATCH) break;
    }
    return total;
  };

  let timer: NodeJS.Timeout | null = null;
  try {
    // Rows a previous run emitted but did not delete: recorded already, or not.
    const attempted = store.list(Number.MAX_SAFE_INTEGER).filter((r) => r.attemptedAt !== null);
    if (attempted.length > 0) {
      const since = Math.min(...attempted.map((r) => r.attemptedAt!)) - CLOCK_MARGIN_MS;
      const found = scan(new Set(attempted.map((r) => r.changeId)), { since });
      store.remove([...found]);
      // A warning: the previous run stopped between recording and deleting (killed or crashed?).
      logger.warn({ recorded: found.size, again: attempted.length - found.size }, 'CLI changes a previous run had emitted: those in the audit log were removed, the others are recorded now');
    }
    const drained = drain();
    if (drained > 0) logger.info({ changes: drained }, 'CLI changes recorded in the audit log');
  } catch (err) {
    store.close();
    reader.close();
    throw err;
  }

  let lastVersion = store.dataVersion();
  const tick = (): void => {
    try {
      const version = store.dataVersion();
      if (version === lastVersion && emitted.size === 0) return;
      lastVersion = version;
      drain();
    } catch (err) {
      // Kept for the next tick: the rows stay until their record is read back.
      logger.error({ err: err instanceof Error ? err.message : String(err) }, 'recording CLI changes in the audit log failed; retrying');
    }
  };
  timer = setInterval(tick, opts.pollMs ?? PENDING_CHANGES_POLL_MS);
  timer.unref();

  let stopped = false;
  return {
    drain,
    get unconfirmed() {
      return emitted.size;
    },
    stop() {
      if (stopped) return;
      stopped = true;
      if (timer !== null) clearInterval(timer);
      try {
        drain();
      } catch (err) {
        logger.error({ err: err instanceof Error ? err.message : String(err) }, 'recording CLI changes at stop failed; they are recorded at the next start');
      }
      if (emitted.size > 0) logger.warn({ unconfirmed: emitted.size }, 'CLI changes emitted but not yet read back from the audit log; the next start checks them');
      store.close();
      reader.close();
    },
  };
}
