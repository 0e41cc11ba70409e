/**
 * Helpers for the tests that tamper with an audit log a real broker wrote and check what
 * `bastion audit verify` says: a changed copy of a data directory, and the one-line
 * failure the CLI must give. Must not: be imported by src/.
 */
import assert from 'node:assert/strict';
import { cpSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { ProcResult } from '../integration/support.js';

/** A copy of the data directory `source` (beside it, named `name`), its audit.db changed by `tamper` through SQLite. */
export function tamperedCopy(source: string, name: string, tamper: (db: Database.Database) => void): string {
  const copy = join(source, '..', name);
  cpSync(source, copy, { recursive: true });
  const db = new Database(join(copy, 'audit.db'));
  try {
    tamper(db);
  } finally {
    db.close();
  }
  return copy;
}

/** Asserts exit 1 and exactly one line on stderr; returns that line. */
export function failedWithOneLine(r: ProcResult): string {
  assert.equal(r.code, 1, `exit code; stdout: ${r.stdout} stderr: ${r.stderr}`);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  return lines[0]!;
}
