/**
 * Schema of the ACL rule store (`<dataDir>/authz.db`), as ordered migrations tracked in
 * `PRAGMA user_version`. Owns: the DDL. Append new migrations; never edit one that has
 * shipped. `meta.change_counter` goes up with every change, so running brokers notice
 * changes other processes made by reading one row.
 */
import type { SchemaMigration } from './schema-migrations.js';

export const ACL_MIGRATIONS: readonly SchemaMigration[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE acl_roles (
        name TEXT NOT NULL PRIMARY KEY
      );
      CREATE TABLE acl_rules (
        role     TEXT    NOT NULL REFERENCES acl_roles (name) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        effect   TEXT    NOT NULL CHECK (effect IN ('allow', 'deny')),
        action   TEXT    NOT NULL CHECK (action IN ('publish', 'subscribe', 'all')),
        topic    TEXT    NOT NULL,
        max_qos  INTEGER CHECK (max_qos IN (0, 1, 2)),
        retain   INTEGER CHECK (retain IN (0, 1)),
        PRIMARY KEY (role, position)
      ) WITHOUT ROWID;
      CREATE TABLE acl_bindings (
        role      TEXT NOT NULL,
        attribute TEXT NOT NULL,
        value     TEXT NOT NULL,
        PRIMARY KEY (role, attribute, value)
      ) WITHOUT ROWID;
      CREATE TABLE acl_meta (
        id             INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
        change_counter INTEGER NOT NULL
      );
      INSERT INTO acl_meta (id, change_counter) VALUES (1, 0);
    `,
  },
];
