/**
 * The campaigns in `<dataDir>/ota-campaigns.db` (SQLite, WAL), shared by the CLI (`bastion
 * ota campaign …`) and a running broker (whose engine advances them). A file of its own
 * beside ota-jobs.db, because each file's schema version belongs to one migration list.
 * Owns: the schema and the rows (the CampaignStore port). Must not: decide anything
 * (campaign-engine.ts) or touch the jobs.
 *
 * SECURITY: every change is one conditional UPDATE on the version (`changes === 1` says
 * who won); the target list is written once at creation and never updated. The file is
 * created 0600.
 *
 * The raw row API at the end (allRows, row, putRow) is for the cluster replica
 * (server/cluster-ota.ts): whole rows, joined by campaign-rows.ts.
 */
import { chmodSync, closeSync, openSync } from 'node:fs';
import type Database from 'better-sqlite3';
import { BastionError } from '../../core/errors.js';
import { openSharedDatabase, type SchemaMigration } from '../../store/sqlite/schema-migrations.js';
import type { CampaignRowData } from './campaign-rows.js';
import type { AbortRule, CampaignPatch, CampaignRecord, CampaignState, CampaignStore, NewCampaign } from './ports.js';

export const CAMPAIGNS_DB_FILE = 'ota-campaigns.db';
const ERR = 'ERR_OTA_CAMPAIGN_STORE';

/** Append, never edit one that shipped. Times are ms since the epoch; lists are JSON. */
const MIGRATIONS: readonly SchemaMigration[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE campaigns (
        id            TEXT    NOT NULL PRIMARY KEY,
        release_id    TEXT    NOT NULL,
        job_id        TEXT    NOT NULL UNIQUE,
        job_document  TEXT    NOT NULL,
        target        TEXT    NOT NULL,
        stage_percents TEXT   NOT NULL,
        stage_counts  TEXT    NOT NULL,
        abort_rule    TEXT,
        timeout_ms    INTEGER,
        max_retries   INTEGER NOT NULL CHECK (max_retries BETWEEN 0 AND 10),
        state         TEXT    NOT NULL CHECK (state IN ('RUNNING', 'PAUSED', 'ABORTED', 'COMPLETED', 'CANCELED')),
        stage         INTEGER NOT NULL CHECK (stage >= 1),
        targets       TEXT    NOT NULL,
        created_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL,
        ended_at      INTEGER,
        reason        TEXT,
        version       INTEGER NOT NULL
      );
      CREATE INDEX campaigns_active ON campaigns (created_at) WHERE state IN ('RUNNING', 'PAUSED');
    `,
  },
];

interface Row {
  id: string;
  release_id: string;
  job_id: string;
  job_document: string;
  target: string;
  stage_percents: string;
  stage_counts: string;
  abort_rule: string | null;
  timeout_ms: number | null;
  max_retries: number;
  state: CampaignState;
  stage: number;
  targets: string;
  created_at: number;
  updated_at: number;
  ended_at: number | null;
  reason: string | null;
  version: number;
}

function recordOf(r: Row): CampaignRecord {
  return {
    id: r.id,
    releaseId: r.release_id,
    jobId: r.job_id,
    jobDocument: JSON.parse(r.job_document) as Record<string, unknown>,
    target: r.target,
    stagePercents: JSON.parse(r.stage_percents) as number[],
    stageCounts: JSON.parse(r.stage_counts) as number[],
    abortRule: r.abort_rule === null ? null : (JSON.parse(r.abort_rule) as AbortRule),
    timeoutMs: r.timeout_ms,
    maxRetries: r.max_retries,
    state: r.state,
    stage: r.stage,
    targets: JSON.parse(r.targets) as string[],
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    endedAt: r.ended_at,
    reason: r.reason,
    version: r.version,
  };
}

export class SqliteCampaignStore implements CampaignStore {
  private constructor(private readonly db: Database.Database) {}

  static open(file: string): SqliteCampaignStore {
    try {
      // SECURITY: the file is created 0600 before SQLite opens it.
      closeSync(openSync(file, 'a', 0o600));
      chmodSync(file, 0o600);
    } catch (err) {
      throw new BastionError(ERR, `cannot create the campaigns store ${file}: ${err instanceof Error ? err.message : String(err)}`);
    }
    return new SqliteCampaignStore(openSharedDatabase(file, { migrations: MIGRATIONS, code: ERR, what: 'the campaigns store', pragmas: ['synchronous = FULL'] }));
  }

  create(c: NewCampaign): boolean {
    const r = this.db
      .prepare(
        `INSERT OR IGNORE INTO campaigns (id, release_id, job_id, job_document, target, stage_percents, stage_counts, abort_rule, timeout_ms, max_retries, state, stage, targets, created_at, updated_at, version)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'RUNNING', 1, ?, ?, ?, 1)`,
      )
      .run(
        c.id,
        c.releaseId,
        c.jobId,
        JSON.stringify(c.jobDocument),
        c.target,
        JSON.stringify(c.stagePercents),
        JSON.stringify(c.stageCounts),
        c.abortRule === null ? null : JSON.stringify(c.abortRule),
        c.timeoutMs,
        c.maxRetries,
        JSON.stringify(c.targets),
        c.createdAt,
        c.createdAt,
      );
    return r.changes === 1;
  }

  get(id: string): CampaignRecord | null {
    const r = this.db.prepare('SELECT * FROM campaigns WHERE id = ?').get(id) as Row | undefined;
    return r === undefined ? null : recordOf(r);
  }

  list(): CampaignRecord[] {
    return (this.db.prepare('SELECT * FROM campaigns ORDER BY created_at, id').all() as Row[]).map(recordOf);
  }

  active(): CampaignRecord[] {
    return (this.db.prepare(`SELECT * FROM campaigns WHERE state IN ('RUNNING', 'PAUSED') ORDER BY created_at, id`).all() as Row[]).map(recordOf);
  }

  update(id: string, expectedVersion: number, patch: CampaignPatch): CampaignRecord | null {
    return this.db.transaction((): CampaignRecord | null => {
      const sets = ['version = version + 1', 'updated_at = @updatedAt'];
      const params: Record<string, unknown> = { id, v: expectedVersion, updatedAt: patch.updatedAt };
      if (patch.state !== undefined) (sets.push('state = @state'), (params.state = patch.state));
      if (patch.stage !== undefined) (sets.push('stage = @stage'), (params.stage = patch.stage));
      if (patch.endedAt !== undefined) (sets.push('ended_at = @endedAt'), (params.endedAt = patch.endedAt));
      if (patch.reason !== undefined) (sets.push('reason = @reason'), (params.reason = patch.reason));
      const r = this.db.prepare(`UPDATE campaigns SET ${sets.join(', ')} WHERE id = @id AND version = @v`).run(params);
      return r.changes === 1 ? this.get(id) : null;
    }).immediate();
  }

  // --- raw rows (the cluster replica) ---

  allRows(): CampaignRowData[] {
    return this.db.prepare('SELECT * FROM campaigns ORDER BY id').all() as CampaignRowData[];
  }

  row(id: string): CampaignRowData | null {
    return (this.db.prepare('SELECT * FROM campaigns WHERE id = ?').get(id) as CampaignRowData | undefined) ?? null;
  }

  /** Writes a whole row (insert or replace). */
  putRow(r: CampaignRowData): void {
    this.db
      .prepare(
        `INSERT OR REPLACE INTO campaigns (id, release_id, job_id, job_document, target, stage_percents, stage_counts, abort_rule, timeout_ms, max_retries, state, stage, targets, created_at, updated_at, ended_at, reason, version)
         VALUES (@id, @release_id, @job_id, @job_document, @target, @stage_percents, @stage_counts, @abort_rule, @timeout_ms, @max_retries, @state, @stage, @targets, @created_at, @updated_at, @ended_at, @reason, @version)`,
      )
      .run(r);
  }

  dataVersion(): number {
    return this.db.pragma('data_version', { simple: true }) as number;
  }

  close(): void {
    this.db.close();
  }
}
