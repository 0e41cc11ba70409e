/**
 * The web console of a zero-config start (`bastion serve` with no config), as a real
 * process: on first start an admin token is written to `<data-dir>/console-token` (0600) and
 * the banner names the console's address and that file; the token signs in over HTTPS with
 * the development PKI's root as the only trust; a second start reuses it; a revoked console
 * token is not made again while its file is there (the banner says it is revoked), deleting
 * the file asks for a new one; `--no-console` runs no admin listener; the console flags are
 * refused with a config file.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { consoleRequest } from '../helpers/console-http.js';
import { BASTION_MAIN, LISTENING_LINE, Proc, run } from './support.js';

const dir = mkdtempSync(join(tmpdir(), 'bastion-zero-console-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const CONSOLE_LINE = /Web console: https:\/\/localhost:(\d+)\/console\/ \((.*?)\)/;

/** Starts `bastion serve --port 0 …` in `dir` until its banner's console line (or the connect hints); stops it after `work`. */
async function withServe(args: string[], work: (stderr: string, consolePort: number | null) => Promise<void>): Promise<string> {
  const p = Proc.spawn(process.execPath, [BASTION_MAIN, 'serve', '--port', '0', ...args], { cwd: dir, label: 'zero-config serve' });
  try {
    await p.waitForOutput(LISTENING_LINE, 20_000, 'stderr');
    await p.waitForOutput(/Issue the next device's certificate/, 10_000, 'stderr');
    const stderr = p.stderr;
    const m = CONSOLE_LINE.exec(stderr);
    await work(stderr, m === null ? null : Number(m[1]));
    p.kill('SIGTERM');
    await p.waitExit(10_000);
    return stderr;
  } finally {
    await p.stop();
  }
}

test('first start: a console token in the data directory, named by the banner, signs in; a restart reuses it', async () => {
  const tokenFile = join(dir, 'bastion-data', 'console-token');
  let token = '';
  const first = await withServe([], async (stderr, port) => {
    assert.ok(port !== null && port > 0, stderr);
    assert.match(stderr, /Created an admin token for the web console in .*console-token/);
    assert.match(stderr, /sign in with the token in bastion-data\/console-token; the browser must trust bastion-data\/pki\/root\.crt/);
    assert.equal(statSync(tokenFile).mode & 0o777, 0o600);
    token = readFileSync(tokenFile, 'utf8').trim();
    assert.match(token, /^bst_/);
    assert.equal(stderr.includes(token), false, 'the token is never printed');
    const t = { port: port!, caPem: readFileSync(join(dir, 'bastion-data', 'pki', 'root.crt'), 'utf8') };
    const signIn = await consoleRequest(t, { method: 'POST', path: '/api/v1/session', body: { token } });
    assert.equal(signIn.status, 200, signIn.text);
    assert.equal(signIn.json.scope, 'admin');
    assert.equal((await consoleRequest(t, { path: '/console/' })).status, 200);
  });
  assert.match(first, LISTENING_LINE);
  const second = await withServe([], async (stderr, port) => {
    assert.ok(port !== null);
    assert.doesNotMatch(stderr, /Created an admin token/);
  });
  assert.equal(readFileSync(tokenFile, 'utf8').trim(), token, 'the same token');
  assert.match(second, CONSOLE_LINE);
});

test('a revoked console token is not made again; deleting its file asks for a new one; --no-console; the flags need the zero-config start', async () => {
  const tokenFile = join(dir, 'bastion-data', 'console-token');
  const old = readFileSync(tokenFile, 'utf8').trim();
  const revoked = await run(process.execPath, [BASTION_MAIN, 'admin', 'token', 'revoke', 'console', '--data-dir', join(dir, 'bastion-data')], { cwd: dir });
  assert.equal(revoked.code, 0, revoked.stderr);
  await withServe([], async (stderr, port) => {
    assert.ok(port !== null);
    assert.doesNotMatch(stderr, /Created an admin token/);
    assert.match(stderr, /the token in bastion-data\/console-token was revoked: delete the file for a new one at the next start/);
  });
  assert.equal(readFileSync(tokenFile, 'utf8').trim(), old);
  unlinkSync(tokenFile);
  await withServe([], async (stderr, port) => {
    assert.match(stderr, /Created an admin token for the web console/);
    const fresh = readFileSync(tokenFile, 'utf8').trim();
    assert.notEqual(fresh, old);
    const t = { port: port!, caPem: readFileSync(join(dir, 'bastion-data', 'pki', 'root.crt'), 'utf8') };
    assert.equal((await consoleRequest(t, { method: 'POST', path: '/api/v1/session', body: { token: fresh } })).status, 200);
    assert.equal((await consoleRequest(t, { method: 'POST', path: '/api/v1/session', body: { token: old } })).status, 401);
  });
  await withServe(['--no-console'], async (stderr, port) => {
    assert.equal(port, null);
    assert.doesNotMatch(stderr, /admin API listening/);
  });
  const refused = await run(process.execPath, [BASTION_MAIN, 'serve', '-c', join(dir, 'nope.yaml'), '--no-console'], { cwd: dir });
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr.trim(), /^bastion: --console-port and --no-console are for the start without a config/);
  assert.equal(refused.stderr.trim().split('\n').length, 1);
});
