/**
 * Schema of the SQLite session/retain store, as an ordered list of migrations tracked in
 * `PRAGMA user_version` (applied by schema-migrations.ts). Owns: the DDL. Must not: touch rows of the
 * running broker. Append new migrations; never edit one that has shipped.
 *
 * Encodings (see sqlite-store.ts): booleans are 0/1; `sessions.subscriptions` is JSON
 * `[[filter, packedOptions, subscriptionId], ...]`; `outbound.subscription_ids` is a
 * comma-separated list ('' when none); `sessions.identity` is ClientIdentity JSON or NULL; `properties` is JSON text or NULL when the
 * message has none; `outbound.state` is 0 queued, 1 publish-sent, 2 pubrel-sent.
 */
import type Database from 'better-sqlite3';
import { applySchemaMigrations, type SchemaMigration } from './schema-migrations.js';

export const migrations: readonly SchemaMigration[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE sessions (
        client_id        TEXT    NOT NULL PRIMARY KEY,
        protocol_version INTEGER NOT NULL,
        expiry_interval  INTEGER NOT NULL,
        disconnected_at  INTEGER NOT NULL,
        subscriptions    TEXT    NOT NULL
      );
      CREATE TABLE outbound (
        client_id        TEXT    NOT NULL,
        seq              INTEGER NOT NULL,
        topic            TEXT    NOT NULL,
        payload          BLOB    NOT NULL,
        qos              INTEGER NOT NULL,
        granted_qos      INTEGER NOT NULL,
        retain_flag      INTEGER NOT NULL,
        msg_retain       INTEGER NOT NULL,
        origin           TEXT    NOT NULL,
        expires_at       INTEGER NOT NULL,
        properties       TEXT,
        subscription_ids TEXT    NOT NULL,
        state            INTEGER NOT NULL CHECK (state IN (0, 1, 2)),
        packet_id        INTEGER NOT NULL,
        PRIMARY KEY (client_id, seq)
      );
      CREATE TABLE incoming_qos2 (
        client_id TEXT    NOT NULL,
        packet_id INTEGER NOT NULL,
        PRIMARY KEY (client_id, packet_id)
      ) WITHOUT ROWID;
      CREATE TABLE retained (
        topic      TEXT    NOT NULL PRIMARY KEY,
        payload    BLOB    NOT NULL,
        qos        INTEGER NOT NULL,
        msg_retain INTEGER NOT NULL,
        origin     TEXT    NOT NULL,
        expires_at INTEGER NOT NULL,
        properties TEXT
      );
    `,
  },
  {
    // The identity of the session's client (ClientIdentity JSON, NULL when unknown), so a
    // session recovered after a restart is authorized at delivery with its real identity.
    version: 2,
    sql: `ALTER TABLE sessions ADD COLUMN identity TEXT;`,
  },
];

/** The schema version this code writes. */
export const SCHEMA_VERSION: number = migrations.length;

/**
 * Brings the database to SCHEMA_VERSION, each migration in its own transaction.
 * Refuses a database written by a newer version (ERR_STORE_VERSION) rather than guess.
 */
export function migrate(db: Database.Database): void {
  applySchemaMigrations(db, migrations, 'ERR_STORE_VERSION', 'the broker database');
}
