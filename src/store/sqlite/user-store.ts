/**
 * The user store on SQLite: users with their scrypt hash and SCRAM keys, in their own
 * file `<dataDir>/users.db` (WAL). Its own file because the users must exist whether or not
 * session persistence (`bastion.db`) is enabled, and because `bastion user add` writes it
 * from another process while the broker runs: a small separate file keeps the CLI away from
 * the session store's batched writes and migrations. The broker reads it on every login, so
 * a new or deleted user takes effect on the next CONNECT without a restart.
 * Owns: the schema and the rows. Must not: hash passwords or decide who may log in.
 */
import { openSharedDatabase, type SchemaMigration } from './schema-migrations.js';
import type Database from 'better-sqlite3';

/**
 * A user row. The same shape as security/authn's StoredUser, declared here because store/
 * may not import security/ (ARCHITECTURE layering); TypeScript's structural typing lets
 * server/ hand this adapter to the providers as their UserStore port.
 */
export interface StoredUser {
  name: string;
  passwordHash: string;
  scram: { salt: Buffer; iterations: number; storedKey: Buffer; serverKey: Buffer };
  createdAt: number;
}

const MIGRATIONS: readonly SchemaMigration[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE users (
        name             TEXT    NOT NULL PRIMARY KEY,
        password_hash    TEXT    NOT NULL,
        scram_salt       BLOB    NOT NULL,
        scram_iterations INTEGER NOT NULL,
        scram_stored_key BLOB    NOT NULL,
        scram_server_key BLOB    NOT NULL,
        created_at       INTEGER NOT NULL
      );
    `,
  },
];

interface Row {
  name: string;
  password_hash: string;
  scram_salt: Buffer;
  scram_iterations: number;
  scram_stored_key: Buffer;
  scram_server_key: Buffer;
  created_at: number;
}

function toRecord(row: Row): StoredUser {
  return {
    name: row.name,
    passwordHash: row.password_hash,
    scram: { salt: row.scram_salt, iterations: row.scram_iterations, storedKey: row.scram_stored_key, serverKey: row.scram_server_key },
    createdAt: row.created_at,
  };
}

export const USERS_DB_FILE = 'users.db';

export class SqliteUserStore {
  private readonly db: Database.Database;
  private readonly findStmt: Database.Statement<[string], Row>;

  constructor(path: string) {
    this.db = openSharedDatabase(path, { migrations: MIGRATIONS, code: 'ERR_USER_STORE', what: 'the user store' });
    this.findStmt = this.db.prepare('SELECT * FROM users WHERE name = ?');
  }

  find(name: string): StoredUser | null {
    const row = this.findStmt.get(name);
    return row === undefined ? null : toRecord(row);
  }

  put(user: StoredUser): void {
    this.db
      .prepare(
        `INSERT INTO users (name, password_hash, scram_salt, scram_iterations, scram_stored_key, scram_server_key, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT(name) DO UPDATE SET password_hash = excluded.password_hash, scram_salt = excluded.scram_salt,
           scram_iterations = excluded.scram_iterations, scram_stored_key = excluded.scram_stored_key, scram_server_key = excluded.scram_server_key`,
      )
      .run(user.name, user.passwordHash, user.scram.salt, user.scram.iterations, user.scram.storedKey, user.scram.serverKey, user.createdAt);
  }

  delete(name: string): boolean {
    return this.db.prepare('DELETE FROM users WHERE name = ?').run(name).changes > 0;
  }

  list(): StoredUser[] {
    return this.db.prepare<[], Row>('SELECT * FROM users ORDER BY name').all().map(toRecord);
  }

  close(): void {
    this.db.close();
  }
}
