/**
 * Shared by the pki-openssl-* tests: run the real `openssl` binary on files in a temporary
 * directory, and assert PkiError codes. Must not: be imported by src/ (test-only).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PkiError, type PkiErrorCode } from '../../src/pki/index.js';
import { execFile } from 'node:child_process';

export const OPENSSL = '/usr/bin/openssl';

export interface OpensslResult {
  ok: boolean;
  /** stdout then stderr. */
  out: string;
}

/**
 * Runs openssl with `args` in `cwd`, stdin closed (no command here reads it, and a pipe
 * openssl never reads can fail with EPIPE); never throws on a non-zero exit (the test decides).
 */
export function openssl(cwd: string, ...args: string[]): Promise<OpensslResult> {
  return new Promise((resolve) => {
    const child = execFile(OPENSSL, args, { cwd, timeout: 30_000, encoding: 'utf8' }, (err, stdout, stderr) => {
      resolve({ ok: err === null, out: `${stdout}${stderr}${err !== null && stdout + stderr === '' ? String(err) : ''}` });
    });
    child.stdin?.destroy();
  });
}

/** Like openssl() but fails the test on a non-zero exit, showing the output. */
export async function opensslOk(cwd: string, ...args: string[]): Promise<string> {
  const r = await openssl(cwd, ...args);
  assert.ok(r.ok, `openssl ${args.join(' ')} failed:\n${r.out}`);
  return r.out;
}

/** A scratch directory, removed by the returned cleanup. */
export async function scratchDir(label: string): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), `bastion-${label}-`));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Writes files (name → content) into `dir`. */
export async function writeFiles(dir: string, files: Record<string, string | Uint8Array>): Promise<void> {
  for (const [name, content] of Object.entries(files)) await writeFile(join(dir, name), content);
}

/** Asserts that `fn` rejects (or throws) a PkiError with `code`; returns its message. */
export async function expectPkiError(fn: () => unknown, code: PkiErrorCode): Promise<string> {
  let message = '';
  await assert.rejects(
    async () => {
      await fn();
    },
    (err: unknown) => {
      assert.ok(err instanceof PkiError, `expected PkiError ${code}, got ${String(err)}`);
      assert.equal(err.code, code, err.message);
      message = err.message;
      return true;
    },
  );
  return message;
}
