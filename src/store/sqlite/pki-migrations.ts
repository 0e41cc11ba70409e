/**
 * Schema of the PKI inventory database (`pki/inventory.db`), as ordered migrations
 * tracked in `PRAGMA user_version`. Owns: the DDL. Append new migrations; never edit one
 * that has shipped. Times are milliseconds since the epoch; `sans` is a JSON string array.
 */
import type { SchemaMigration } from './schema-migrations.js';

export const PKI_MIGRATIONS: readonly SchemaMigration[] = [
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
