/**
 * Schema of the PKI inventory database (`pki/inventory.db`), as ordered migrations
 * tracked in `PRAGMA user_version`. Owns: the DDL. Append new migrations; never edit one
 * that has shipped. Times are milliseconds since the epoch; `sans` is a JSON string array.
 */
import type Database from 'better-sqlite3';
import { BastionError } from '../../core/errors.js';

const PKI_MIGRATIONS: ReadonlyArray<{ version: number; sql: string }> = [
  {
    version: 1,
    sql: `
      CREATE TABLE certificates (
        serial         TEXT    NOT NULL PRIMARY KEY,
        kind           TEXT    NOT NULL CHECK (kind IN ('root', 'intermediate', 'server', 'client')),
        issuer_serial  TEXT,
        subject        TEXT    NOT NULL,
        common_name    TEXT    NOT NULL,
        sans           TEXT    NOT NULL,
        fingerprint256 TEXT    NOT NULL,
        not_before     INTEGER NOT NULL,
        not_after      INTEGER NOT NULL,
        status         TEXT    NOT NULL CHECK (status IN ('valid', 'revoked')),
        revoked_at     INTEGER,
        reason         TEXT,
        pem            TEXT    NOT NULL,
        issued_at      INTEGER NOT NULL
      );
      CREATE INDEX certificates_by_issuer ON certificates (issuer_serial, status);
      CREATE INDEX certificates_by_expiry ON certificates (not_after);
      CREATE TABLE settings (
        key   TEXT NOT NULL PRIMARY KEY,
        value TEXT NOT NULL
      );
    `,
  },
];

export function applyPkiMigrations(db: Database.Database): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  const latest = PKI_MIGRATIONS[PKI_MIGRATIONS.length - 1]!.version;
  if (current > latest) {
    throw new BastionError('ERR_PKI_INVENTORY', `the PKI inventory has schema version ${current}, newer than this Bastion understands (${latest}); upgrade Bastion`);
  }
  for (const m of PKI_MIGRATIONS) {
    if (m.version <= current) continue;
    db.transaction(() => {
      // Another process may have applied it since we looked (both open a new inventory).
      if ((db.pragma('user_version', { simple: true }) as number) >= m.version) return;
      db.exec(m.sql);
      db.pragma(`user_version = ${m.version}`);
    }).immediate();
  }
}
