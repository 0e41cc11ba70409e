/**
 * Applying numbered schema migrations to one SQLite file, tracked in `PRAGMA user_version`.
 * Every Bastion database (broker state, PKI inventory, users, ACL rules, admin) uses this
 * one runner. Owns: the ordering, the "newer than this Bastion" refusal, and safety when
 * the broker and the CLI open a new file at the same moment. Must not: hold any DDL.
 */
import type Database from 'better-sqlite3';
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
