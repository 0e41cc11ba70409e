/**
 * The zero-config start's way into its web console: an admin token named `console` (its
 * SHA-256 in admin.db, as `bastion admin token create` stores it) whose secret is written to
 * `<dataDir>/console-token` (mode 0600) for the operator to paste. Made on first start, and
 * again only when the file is gone (deleting it asks for a new token; the old one, which
 * nobody holds any more, is revoked). Owns: that file. Must not: remake a token the
 * operator revoked while the file is there (the banner says it is revoked instead).
 *
 * SECURITY: the file sits in the data directory (0700) beside the CA keys, which it is no
 * more secret than; the token is never printed or logged.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateAdminToken, hashAdminToken } from '../admin/api/tokens.js';
import { ADMIN_DB_FILE, SqliteAdminStore } from '../store/sqlite/admin-store.js';

export const CONSOLE_TOKEN_FILE = 'console-token';
const TOKEN_NAME = 'console';

export interface ConsoleToken {
  path: string;
  /** Made by this call. */
  created: boolean;
  /** False when the token in the file was revoked. */
  valid: boolean;
}

export function ensureConsoleToken(dataDir: string): ConsoleToken {
  const path = join(dataDir, CONSOLE_TOKEN_FILE);
  const store = SqliteAdminStore.open(join(dataDir, ADMIN_DB_FILE));
  try {
    if (existsSync(path)) {
      const token = readFileSync(path, 'utf8').trim();
      return { path, created: false, valid: store.findTokenByHash(hashAdminToken(token)) !== null };
    }
    store.revokeToken(TOKEN_NAME);
    const token = generateAdminToken();
    // The file first (exclusive create): a token that exists must be in someone's hands.
    writeFileSync(path, `${token}\n`, { mode: 0o600, flag: 'wx' });
    store.createToken({ name: TOKEN_NAME, hash: hashAdminToken(token), createdAt: Date.now(), scope: 'admin' });
    return { path, created: true, valid: true };
  } finally {
    store.close();
  }
}
