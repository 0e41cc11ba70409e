/**
 * Administrative changes made by the CLI, waiting for the broker to record them in the
 * audit log (`<dataDir>/pending-changes.db`, WAL, mode 0600). The CLI appends a row per
 * change (also when the broker is stopped); the broker's drain (server/pending-changes-drain.ts)
 * emits each as an `admin.change` event and deletes the row once the audit log holds it.
 * Owns: the schema and the rows. Must not: emit events, or touch the audit log: the audit
 * chain has one writer, the broker.
 *
 * Each row carries a change id (a UUID made by the CLI) that travels into the audit record,
 * so a row that was emitted but not yet deleted when the broker died is recognised in the
 * audit log at the next start instead of being recorded twice.
 */
import { chmodSync, closeSync, openSync } from 'node:fs';
import type Database from 'better-sqlite3';
import { openSharedDatabase, type SchemaMigration } from './schema-migrations.js';

/** The pending-changes database's file name inside the data directory. */
export const PENDING_CHANGES_DB_FILE = 'pending-changes.db';

const MIGRATIONS: readonly SchemaMigration[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE pending_changes (
        seq            INTEGER PRIMARY KEY AUTOINCREMENT,
        change_id      TEXT    NOT NULL UNIQUE,
        created_at     INTEGER NOT NULL,
        actor          TEXT    NOT NULL,
        remote_address TEXT    NOT NULL,
        action         TEXT    NOT NULL,
        target         TEXT    NOT NULL,
        outcome        TEXT    NOT NULL,
        detail         TEXT,
        attempted_at   INTEGER
      );
    `,
  },
];

/** One change as the CLI records it (the admin.change event's fields, plus its id and time). */
export interface PendingChange {
  changeId: string;
  createdAt: number;
  /** `local:<OS user>`. */
  actor: string;
  remoteAddress: string;
  action: string;
  target: string;
  outcome: string;
  detail: Record<string, unknown> | null;
}

export interface StoredPendingChange extends PendingChange {
  /** Insertion order: the drain emits in this order. */
  seq: number;
  /** When a broker last emitted it (null: never); such a row may already be in the audit log. */
  attemptedAt: number | null;
}

interface Row {
  seq: number;
  change_id: string;
  created_at: number;
  actor: string;
  remote_address: string;
  action: string;
  target: string;
  outcome: string;
  detail: string | null;
  attempted_at: number | null;
}

function parseDetail(raw: string | null): Record<string, unknown> | null {
  if (raw === null) return null;
  try {
    const v = JSON.parse(raw) as unknown;
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : { value: v };
  } catch {
    // Recorded as found: an unreadable detail must not keep the change out of the audit log.
    return { unreadable: raw };
  }
}

export class SqlitePendingChangesStore {
  private constructor(private readonly db: Database.Database) {}

  /** Opens (creating when missing, mode 0600) the pending-changes database at `path`. */
  static open(path: string): SqlitePendingChangesStore {
    // SECURITY: who changed what is for the operator only. The file is created 0600 before
    // SQLite opens it, and SQLite gives its -wal and -shm files the database file's mode.
    closeSync(openSync(path, 'a', 0o600));
    chmodSync(path, 0o600);
    return new SqlitePendingChangesStore(openSharedDatabase(path, { migrations: MIGRATIONS, code: 'ERR_PENDING_CHANGES', what: 'the pending-changes store' }));
  }

  append(change: PendingChange): void {
    this.db
      .prepare('INSERT INTO pending_changes (change_id, created_at, actor, remote_address, action, target, outcome, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
      .run(change.changeId, change.createdAt, change.actor, change.remoteAddress, change.action, change.target, change.outcome, change.detail === null ? null : JSON.stringify(change.detail));
  }

  /** The oldest `limit` rows, in insertion order. */
  list(limit: number): StoredPendingChange[] {
    const rows = this.db.prepare('SELECT * FROM pending_changes ORDER BY seq LIMIT ?').all(limit) as Row[];
    return rows.map((r) => ({
      seq: r.seq,
      changeId: r.change_id,
      createdAt: r.created_at,
      actor: r.actor,
      remoteAddress: r.remote_address,
      action: r.action,
      target: r.target,
      outcome: r.outcome,
      detail: parseDetail(r.detail),
      attemptedAt: r.attempted_at,
    }));
  }

  count(): number {
    return (this.db.prepare('SELECT COUNT(*) AS n FROM pending_changes').get() as { n: number }).n;
  }

  /** Notes that these rows are about to be emitted (committed before the emit). */
  markAttempted(changeIds: readonly string[], at: number): void {
    const stmt = this.db.prepare('UPDATE pending_changes SET attempted_at = ? WHERE change_id = ?');
    this.db.transaction(() => {
      for (const id of changeIds) stmt.run(at, id);
    })();
  }

  /** Deletes these rows in one transaction; returns how many were there. */
  remove(changeIds: readonly string[]): number {
    const stmt = this.db.prepare('DELETE FROM pending_changes WHERE change_id = ?');
    return this.db.transaction(() => {
      let n = 0;
      for (const id of changeIds) n += stmt.run(id).changes;
      return n;
    })();
  }

  /**
   * SQLite's `data_version`: changes when another connection (the CLI) commits to the file,
   * so the broker's poll costs one pragma and reads the table only when something came in.
   */
  dataVersion(): number {
    return this.db.pragma('data_version', { simple: true }) as number;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
