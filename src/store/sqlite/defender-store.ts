/**
 * The defender's alerts, what their actions did, and the restrictions they put on
 * identities, in `<dataDir>/defender.db` (SQLite, WAL), shared by a running broker and the
 * CLI (`bastion defender alerts|release`). Owns: the schema and the rows. Must not: decide
 * what an alarm does, or lift a restriction (the caller does, with what `release` returns).
 *
 * This file satisfies the DefenderStore port of defender/response/alert-store.ts
 * structurally: store/ may not import defender/ (docs/ARCHITECTURE.md), so the record
 * shapes are spelled out again here; test/unit/defender-store.test.ts holds them together
 * by assigning this store to the port's type.
 *
 * SECURITY: the file names devices and the addresses they came from: it is created 0600
 * (SQLite gives its -wal and -shm files the same mode). A release is one IMMEDIATE
 * transaction, so a broker raising an alert and the CLI releasing the same identity can
 * never leave an alert released with its restriction still in force, or the reverse.
 */
import { chmodSync, closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import type Database from 'better-sqlite3';
import { BastionError } from '../../core/errors.js';
import { openSharedDatabase, type SchemaMigration } from './schema-migrations.js';
import type { ActionOutcome, AlertQuery, AlertState, DefenderAlert, NewAlert, Restriction, RestrictionKind } from '../../core/defender-records.js';

/** The defender database's file name inside the data directory. */
export const DEFENDER_DB_FILE = 'defender.db';

const ERR = 'ERR_DEFENDER_STORE';

/** The most alerts one listAlerts call returns. */
export const MAX_ALERT_PAGE = 1000;
const DEFAULT_ALERT_PAGE = 100;

/** Append, never edit one that shipped. Times are ms since the epoch. */
const MIGRATIONS: readonly SchemaMigration[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE alerts (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        rule         TEXT    NOT NULL,
        identity     TEXT    NOT NULL,
        role         TEXT    NOT NULL,
        state        TEXT    NOT NULL CHECK (state IN ('active', 'cleared', 'released')),
        value        REAL    NOT NULL,
        threshold    REAL    NOT NULL,
        items        TEXT    NOT NULL,
        raised_at    INTEGER NOT NULL,
        cleared_at   INTEGER,
        released_at  INTEGER,
        released_by  TEXT,
        node         TEXT    NOT NULL,
        dry_run      INTEGER NOT NULL CHECK (dry_run IN (0, 1))
      );
      CREATE INDEX alerts_by_identity ON alerts (identity, state);
      CREATE INDEX alerts_by_rule ON alerts (rule);
      CREATE INDEX alerts_by_state ON alerts (state);
      CREATE TABLE outcomes (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        alert_id     INTEGER NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
        action       TEXT    NOT NULL,
        outcome      TEXT    NOT NULL CHECK (outcome IN ('applied', 'dry-run', 'failed')),
        detail       TEXT
      );
      CREATE INDEX outcomes_by_alert ON outcomes (alert_id, seq);
      CREATE TABLE restrictions (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        identity     TEXT    NOT NULL,
        kind         TEXT    NOT NULL CHECK (kind IN ('quarantine', 'throttle', 'ban')),
        alert_id     INTEGER NOT NULL,
        applied_at   INTEGER NOT NULL,
        expires_at   INTEGER,
        ban_kind     TEXT,
        ban_value    TEXT,
        released_at  INTEGER,
        released_by  TEXT
      );
      -- At most one restriction of a kind in force per identity.
      CREATE UNIQUE INDEX restrictions_in_force ON restrictions (identity, kind) WHERE released_at IS NULL;
      CREATE INDEX restrictions_by_alert ON restrictions (alert_id);
    `,
  },
];

// The records are core's (core/defender-records.ts), shared with defender/; the store's names for them:
export type StoredAlertState = AlertState;
export type StoredRestrictionKind = RestrictionKind;
export type StoredActionOutcome = ActionOutcome;
export type StoredAlert = DefenderAlert;
export type NewStoredAlert = NewAlert;
export type StoredRestriction = Restriction;
export type StoredAlertQuery = AlertQuery;

interface AlertRow {
  id: number;
  rule: string;
  identity: string;
  role: string;
  state: StoredAlertState;
  value: number;
  threshold: number;
  items: string;
  raised_at: number;
  cleared_at: number | null;
  released_at: number | null;
  released_by: string | null;
  node: string;
  dry_run: number;
}

interface OutcomeRow {
  action: StoredActionOutcome['action'];
  outcome: StoredActionOutcome['outcome'];
  detail: string | null;
}

interface RestrictionRow {
  identity: string;
  kind: StoredRestrictionKind;
  alert_id: number;
  applied_at: number;
  expires_at: number | null;
  ban_kind: string | null;
  ban_value: string | null;
  released_at: number | null;
  released_by: string | null;
}

function itemsOf(raw: string): string[] {
  try {
    const v = JSON.parse(raw) as unknown;
    return Array.isArray(v) ? v.map(String) : [];
  } catch {
    // A damaged row still lists; its items are simply not shown.
    return [];
  }
}

function restrictionOf(r: RestrictionRow): StoredRestriction {
  return {
    identity: r.identity,
    kind: r.kind,
    alertId: r.alert_id,
    appliedAt: r.applied_at,
    expiresAt: r.expires_at,
    ...(r.ban_kind !== null ? { banKind: r.ban_kind } : {}),
    ...(r.ban_value !== null ? { banValue: r.ban_value } : {}),
    releasedAt: r.released_at,
    releasedBy: r.released_by,
  };
}

/** A whole, non-negative integer from a caller's paging value (NaN and fractions cut down). */
function whole(v: number | undefined, fallback: number): number {
  return v === undefined || !Number.isFinite(v) ? fallback : Math.max(0, Math.floor(v));
}

export interface DefenderStoreOptions {
  /** `full` (default): a committed alert or release survives a power cut; `normal`: faster, may lose the last ones. */
  durability?: 'full' | 'normal';
}

export class SqliteDefenderStore {
  /** data_version when last looked at; another connection's commit moves it. */
  private seenVersion: number;

  private constructor(private readonly db: Database.Database) {
    this.seenVersion = this.dataVersion();
  }

  /** Opens (creating when missing, mode 0600) the defender database at `file`. */
  static open(file: string, opts: DefenderStoreOptions = {}): SqliteDefenderStore {
    try {
      // SECURITY: the file is created 0600 before SQLite opens it.
      closeSync(openSync(file, 'a', 0o600));
      chmodSync(file, 0o600);
    } catch (err) {
      throw new BastionError(ERR, `cannot create the defender store ${file}: ${err instanceof Error ? err.message : String(err)}`);
    }
    const synchronous = opts.durability === 'normal' ? 'synchronous = NORMAL' : 'synchronous = FULL';
    return new SqliteDefenderStore(openSharedDatabase(file, { migrations: MIGRATIONS, code: ERR, what: 'the defender store', pragmas: [synchronous, 'foreign_keys = ON'] }));
  }

  addAlert(alert: NewStoredAlert): number {
    return this.db.transaction((): number => {
      const r = this.db
        .prepare(`INSERT INTO alerts (rule, identity, role, state, value, threshold, items, raised_at, node, dry_run) VALUES (?, ?, ?, 'active', ?, ?, ?, ?, ?, ?)`)
        .run(alert.rule, alert.identity, alert.role, alert.value, alert.threshold, JSON.stringify(alert.items), alert.raisedAt, alert.node, alert.dryRun ? 1 : 0);
      const id = Number(r.lastInsertRowid);
      const insert = this.db.prepare('INSERT INTO outcomes (alert_id, action, outcome, detail) VALUES (?, ?, ?, ?)');
      for (const o of alert.actions) insert.run(id, o.action, o.outcome, o.detail ?? null);
      return id;
    })();
  }

  addOutcome(alertId: number, outcome: StoredActionOutcome): void {
    try {
      this.db.prepare('INSERT INTO outcomes (alert_id, action, outcome, detail) VALUES (?, ?, ?, ?)').run(alertId, outcome.action, outcome.outcome, outcome.detail ?? null);
    } catch (err) {
      // The foreign key: an outcome of an alert that is not there would be an orphan nobody lists.
      if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_FOREIGNKEY') throw new BastionError(ERR, `no alert with id ${alertId}`);
      throw err;
    }
  }

  clearAlert(alertId: number, at: number): void {
    // Only an active alert clears: a released one stays released.
    this.db.prepare(`UPDATE alerts SET state = 'cleared', cleared_at = ? WHERE id = ? AND state = 'active'`).run(at, alertId);
  }

  getAlert(id: number): StoredAlert | null {
    const row = this.db.prepare('SELECT * FROM alerts WHERE id = ?').get(id) as AlertRow | undefined;
    return row === undefined ? null : this.alertOf(row);
  }

  /** Newest first; `limit` defaults to 100 and is capped at 1000; `total` counts every match. */
  listAlerts(query: StoredAlertQuery): { total: number; alerts: StoredAlert[] } {
    const where: string[] = [];
    const args: Array<string | number> = [];
    if (query.state !== undefined) {
      where.push('state = ?');
      args.push(query.state);
    }
    if (query.identity !== undefined) {
      where.push('identity = ?');
      args.push(query.identity);
    }
    if (query.rule !== undefined) {
      where.push('rule = ?');
      args.push(query.rule);
    }
    const clause = where.length > 0 ? `WHERE ${where.join(' AND ')}` : '';
    const limit = Math.min(MAX_ALERT_PAGE, Math.max(1, whole(query.limit, DEFAULT_ALERT_PAGE)));
    const offset = whole(query.offset, 0);
    // One read transaction: the count and the page agree even while the broker writes.
    return this.db.transaction(() => {
      const total = (this.db.prepare(`SELECT COUNT(*) AS n FROM alerts ${clause}`).get(...args) as { n: number }).n;
      const rows = this.db.prepare(`SELECT * FROM alerts ${clause} ORDER BY raised_at DESC, id DESC LIMIT ? OFFSET ?`).all(...args, limit, offset) as AlertRow[];
      return { total, alerts: rows.map((r) => this.alertOf(r)) };
    })();
  }

  /** Adds a restriction; one of the same (identity, kind) still in force is replaced (deleted), so at most one is ever in force. */
  addRestriction(restriction: Omit<StoredRestriction, 'releasedAt' | 'releasedBy'>): void {
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM restrictions WHERE identity = ? AND kind = ? AND released_at IS NULL').run(restriction.identity, restriction.kind);
      this.db
        .prepare('INSERT INTO restrictions (identity, kind, alert_id, applied_at, expires_at, ban_kind, ban_value) VALUES (?, ?, ?, ?, ?, ?, ?)')
        .run(restriction.identity, restriction.kind, restriction.alertId, restriction.appliedAt, restriction.expiresAt, restriction.banKind ?? null, restriction.banValue ?? null);
    }).immediate();
  }

  /** Restrictions not released, expired ones included, oldest first. */
  activeRestrictions(): StoredRestriction[] {
    const rows = this.db.prepare('SELECT * FROM restrictions WHERE released_at IS NULL ORDER BY applied_at, id').all() as RestrictionRow[];
    return rows.map(restrictionOf);
  }

  /** The identity's active alerts become released and its restrictions in force are released, in one transaction. */
  release(identity: string, by: string, at: number): { alerts: number; restrictions: StoredRestriction[] } {
    return this.db.transaction(() => {
      const alerts = this.db.prepare(`UPDATE alerts SET state = 'released', released_at = ?, released_by = ? WHERE identity = ? AND state = 'active'`).run(at, by, identity).changes;
      const rows = this.db
        .prepare('UPDATE restrictions SET released_at = ?, released_by = ? WHERE identity = ? AND released_at IS NULL RETURNING *')
        .all(at, by, identity) as RestrictionRow[];
      rows.sort((a, b) => a.applied_at - b.applied_at);
      return { alerts, restrictions: rows.map(restrictionOf) };
    }).immediate();
  }

  releaseRestriction(identity: string, kind: StoredRestrictionKind, by: string, at: number): void {
    this.db.prepare('UPDATE restrictions SET released_at = ?, released_by = ? WHERE identity = ? AND kind = ? AND released_at IS NULL').run(at, by, identity, kind);
  }

  /**
   * Deletes cleared and released alerts raised before `before` (with their outcomes), and
   * released restrictions released before then; returns how many alerts went. An alert
   * whose restriction is still in force is kept: the restriction must name its cause.
   */
  prune(before: number): number {
    return this.db.transaction(() => {
      const n = this.db
        .prepare(`DELETE FROM alerts WHERE state <> 'active' AND raised_at < ? AND id NOT IN (SELECT alert_id FROM restrictions WHERE released_at IS NULL)`)
        .run(before).changes;
      this.db.prepare('DELETE FROM restrictions WHERE released_at IS NOT NULL AND released_at < ?').run(before);
      return n;
    }).immediate();
  }

  /**
   * True when another connection (the CLI, another handle) committed to the file since the
   * last call (or since open). SQLite's data_version does not move for this connection's
   * own commits, so the broker's poll costs one pragma and ignores what it wrote itself.
   */
  changedElsewhere(): boolean {
    const v = this.dataVersion();
    const changed = v !== this.seenVersion;
    this.seenVersion = v;
    return changed;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  private dataVersion(): number {
    return this.db.pragma('data_version', { simple: true }) as number;
  }

  private alertOf(row: AlertRow): StoredAlert {
    const outcomes = this.db.prepare('SELECT action, outcome, detail FROM outcomes WHERE alert_id = ? ORDER BY seq').all(row.id) as OutcomeRow[];
    return {
      id: row.id,
      rule: row.rule,
      identity: row.identity,
      role: row.role,
      state: row.state,
      value: row.value,
      threshold: row.threshold,
      items: itemsOf(row.items),
      raisedAt: row.raised_at,
      clearedAt: row.cleared_at,
      releasedAt: row.released_at,
      releasedBy: row.released_by,
      node: row.node,
      dryRun: row.dry_run === 1,
      actions: outcomes.map((o) => ({ action: o.action, outcome: o.outcome, ...(o.detail !== null ? { detail: o.detail } : {}) })),
    };
  }
}

/** Opens (creating when missing, mode 0600) `<dataDir>/defender.db`. The data directory must exist. */
export function openDefenderStore(dataDir: string, opts: DefenderStoreOptions = {}): SqliteDefenderStore {
  return SqliteDefenderStore.open(join(dataDir, DEFENDER_DB_FILE), opts);
}
