/**
 * `bastion defender audit` end to end: the real CLI over a data directory made by a real
 * zero-config broker (started, then stopped), over a config with bad settings, and with
 * bad input. Checks the JSON report, the exit codes and --fail-on.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BASTION_MAIN, killAllProcs, run, startBrokerProcess, type ProcResult } from './support.js';

interface Report {
  findings: Array<{ check: string; severity: string; subject: string; message: string; fix: string }>;
  counts: Record<string, number>;
  checkedAt: string;
}

const work = await mkdtemp(join(tmpdir(), 'defender-audit-cli-'));
after(async () => {
  await killAllProcs();
  await rm(work, { recursive: true, force: true });
});

const bastion = (args: string[]): Promise<ProcResult> => run(process.execPath, [BASTION_MAIN, ...args], { cwd: work, timeoutMs: 20_000 });

function oneLineError(r: ProcResult): string {
  assert.equal(r.stderr.trimEnd().split('\n').length, 1, `one line on stderr, got: ${r.stderr}`);
  assert.equal(r.stdout, '');
  return r.stderr.trimEnd();
}

const zeroData = join(work, 'zero');

test('a zero-config broker, started and stopped, has no finding at or above medium (only its online root key, low)', async () => {
  const broker = await startBrokerProcess(['--data-dir', zeroData, '--port', '0'], { cwd: work });
  broker.proc.kill('SIGTERM');
  const stopped = await broker.proc.waitExit(15_000);
  assert.equal(stopped.code, 0, stopped.stderr);

  const r = await bastion(['defender', 'audit', '--json', '--data-dir', zeroData, '--fail-on', 'medium']);
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout) as Report;
  assert.deepEqual(report.findings.map((f) => `${f.check}:${f.severity}`), ['root-key-online:low']);
  assert.deepEqual(report.counts, { low: 1, medium: 0, high: 0, critical: 0 });
  assert.ok(Math.abs(Date.parse(report.checkedAt) - Date.now()) < 60_000);
  assert.match(report.findings[0]!.fix, /bastion ca export-root --out DIR/);

  // --fail-on low counts that finding; the text report shows it with its fix.
  const low = await bastion(['defender', 'audit', '--data-dir', zeroData, '--fail-on', 'low']);
  assert.equal(low.code, 1);
  assert.match(low.stdout, /^LOW +root-key-online .*\n +fix: move it offline/);

  // The suggested fix works: with the root key exported there is nothing left to report.
  const exported = await bastion(['ca', 'export-root', '--data-dir', zeroData, '--out', join(work, 'offline')]);
  assert.equal(exported.code, 0, exported.stderr);
  const clean = await bastion(['defender', 'audit', '--data-dir', zeroData, '--fail-on', 'low']);
  assert.equal(clean.code, 0, clean.stdout);
  assert.match(clean.stdout, /^no findings/);
});

test('a config with a plaintext network listener and limits off fails at the default (high), passes --fail-on critical', async () => {
  const config = join(work, 'weak.yaml');
  await writeFile(
    config,
    [`dataDir: ${join(work, 'weak-data')}`, 'listeners:', '  - { name: lan, protocol: mqtt, host: 0.0.0.0, port: 1883, insecure: true }', 'limits: { enabled: false }', ''].join('\n'),
  );
  const r = await bastion(['defender', 'audit', '--json', '-c', config]);
  assert.equal(r.code, 1, r.stderr);
  const report = JSON.parse(r.stdout) as Report;
  assert.deepEqual(report.findings.map((f) => `${f.check}:${f.severity}:${f.subject}`), ['limits-disabled:high:limits.enabled', 'plaintext-listener:high:lan']);
  assert.equal(report.counts['high'], 2);
  const critical = await bastion(['defender', 'audit', '-c', config, '--fail-on', 'critical']);
  assert.equal(critical.code, 0);
  assert.match(critical.stdout, /2 finding\(s\): 0 critical, 2 high/);
});

test('bad input: one line on stderr and exit 2, never a report', async () => {
  assert.match(oneLineError(await bastion(['defender', 'audit', '--data-dir', zeroData, '--fail-on', 'severe'])), /argument 'severe' is invalid/);
  assert.equal((await bastion(['defender', 'audit', '--data-dir', zeroData, '--fail-on', 'severe'])).code, 2);
  const unknown = await bastion(['defender', 'audit', '--bogus']);
  assert.equal(unknown.code, 2);
  assert.match(oneLineError(unknown), /unknown option '--bogus'/);
  const missing = await bastion(['defender', 'audit', '--data-dir', join(work, 'nope')]);
  assert.equal(missing.code, 2);
  assert.match(oneLineError(missing), /^bastion: data directory .*nope does not exist/);
  await writeFile(join(work, 'broken.yaml'), 'listeners: [ {name: x, protocol: gopher} ]\n');
  const broken = await bastion(['defender', 'audit', '-c', join(work, 'broken.yaml')]);
  assert.equal(broken.code, 2);
  assert.match(oneLineError(broken), /^bastion: /);
});
