/**
 * The jobs and their executions in `<dataDir>/ota-jobs.db` (SQLite, WAL), shared by the
 * CLI (`bastion ota job …`) and a running broker, which polls `PRAGMA data_version` to
 * notice the CLI's changes. Owns: the schema and the rows (the JobStore port). Must not:
 * decide transitions (jobs-service.ts) or talk MQTT.
 *
 * SECURITY: every change to an execution is one conditional UPDATE on its version
 * (`changes === 1` says who won), so a device, the sweep and the CLI can never both move
 * the same execution. The file is created 0600.
 *
 * The raw row API at the end (allRows, row, putRow) is for the cluster replica
 * (server/cluster-ota.ts): it reads and writes whole rows, joined by job-rows.ts.
 */
import { chmodSync, closeSync, openSync } from 'node:fs';
import type Database from 'better-sqlite3';
import { BastionError } from '../../core/errors.js';
import { openSharedDatabase, type SchemaMigration } from '../../store/sqlite/schema-migrations.js';
import { executionOfRow, type ExecutionRowData, type JobRowData, type JobStoreRow } from './job-rows.js';
import type { ExecutionPatch, ExecutionRecord, JobRecord, JobStatus, JobStore, NewJob } from './ports.js';

export const JOBS_DB_FILE = 'ota-jobs.db';
const ERR = 'ERR_OTA_JOB_STORE';

/** Append, never edit one that shipped. Times are ms since the epoch. */
const MIGRATIONS: readonly SchemaMigration[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE jobs (
        id                     TEXT    NOT NULL PRIMARY KEY,
        document               TEXT    NOT NULL,
        status                 TEXT    NOT NULL CHECK (status IN ('IN_PROGRESS', 'CANCELED')),
        max_retries            INTEGER NOT NULL CHECK (max_retries BETWEEN 0 AND 10),
        step_timeout_ms        INTEGER,
        in_progress_timeout_ms INTEGER,
        created_at             INTEGER NOT NULL,
        canceled_at            INTEGER
      );
      CREATE TABLE executions (
        job_id                 TEXT    NOT NULL REFERENCES jobs (id),
        identity               TEXT    NOT NULL,
        execution_number       INTEGER NOT NULL CHECK (execution_number >= 1),
        status                 TEXT    NOT NULL CHECK (status IN ('QUEUED', 'IN_PROGRESS', 'SUCCEEDED', 'FAILED', 'TIMED_OUT', 'REJECTED', 'CANCELED')),
        version                INTEGER NOT NULL,
        status_details         TEXT    NOT NULL,
        queued_at              INTEGER NOT NULL,
        started_at             INTEGER,
        last_updated_at        INTEGER NOT NULL,
        step_timeout_at        INTEGER,
        in_progress_timeout_at INTEGER,
        retry_count            INTEGER NOT NULL,
        PRIMARY KEY (job_id, identity, execution_number)
      );
      CREATE INDEX executions_pending ON executions (identity, queued_at) WHERE status IN ('QUEUED', 'IN_PROGRESS');
      CREATE INDEX executions_running ON executions (status) WHERE status = 'IN_PROGRESS';
    `,
  },
  {
    // The cluster replica's poll reads only the rows changed since its last look.
    version: 2,
    sql: `CREATE INDEX executions_updated ON executions (last_updated_at);`,
  },
];

interface JobRow {
  id: string;
  document: string;
  status: JobStatus;
  max_retries: number;
  step_timeout_ms: number | null;
  in_progress_timeout_ms: number | null;
  created_at: number;
  canceled_at: number | null;
}
/** An execution as SQLite returns it: the columns of job-rows.ts's execution row. */
type ExecutionRow = ExecutionRowData;

function jobOf(r: JobRow): JobRecord {
  return {
    id: r.id,
    document: JSON.parse(r.document) as Record<string, unknown>,
    status: r.status,
    maxRetries: r.max_retries,
    defaultStepTimeoutMs: r.step_timeout_ms,
    inProgressTimeoutMs: r.in_progress_timeout_ms,
    createdAt: r.created_at,
    canceledAt: r.canceled_at,
  };
}

const INSERT_EXECUTION = `INSERT INTO executions (job_id, identity, execution_number, status, version, status_details, queued_at, last_updated_at, retry_count)
  VALUES (?, ?, ?, 'QUEUED', 1, '{}', ?, ?, ?)`;

export class SqliteJobStore implements JobStore {
  private constructor(private readonly db: Database.Database) {}

  /**
   * `durability` is per connection. The CLI keeps `full` (a job it reports as created
   * survives a power loss). The running broker passes `normal`: its writes are the devices'
   * start and progress reports, and a commit that waits for the disk on every one of them
   * held the event loop for 1–2 ms each (50 devices reporting 10% at once: ~100 ms during
   * which no other client was served; the OTA bench's telemetry p99 fell from 147 to 32 ms
   * with `normal`). WAL with `normal` loses nothing when the process is killed (`kill -9`);
   * a power loss or an OS crash may take back the last reports, and a device then sees an
   * older version of its execution (VersionMismatch on its next update).
   */
  static open(file: string, durability: 'full' | 'normal' = 'full'): SqliteJobStore {
    try {
      // SECURITY: the file is created 0600 before SQLite opens it.
      closeSync(openSync(file, 'a', 0o600));
      chmodSync(file, 0o600);
    } catch (err) {
      throw new BastionError(ERR, `cannot create the jobs store ${file}: ${err instanceof Error ? err.message : String(err)}`);
    }
    return new SqliteJobStore(openSharedDatabase(file, { migrations: MIGRATIONS, code: ERR, what: 'the jobs store', pragmas: [durability === 'full' ? 'synchronous = FULL' : 'synchronous = NORMAL', 'foreign_keys = ON'] }));
  }

  createJob(job: NewJob, identities: readonly string[]): boolean {
    return this.db.transaction(() => {
      const added = this.db
        .prepare(`INSERT OR IGNORE INTO jobs (id, document, status, max_retries, step_timeout_ms, in_progress_timeout_ms, created_at) VALUES (?, ?, 'IN_PROGRESS', ?, ?, ?, ?)`)
        .run(job.id, JSON.stringify(job.document), job.maxRetries, job.defaultStepTimeoutMs, job.inProgressTimeoutMs, job.createdAt);
      if (added.changes !== 1) return false;
      const insert = this.db.prepare(INSERT_EXECUTION);
      for (const identity of new Set(identities)) insert.run(job.id, identity, 1, job.createdAt, job.createdAt, 0);
      return true;
    }).immediate();
  }

  addExecutions(jobId: string, identities: readonly string[], at: number): string[] | null {
    return this.db.transaction((): string[] | null => {
      const job = this.job(jobId);
      if (job === null || job.status === 'CANCELED') return null;
      const has = this.db.prepare('SELECT 1 FROM executions WHERE job_id = ? AND identity = ? LIMIT 1');
      const insert = this.db.prepare(INSERT_EXECUTION);
      const added: string[] = [];
      for (const identity of new Set(identities)) {
        if (has.get(jobId, identity) !== undefined) continue;
        insert.run(jobId, identity, 1, at, at, 0);
        added.push(identity);
      }
      return added;
    }).immediate();
  }

  job(id: string): JobRecord | null {
    const r = this.db.prepare('SELECT * FROM jobs WHERE id = ?').get(id) as JobRow | undefined;
    return r === undefined ? null : jobOf(r);
  }

  jobs(): JobRecord[] {
    return (this.db.prepare('SELECT * FROM jobs ORDER BY created_at, id').all() as JobRow[]).map(jobOf);
  }

  executionsOf(jobId: string): ExecutionRecord[] {
    return (this.db.prepare('SELECT * FROM executions WHERE job_id = ? ORDER BY identity, execution_number').all(jobId) as ExecutionRow[]).map(executionOfRow);
  }

  execution(jobId: string, identity: string, executionNumber?: number): ExecutionRecord | null {
    const r = (executionNumber !== undefined
      ? this.db.prepare('SELECT * FROM executions WHERE job_id = ? AND identity = ? AND execution_number = ?').get(jobId, identity, executionNumber)
      : this.db.prepare('SELECT * FROM executions WHERE job_id = ? AND identity = ? ORDER BY execution_number DESC LIMIT 1').get(jobId, identity)) as ExecutionRow | undefined;
    return r === undefined ? null : executionOfRow(r);
  }

  pending(identity: string): ExecutionRecord[] {
    const rows = this.db
      .prepare(`SELECT * FROM executions WHERE identity = ? AND status IN ('QUEUED', 'IN_PROGRESS') ORDER BY queued_at, job_id, execution_number`)
      .all(identity) as ExecutionRow[];
    return rows.map(executionOfRow);
  }

  apply(e: ExecutionRecord, patch: ExecutionPatch, retry: boolean): ExecutionRecord | null {
    return this.db.transaction((): ExecutionRecord | null => {
      const sets: string[] = ['version = version + 1', 'last_updated_at = @lastUpdatedAt'];
      const params: Record<string, unknown> = { lastUpdatedAt: patch.lastUpdatedAt, jobId: e.jobId, identity: e.identity, n: e.executionNumber, v: e.versionNumber };
      if (patch.status !== undefined) (sets.push('status = @status'), (params.status = patch.status));
      if (patch.statusDetails !== undefined) (sets.push('status_details = @details'), (params.details = JSON.stringify(patch.statusDetails)));
      if (patch.startedAt !== undefined) (sets.push('started_at = @startedAt'), (params.startedAt = patch.startedAt));
      if (patch.stepTimeoutAt !== undefined) (sets.push('step_timeout_at = @stepAt'), (params.stepAt = patch.stepTimeoutAt));
      if (patch.inProgressTimeoutAt !== undefined) (sets.push('in_progress_timeout_at = @ipAt'), (params.ipAt = patch.inProgressTimeoutAt));
      const r = this.db.prepare(`UPDATE executions SET ${sets.join(', ')} WHERE job_id = @jobId AND identity = @identity AND execution_number = @n AND version = @v`).run(params);
      if (r.changes !== 1) return null;
      if (retry) this.db.prepare(INSERT_EXECUTION).run(e.jobId, e.identity, e.executionNumber + 1, patch.lastUpdatedAt, patch.lastUpdatedAt, e.retryCount + 1);
      return this.execution(e.jobId, e.identity, e.executionNumber);
    }).immediate();
  }

  cancelJob(id: string, at: number): string[] | null {
    return this.db.transaction((): string[] | null => {
      if (this.job(id) === null) return null;
      this.db.prepare(`UPDATE jobs SET status = 'CANCELED', canceled_at = ? WHERE id = ? AND status <> 'CANCELED'`).run(at, id);
      const touched = this.db.prepare(`SELECT DISTINCT identity FROM executions WHERE job_id = ? AND status IN ('QUEUED', 'IN_PROGRESS')`).all(id) as { identity: string }[];
      this.db
        .prepare(`UPDATE executions SET status = 'CANCELED', version = version + 1, last_updated_at = ? WHERE job_id = ? AND status IN ('QUEUED', 'IN_PROGRESS')`)
        .run(at, id);
      return touched.map((t) => t.identity);
    }).immediate();
  }

  overdue(now: number): ExecutionRecord[] {
    const rows = this.db
      .prepare(`SELECT * FROM executions WHERE status = 'IN_PROGRESS' AND ((step_timeout_at IS NOT NULL AND step_timeout_at <= ?) OR (in_progress_timeout_at IS NOT NULL AND in_progress_timeout_at <= ?))`)
      .all(now, now) as ExecutionRow[];
    return rows.map(executionOfRow);
  }

  dataVersion(): number {
    return this.db.pragma('data_version', { simple: true }) as number;
  }

  // --- raw rows (the cluster replica) ---

  /** Every row: the jobs first (an execution's job must exist before it). */
  allRows(): JobStoreRow[] {
    const jobs = (this.db.prepare('SELECT * FROM jobs ORDER BY id').all() as JobRowData[]).map((row): JobStoreRow => ({ table: 'jobs', row }));
    const executions = (this.db.prepare('SELECT * FROM executions ORDER BY job_id, identity, execution_number').all() as ExecutionRowData[]).map(
      (row): JobStoreRow => ({ table: 'executions', row }),
    );
    return [...jobs, ...executions];
  }

  /**
   * The rows whose own time says they changed at or after `since` (a job created or
   * canceled, an execution updated). Every writer but the cluster replica stamps its
   * changes with the current time, so this finds their changes cheaply.
   */
  changedRows(since: number): JobStoreRow[] {
    const jobs = (this.db.prepare('SELECT * FROM jobs WHERE created_at >= ? OR canceled_at >= ? ORDER BY id').all(since, since) as JobRowData[]).map((row): JobStoreRow => ({ table: 'jobs', row }));
    const executions = (this.db.prepare('SELECT * FROM executions WHERE last_updated_at >= ?').all(since) as ExecutionRowData[]).map(
      (row): JobStoreRow => ({ table: 'executions', row }),
    );
    return [...jobs, ...executions];
  }

  /** This file's version of the row `like` is a version of, or null. */
  row(like: JobStoreRow): JobStoreRow | null {
    if (like.table === 'jobs') {
      const row = this.db.prepare('SELECT * FROM jobs WHERE id = ?').get(like.row.id) as JobRowData | undefined;
      return row === undefined ? null : { table: 'jobs', row };
    }
    const l = like.row;
    const row = this.db.prepare('SELECT * FROM executions WHERE job_id = ? AND identity = ? AND execution_number = ?').get(l.job_id, l.identity, l.execution_number) as
      | ExecutionRowData
      | undefined;
    return row === undefined ? null : { table: 'executions', row };
  }

  /** Writes a whole row (insert or replace); false when an execution's job is not in this file yet. */
  putRow(r: JobStoreRow): boolean {
    if (r.table === 'jobs') {
      this.db
        .prepare(
          `INSERT INTO jobs (id, document, status, max_retries, step_timeout_ms, in_progress_timeout_ms, created_at, canceled_at)
           VALUES (@id, @document, @status, @max_retries, @step_timeout_ms, @in_progress_timeout_ms, @created_at, @canceled_at)
           ON CONFLICT (id) DO UPDATE SET document = excluded.document, status = excluded.status, max_retries = excluded.max_retries,
             step_timeout_ms = excluded.step_timeout_ms, in_progress_timeout_ms = excluded.in_progress_timeout_ms,
             created_at = excluded.created_at, canceled_at = excluded.canceled_at`,
        )
        .run(r.row);
      return true;
    }
    if (this.db.prepare('SELECT 1 FROM jobs WHERE id = ?').get(r.row.job_id) === undefined) return false;
    this.db
      .prepare(
        `INSERT OR REPLACE INTO executions (job_id, identity, execution_number, status, version, status_details, queued_at, started_at, last_updated_at, step_timeout_at, in_progress_timeout_at, retry_count)
         VALUES (@job_id, @identity, @execution_number, @status, @version, @status_details, @queued_at, @started_at, @last_updated_at, @step_timeout_at, @in_progress_timeout_at, @retry_count)`,
      )
      .run(r.row);
    return true;
  }

  close(): void {
    this.db.close();
  }
}
