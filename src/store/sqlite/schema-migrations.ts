/**
 * Applying numbered schema migrations to one SQLite file, tracked in `PRAGMA user_version`.
 * Every Bastion database (broker state, PKI inventory, users, ACL rules, admin) uses this
 * one runner. Owns: the ordering, the "newer than this Bastion" refusal, and safety when
 * the broker and the CLI open a new file at the same moment; opening a small file the
 * broker and the CLI share (openSharedDatabase). Must not: hold any DDL.
 */
import Database from 'better-sqlite3';
import { BastionError } from '../../core/errors.js';

export interface SchemaMigration {
  /** The user_version after this migration: 1, 2, 3, ... in order. */
  readonly version: number;
  readonly sql: string;
}

/**
 * Brings `db` to the last migration's version, each migration in its own IMMEDIATE
 * transaction (so a second process opening the same new file waits, then sees it done).
 * Refuses a file written by a newer Bastion with `code` rather than guess at its schema.
 */
export function applySchemaMigrations(db: Database.Database, migrations: readonly SchemaMigration[], code: string, what: string): void {
  const current = db.pragma('user_version', { simple: true });
  if (typeof current !== 'number' || !Number.isInteger(current) || current < 0) {
    throw new BastionError(code, `${what} has an unreadable schema version: ${String(current)}`);
  }
  const latest = migrations[migrations.length - 1]?.version ?? 0;
  if (current > latest) {
    throw new BastionError(code, `${what} has schema version ${current}, newer than this Bastion understands (${latest}); upgrade Bastion`);
  }
  for (const m of migrations) {
    if (m.version <= current) continue;
    db.transaction(() => {
      // Another process may have applied it since we looked.
      if ((db.pragma('user_version', { simple: true }) as number) >= m.version) return;
      db.exec(m.sql);
      db.pragma(`user_version = ${m.version}`);
    }).immediate();
  }
}

export interface SharedDatabaseOptions {
  migrations: readonly SchemaMigration[];
  /** The BastionError code when the file cannot be opened or prepared. */
  code: string;
  /** The code for a schema this Bastion cannot read (default: `code`). */
  versionCode?: string;
  /** Names the file in messages: "the user store". */
  what: string;
  /** Pragmas beyond WAL and the busy wait, e.g. 'foreign_keys = ON'. */
  pragmas?: readonly string[];
}

/**
 * Opens (creating when missing) a small database the broker and the CLI write from separate
 * processes (users, ACL rules, admin): WAL, a busy wait, the migrations. On failure the
 * handle is closed again and a BastionError names the file.
 */
export function openSharedDatabase(path: string, opts: SharedDatabaseOptions): Database.Database {
  let db: Database.Database | undefined;
  try {
    db = new Database(path);
    db.pragma('journal_mode = WAL');
    // The CLI and the broker write the same file: wait out the other's short transaction.
    db.pragma('busy_timeout = 5000');
    for (const pragma of opts.pragmas ?? []) db.pragma(pragma);
    applySchemaMigrations(db, opts.migrations, opts.versionCode ?? opts.code, opts.what);
    return db;
  } catch (err) {
    db?.close();
    if (err instanceof BastionError) throw err;
    throw new BastionError(opts.code, `cannot open ${opts.what} ${path}: ${err instanceof Error ? err.message : String(err)}`);
  }
}
