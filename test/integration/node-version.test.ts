/**
 * `bastion` on a Node.js older than 24 stops with one line naming the version it needs
 * (exit 1) instead of failing later in TLS or crypto calls that old line lacks. Runs where
 * the machine still has an older Node (Debian's, /usr/bin/node), as CI machines do.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { BASTION_MAIN, run } from './support.js';

const SYSTEM_NODE = '/usr/bin/node';

function majorOf(node: string): number | null {
  const r = spawnSync(node, ['-p', 'process.versions.node'], { encoding: 'utf8' });
  return r.status === 0 ? Number(r.stdout.trim().split('.')[0]) : null;
}

const systemMajor = majorOf(SYSTEM_NODE);
const skip = systemMajor === null ? `${SYSTEM_NODE} is absent` : systemMajor >= 24 ? `${SYSTEM_NODE} is Node ${systemMajor}, not older than 24` : false;

test('an older Node.js is refused with one line and exit 1', { skip }, async () => {
  const r = await run(SYSTEM_NODE, [BASTION_MAIN, 'serve'], { timeoutMs: 10000 });
  assert.equal(r.code, 1);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, new RegExp(`^bastion: Node\\.js 24 or newer is required \\(this is v${systemMajor}\\.[\\d.]+, which gets no security fixes\\); see the README's quick start\\n$`));
});

test('the running Node.js (24+) passes the check', async () => {
  const r = await run(process.execPath, [BASTION_MAIN, '--help'], { timeoutMs: 10000 });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Usage: bastion/);
});
