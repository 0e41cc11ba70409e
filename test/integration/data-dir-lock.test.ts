/**
 * One broker per data directory (src/server/data-dir-lock.ts), with real `bastion serve`
 * processes: a second broker on the same data directory is refused with one line naming
 * the holder and exit 1, and leaves the first one's lock and audit log alone; after a
 * `kill -9` of the first, the next start recovers the stale lock with a warning, and a
 * clean stop removes the lock; the audit chain written by the three runs verifies.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { failedWithOneLine } from '../helpers/audit-files.js';
import { BASTION_MAIN, killAllProcs, run, startBrokerProcess, writePlainConfig, Proc } from './support.js';

const dir = mkdtempSync(join(tmpdir(), 'bastion-lock-'));
after(async () => {
  await killAllProcs();
  rmSync(dir, { recursive: true, force: true });
});

test('a second bastion serve on the same data directory is refused; a killed one leaves a lock the next start recovers', async () => {
  // The config names ./data; the brokers run in `dir`, so the refusal names ./data.
  const config = writePlainConfig(dir, 0);
  const lockPath = join(dir, 'data', 'bastion.lock');
  const first = await startBrokerProcess(['--config', config], { cwd: dir });

  const owner = JSON.parse(readFileSync(lockPath, 'utf8')) as { pid: number; hostname: string; startedAt: string };
  assert.equal(owner.pid, first.proc.pid);
  assert.equal(owner.hostname, hostname());
  assert.ok(!Number.isNaN(Date.parse(owner.startedAt)), owner.startedAt);
  assert.equal(statSync(lockPath).mode & 0o777, 0o600);

  const second = Proc.spawn(process.execPath, [BASTION_MAIN, 'serve', '--config', config], { cwd: dir, label: 'second bastion serve' });
  const refused = await second.waitExit(15000);
  const line = failedWithOneLine(refused);
  assert.equal(line, `bastion: data directory ./data is in use by bastion pid ${first.proc.pid} (started ${owner.startedAt}); stop it or use another --data-dir`);
  assert.equal(refused.stdout, '', 'the refused broker printed no listening line');
  // The refusal left the first broker's lock in place.
  assert.deepEqual(JSON.parse(readFileSync(lockPath, 'utf8')), owner);

  first.proc.kill('SIGKILL');
  await first.proc.exited;
  assert.ok(existsSync(lockPath), 'kill -9 leaves the lock behind');

  const third = await startBrokerProcess(['--config', config], { cwd: dir });
  await third.proc.waitForOutput(/recovered a stale data directory lock/, 5000, 'stderr');
  const warning = third.proc.stderr.split('\n').find((l) => l.includes('recovered a stale data directory lock'))!;
  const logged = JSON.parse(warning) as { level: number; pid: number; startedAt: string };
  assert.equal(logged.level, 40, 'logged as a warning');
  assert.equal(logged.pid, first.proc.pid, 'names the dead holder');
  assert.equal((JSON.parse(readFileSync(lockPath, 'utf8')) as { pid: number }).pid, third.proc.pid);

  third.proc.kill('SIGTERM');
  const stopped = await third.proc.waitExit(15000);
  assert.equal(stopped.code, 0, stopped.stderr);
  assert.ok(!existsSync(lockPath), 'a clean stop removes the lock');

  // One chain across the killed run and the recovered one: nothing forked.
  const verify = await run(process.execPath, [BASTION_MAIN, 'audit', 'verify', '--data-dir', join(dir, 'data')]);
  assert.equal(verify.code, 0, verify.stderr);
  assert.match(verify.stdout, /^audit log intact: /);
});
