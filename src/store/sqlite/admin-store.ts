/**
 * The admin database (`<dataDir>/admin.db`, WAL): admin API bearer tokens (only their
 * SHA-256 hashes) and the ban list (deny and allow entries, and expired automatic bans kept
 * for a day as history). The CLI (`bastion admin token create`) and a running
 * broker share it across processes, so a token revoked by the CLI is refused on the very
 * next request. Owns: the schema and the rows. Must not: make or check tokens, or decide
 * whether a client is banned (admin/ and security/limits/ do).
 *
 * The row shapes match the BanStore port of security/limits/ban-list.ts and the
 * TokenStore port of admin/api/services.ts structurally (store/ may not import them).
 */
import { openSharedDatabase, type SchemaMigration } from './schema-migrations.js';
import type Database from 'better-sqlite3';

/** The admin database's file name inside the data directory. */
export const ADMIN_DB_FILE = 'admin.db';

const MIGRATIONS: readonly SchemaMigration[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE admin_tokens (
        name        TEXT    NOT NULL PRIMARY KEY,
        hash        TEXT    NOT NULL UNIQUE,
        created_at  INTEGER NOT NULL
      );
      CREATE TABLE bans (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        kind        TEXT    NOT NULL,
        value       TEXT    NOT NULL,
        reason      TEXT    NOT NULL,
        created_by  TEXT    NOT NULL,
        created_at  INTEGER NOT NULL,
        expires_at  INTEGER
      );
    `,
  },
  {
    // Issue 5: allow-list entries beside bans, and the expiry sweep's index.
    version: 2,
    sql: `
      ALTER TABLE bans ADD COLUMN list TEXT NOT NULL DEFAULT 'deny' CHECK (list IN ('deny', 'allow'));
      CREATE INDEX bans_expires_at ON bans (expires_at) WHERE expires_at IS NOT NULL;
    `,
  },
  {
    // Issue 16: token scopes. Tokens made before them could change everything: they stay admin.
    version: 3,
    sql: `ALTER TABLE admin_tokens ADD COLUMN scope TEXT NOT NULL DEFAULT 'admin' CHECK (scope IN ('admin', 'viewer'));`,
  },
];

export interface StoredAdminToken {
  name: string;
  hash: string;
  createdAt: number;
  /** `admin` changes things; `viewer` only reads. */
  scope: 'admin' | 'viewer';
}

interface TokenRow {
  name: string;
  hash: string;
  created_at: number;
  scope: StoredAdminToken['scope'];
}

const tokenOf = (r: TokenRow): StoredAdminToken => ({ name: r.name, hash: r.hash, createdAt: r.created_at, scope: r.scope });

export interface StoredBan {
  id: number;
  kind: 'clientId' | 'username' | 'certSerial' | 'certFingerprint' | 'ip' | 'cidr';
  value: string;
  /** `deny` (a ban) or `allow` (an allow-list entry). */
  list: 'deny' | 'allow';
  reason: string;
  createdBy: string;
  createdAt: number;
  expiresAt: number | null;
}

interface BanRow {
  id: number;
  kind: StoredBan['kind'];
  value: string;
  list: StoredBan['list'];
  reason: string;
  created_by: string;
  created_at: number;
  expires_at: number | null;
}

export class SqliteAdminStore {
  /** Every admin API request with a bearer token runs it: prepared once, not per request. */
  private readonly findTokenStmt: Database.Statement<[string], TokenRow>;

  private constructor(private readonly db: Database.Database) {
    this.findTokenStmt = db.prepare('SELECT name, hash, created_at, scope FROM admin_tokens WHERE hash = ?');
  }

  /** Opens (creating when missing) the admin database at `path`. */
  static open(path: string): SqliteAdminStore {
    return new SqliteAdminStore(openSharedDatabase(path, { migrations: MIGRATIONS, code: 'ERR_ADMIN_STORE', what: 'the admin database' }));
  }

  // --- tokens -----------------------------------------------------------------------

  /** Adds a token; false when a token with this name exists. */
  createToken(token: StoredAdminToken): boolean {
    const r = this.db.prepare('INSERT OR IGNORE INTO admin_tokens (name, hash, created_at, scope) VALUES (?, ?, ?, ?)').run(token.name, token.hash, token.createdAt, token.scope);
    return r.changes === 1;
  }

  findTokenByHash(hash: string): StoredAdminToken | null {
    const row = this.findTokenStmt.get(hash);
    return row === undefined ? null : tokenOf(row);
  }

  listTokens(): Array<{ name: string; createdAt: number; scope: StoredAdminToken['scope'] }> {
    const rows = this.db.prepare('SELECT name, created_at, scope FROM admin_tokens ORDER BY name').all() as Array<{ name: string; created_at: number; scope: StoredAdminToken['scope'] }>;
    return rows.map((r) => ({ name: r.name, createdAt: r.created_at, scope: r.scope }));
  }

  /** Every token with its hash (the cluster shares them: server/cluster-tokens.ts). */
  listTokenRecords(): StoredAdminToken[] {
    const rows = this.db.prepare('SELECT name, hash, created_at, scope FROM admin_tokens').all() as TokenRow[];
    return rows.map(tokenOf);
  }

  /** Deletes a token by name; false when there is none. */
  revokeToken(name: string): boolean {
    return this.db.prepare('DELETE FROM admin_tokens WHERE name = ?').run(name).changes === 1;
  }

  // --- bans -------------------------------------------------------------------------

  listBans(): StoredBan[] {
    const rows = this.db.prepare('SELECT id, kind, value, list, reason, created_by, created_at, expires_at FROM bans ORDER BY id').all() as BanRow[];
    return rows.map((r) => ({ id: r.id, kind: r.kind, value: r.value, list: r.list, reason: r.reason, createdBy: r.created_by, createdAt: r.created_at, expiresAt: r.expires_at }));
  }

  addBan(ban: Omit<StoredBan, 'id'>): StoredBan {
    const r = this.db
      .prepare('INSERT INTO bans (kind, value, list, reason, created_by, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)')
      .run(ban.kind, ban.value, ban.list, ban.reason, ban.createdBy, ban.createdAt, ban.expiresAt);
    return { ...ban, id: Number(r.lastInsertRowid) };
  }

  removeBan(id: number): boolean {
    return this.db.prepare('DELETE FROM bans WHERE id = ?').run(id).changes === 1;
  }

  /**
   * Deletes rows that ended at or before `before`, except automatic ones (`created_by`
   * `auto:...`), which are kept until `autoBefore`: they are the history that makes the next
   * automatic ban of the same key longer, also after a restart.
   */
  pruneBans(before: number, autoBefore: number): number {
    return this.db
      .prepare("DELETE FROM bans WHERE expires_at IS NOT NULL AND ((expires_at <= ? AND created_by NOT LIKE 'auto:%') OR expires_at <= ?)")
      .run(before, autoBefore).changes;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
