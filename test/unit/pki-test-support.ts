/**
 * Shared by the unit PKI tests (pki.test.ts, pki-tls.test.ts): a temporary directory per
 * file with one fresh sub-directory per use, the real `openssl` binary, file modes.
 * Must not: be imported by src/ (test-only).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { promisify } from 'node:util';

const OPENSSL = '/usr/bin/openssl';
const run = promisify(execFile);

/** Registers a temporary directory for the calling test file (removed after it) and returns a maker of fresh sub-directories. */
export function tempDirs(prefix: string): (label: string) => Promise<string> {
  let tmp: string;
  let seq = 0;
  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), prefix));
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });
  return (label) => mkdtemp(join(tmp, `${label}-${++seq}-`));
}

export async function openssl(...args: string[]): Promise<{ ok: boolean; out: string }> {
  try {
    const { stdout, stderr } = await run(OPENSSL, args);
    return { ok: true, out: stdout + stderr };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    return { ok: false, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

export async function x509Text(certPath: string): Promise<string> {
  const { ok, out } = await openssl('x509', '-in', certPath, '-noout', '-text');
  assert.ok(ok, out);
  return out;
}

export function mode(st: { mode: number }): number {
  return st.mode & 0o777;
}
