/**
 * Administrative changes made by the CLI on the data directory reach the broker's audit
 * log (src/cli/cli-change.ts → pending-changes.db → src/server/pending-changes-drain.ts),
 * with real processes: changes and refusals made while no broker runs are in `bastion
 * audit query` once the next `bastion serve` listens; a change made while it runs shows
 * up in `bastion audit tail -f` within a bounded time; each is recorded once, across a
 * restart, and also when a previous run died after recording a change but before deleting
 * its pending row, or after marking it but before recording it.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { ensureDevPki } from '../../src/server/dev-pki.js';
import { BASTION_MAIN, killAllProcs, Proc, run, startBrokerProcess, writePlainConfig, type ProcResult } from './support.js';

interface ChangeRecord {
  seq: number;
  event: { type: string; actor: string; remoteAddress: string; action: string; target: string; outcome: string; detail: { changeId: string; changedAt: string; via: string; reason?: string } };
}

const ACTOR = `local:${userInfo().username}`;

function bastion(args: string[], input?: string): Promise<ProcResult> {
  return run(process.execPath, [BASTION_MAIN, ...args], { timeoutMs: 20000, ...(input !== undefined ? { input } : {}) });
}

async function changes(dataDir: string): Promise<ChangeRecord[]> {
  const r = await bastion(['audit', 'query', '--type', 'admin.change', '--json', '--data-dir', dataDir]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as ChangeRecord);
}

function pendingRows(dataDir: string): number {
  const db = new Database(join(dataDir, 'pending-changes.db'), { readonly: true });
  try {
    return (db.prepare('SELECT COUNT(*) AS n FROM pending_changes').get() as { n: number }).n;
  } finally {
    db.close();
  }
}

async function stopBroker(proc: Proc): Promise<void> {
  proc.kill('SIGTERM');
  const r = await proc.waitExit(15000);
  assert.equal(r.code, 0, r.stderr);
}

/** Every change id appears once. */
function assertNoDuplicates(records: ChangeRecord[]): void {
  const ids = records.map((r) => r.event.detail.changeId);
  assert.equal(new Set(ids).size, ids.length, `duplicate change ids: ${ids.join(', ')}`);
}

after(() => killAllProcs());

describe('CLI changes reach the audit log', () => {
  let dir: string;
  let dataDir: string;
  let config: string;
  let deviceCert: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'bastion-cli-audit-'));
    dataDir = join(dir, 'data');
    config = writePlainConfig(dir, 0);
    deviceCert = (await ensureDevPki(dataDir)).clientCert;
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('changes and refusals made with the broker stopped are in audit query after the next start', async () => {
    const dd = ['--data-dir', dataDir];
    assert.equal((await bastion(['user', 'add', 'alice', '--password-stdin', ...dd], 'correct horse battery staple\n')).code, 0);
    assert.equal((await bastion(['user', 'del', 'nobody', ...dd])).code, 1, 'refused: no such user');
    assert.equal((await bastion(['acl', 'role', 'add', 'sensors', ...dd])).code, 0);
    assert.equal((await bastion(['acl', 'rule', 'add', 'sensors', 'allow', 'publish', 'sensors/${clientId}/#', ...dd])).code, 0);
    assert.equal((await bastion(['acl', 'bind', 'add', 'sensors', 'clientId', 'dev-*', ...dd])).code, 0);
    assert.equal((await bastion(['acl', 'role', 'del', 'missing', ...dd])).code, 1, 'refused: no such role');
    assert.equal((await bastion(['admin', 'token', 'create', '--name', 'ops', ...dd])).code, 0);
    assert.equal((await bastion(['admin', 'token', 'revoke', 'never-made', ...dd])).code, 1, 'refused: no such token');
    assert.equal((await bastion(['cert', 'revoke', '--cert', deviceCert, ...dd])).code, 0);
    const unknown = await bastion(['cert', 'revoke', '0BADC0DE', ...dd]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /^bastion: no certificate with serial 0BADC0DE/);
    assert.equal(statSync(join(dataDir, 'pending-changes.db')).mode & 0o777, 0o600);
    assert.equal(pendingRows(dataDir), 10, 'waiting for a broker');

    const broker = await startBrokerProcess(['--config', config], { cwd: dir });
    // Drained before the listeners: already there when the broker listens.
    const records = await changes(dataDir);
    const seen = records.map((r) => [r.event.action, r.event.target, r.event.outcome]);
    assert.deepEqual(seen, [
      ['user.put', 'alice', 'ok'],
      ['user.del', 'nobody', 'not-found'],
      ['role.add', 'sensors', 'ok'],
      ['rule.add', 'sensors: allow publish sensors/${clientId}/#', 'ok'],
      ['binding.put', 'clientId=dev-* → sensors', 'ok'],
      ['role.del', 'missing', 'not-found'],
      ['token.create', 'ops', 'ok'],
      ['token.revoke', 'never-made', 'not-found'],
      ['cert.revoke', seen[8]![1]!, 'ok'],
      ['cert.revoke', '0BADC0DE', 'not-found'],
    ]);
    for (const r of records) {
      assert.equal(r.event.actor, ACTOR);
      assert.equal(r.event.remoteAddress, 'local');
      assert.equal(r.event.detail.via, 'cli');
      assert.match(r.event.detail.changeId, /^[0-9a-f-]{36}$/);
    }
    assert.match(records[9]!.event.detail.reason ?? '', /no certificate with serial 0BADC0DE/);
    assert.equal(pendingRows(dataDir), 0, 'drained rows are deleted');

    // While it runs: a change appears within a bounded time (the drain polls every second).
    const follow = Proc.spawn(process.execPath, [BASTION_MAIN, 'audit', 'tail', '-f', '-n', '1', '--json', '--data-dir', dataDir], { label: 'audit tail -f' });
    await follow.waitForOutput(/"seq"/, 10000);
    assert.equal((await bastion(['user', 'del', 'alice', '--data-dir', dataDir])).code, 0);
    // From the CLI's exit: the drain's poll (1 s) plus tail's own (0.3 s), and a margin.
    const madeAt = Date.now();
    await follow.waitForOutput(/"action":"user\.del"[^\n]*"target":"alice"/, 5000);
    const latencyMs = Date.now() - madeAt;
    process.stdout.write(`# CLI change recorded by the running broker ${latencyMs} ms after the CLI exited\n`);
    follow.kill('SIGTERM');
    await follow.waitExit(5000);
    assert.ok(latencyMs < 5000, `recorded after ${latencyMs} ms`);

    await stopBroker(broker.proc);
    const afterStop = await changes(dataDir);
    assert.equal(afterStop.length, 11);
    assertNoDuplicates(afterStop);
    assert.equal(pendingRows(dataDir), 0);

    // A restart records nothing again.
    const again = await startBrokerProcess(['--config', config], { cwd: dir });
    await stopBroker(again.proc);
    assert.equal((await changes(dataDir)).length, 11);
    const verify = await bastion(['audit', 'verify', '--strict', '--data-dir', dataDir]);
    assert.equal(verify.code, 0, verify.stderr);
  });

  test('a run that died between recording a change and deleting its row does not record it twice; one that died before recording it does', async () => {
    const before = (await changes(dataDir)).length;
    assert.equal((await bastion(['acl', 'role', 'add', 'kept', '--data-dir', dataDir])).code, 0);
    // The row cannot be deleted: the broker records the change, then its start fails on the
    // delete, as if it had died between the two.
    const db = new Database(join(dataDir, 'pending-changes.db'));
    db.exec("CREATE TRIGGER stuck BEFORE DELETE ON pending_changes BEGIN SELECT RAISE(ABORT, 'disk says no'); END");
    const failed = await run(process.execPath, [BASTION_MAIN, 'serve', '--config', config], { cwd: dir, timeoutMs: 20000 });
    assert.equal(failed.code, 1, failed.stderr);
    assert.match(failed.stderr, /disk says no/);
    const recorded = (await changes(dataDir)).slice(before);
    assert.deepEqual(recorded.map((r) => r.event.target), ['kept'], 'recorded by the failed run');
    db.exec('DROP TRIGGER stuck');
    // A second row marked as emitted by a run that died before its audit write.
    assert.equal((await bastion(['acl', 'role', 'add', 'lost', '--data-dir', dataDir])).code, 0);
    db.prepare("UPDATE pending_changes SET attempted_at = ? WHERE target = 'lost'").run(Date.now());
    db.close();

    const broker = await startBrokerProcess(['--config', config], { cwd: dir });
    await stopBroker(broker.proc);
    const all = await changes(dataDir);
    assertNoDuplicates(all);
    assert.deepEqual(all.slice(before).map((r) => r.event.target), ['kept', 'lost']);
    assert.equal(pendingRows(dataDir), 0);
    assert.match(broker.proc.stderr, /"recorded":1,"again":1/);
  });
});
