/**
 * One audit chain per cluster node (issue 12): two in-process nodes on one real
 * nats-server, each with its own data directory, record real connections and a kick made
 * through the other node's admin API. Every record names its node (under the hash);
 * `bastion audit verify` takes both data directories (or `--nodes`, their parent) and
 * reports each chain by node id; a record altered in one chain fails that chain only,
 * named by its node; a copy of a chain beside the original (two chains naming one node)
 * fails; a single broker's records name no node and its verify output is as before.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { adminRequest } from '../helpers/admin.js';
import { tamperedCopy } from '../helpers/audit-files.js';
import { startTestBroker, type TestBroker } from '../helpers/broker.js';
import { startNatsServer, type SingleNats } from '../helpers/nats-server.js';
import { BASTION_MAIN, connectMqtt, endQuietly, killAllProcs, nextEvent, run, type ProcResult } from './support.js';

let nats: SingleNats;
let dir: string;
let nodesDir: string;
const dirA = (): string => join(nodesDir, 'aud-a');
const dirB = (): string => join(nodesDir, 'aud-b');

function audit(args: string[]): Promise<ProcResult> {
  return run(process.execPath, [BASTION_MAIN, 'audit', ...args]);
}

/** The events of a data directory's audit log, oldest first. */
async function events(dataDir: string): Promise<Array<Record<string, unknown>>> {
  const r = await audit(['tail', '-n', '1000', '--json', '--data-dir', dataDir]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout
    .trim()
    .split('\n')
    .map((l) => (JSON.parse(l) as { event: Record<string, unknown> }).event);
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'bastion-cluster-audit-'));
  nodesDir = join(dir, 'nodes');
  mkdirSync(nodesDir);
  nats = await startNatsServer();
  const node = (nodeId: string, dataDir: string): Promise<TestBroker> =>
    startTestBroker({ dataDir, cluster: { nats: { servers: [nats.url] }, nodeId }, admin: {}, sys: { intervalSeconds: 0 } });
  const a = await node('aud-a', dirA());
  const b = await node('aud-b', dirB());
  const open: MqttClient[] = [];
  try {
    const created = await run('node', [BASTION_MAIN, 'admin', 'token', 'create', '--name', 'ops', '--data-dir', a.dataDir]);
    assert.equal(created.code, 0, created.stderr);
    const onA = await connectMqtt(`mqtt://127.0.0.1:${a.plainPort}`, { clientId: 'audited-a', protocolVersion: 5 });
    const onB = await connectMqtt(`mqtt://127.0.0.1:${b.plainPort}`, { clientId: 'audited-b', protocolVersion: 5, reconnectPeriod: 0 });
    open.push(onA, onB);
    // A kick through A's API of the client on B: recorded by A (the change) and by B (the disconnect).
    const kicked = nextEvent(onB, 'disconnect', 5000);
    const r = await adminRequest(a.pki, a.server.admin!.port, { method: 'DELETE', path: '/api/v1/clients/audited-b', token: created.stdout.trim() });
    assert.equal(r.status, 200, r.text);
    await kicked;
  } finally {
    await Promise.all(open.map((c) => endQuietly(c)));
    await a.stop();
    await b.stop();
  }
});

after(async () => {
  await nats?.stop();
  await killAllProcs();
  rmSync(dir, { recursive: true, force: true });
});

describe('one audit chain per node', () => {
  test('every record of a node names it, and each node recorded its own events', async () => {
    const ea = await events(dirA());
    const eb = await events(dirB());
    assert.ok(ea.length > 0 && eb.length > 0);
    assert.deepEqual([...new Set(ea.map((e) => e.node))], ['aud-a']);
    assert.deepEqual([...new Set(eb.map((e) => e.node))], ['aud-b']);
    assert.ok(ea.some((e) => e.type === 'connection.accepted' && e.clientId === 'audited-a'));
    assert.ok(ea.some((e) => e.type === 'admin.change' && e.action === 'client.kick' && e.target === 'audited-b' && e.outcome === 'ok'), 'the kick is recorded where it was asked');
    assert.ok(eb.some((e) => e.type === 'connection.accepted' && e.clientId === 'audited-b'));
    assert.ok(!ea.some((e) => e.clientId === 'audited-b' && e.type === 'connection.accepted'), "B's connection is not in A's chain");
  });

  test('verify with both data directories reports each chain by node id', async () => {
    const r = await audit(['verify', '--data-dir', dirA(), '--data-dir', dirB()]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines.length, 3, r.stdout);
    assert.match(lines[0]!, new RegExp(`^node aud-a \\(${dirA()}\\): audit log intact: \\d+ records, \\d+ checkpoints?, last signed at seq \\d+; signatures: ECDSA P-256 \\+ ML-DSA-65$`));
    assert.match(lines[1]!, new RegExp(`^node aud-b \\(${dirB()}\\): audit log intact: `));
    assert.equal(lines[2], '2 audit logs intact');
    // Only the self-signed warning (no built-in PKI here), once per node, named.
    for (const l of r.stderr.trim().split('\n')) assert.match(l, /^bastion: warning: node aud-[ab] \(.*\): checkpoints are self-signed/);
  });

  test('--nodes takes the directory of node data directories; --json gives each chain with its node', async () => {
    const r = await audit(['verify', '--nodes', nodesDir]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^node aud-a .*\nnode aud-b .*\n2 audit logs intact\n$/);
    const json = await audit(['verify', '--nodes', nodesDir, '--json']);
    assert.equal(json.code, 0, json.stderr);
    const parsed = JSON.parse(json.stdout) as { ok: boolean; chains: Array<{ node: string; dataDir: string; ok: boolean; records: number }>; duplicates: string[] };
    assert.equal(parsed.ok, true);
    assert.deepEqual(parsed.chains.map((c) => [c.node, c.dataDir, c.ok]), [['aud-a', dirA(), true], ['aud-b', dirB(), true]]);
    assert.deepEqual(parsed.duplicates, []);
    const none = await audit(['verify', '--nodes', join(dir, 'nowhere')]);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /--nodes .*nowhere: no such directory/);
  });

  test('a record altered in one chain fails that chain, named by its node; the other still verifies', async () => {
    const bad = tamperedCopy(dirB(), 'aud-b-tampered', (db) => {
      db.prepare("UPDATE records SET event = replace(event, 'audited-b', 'someone-else') WHERE seq = (SELECT min(seq) FROM records WHERE client_id = 'audited-b')").run();
    });
    try {
      const r = await audit(['verify', '--data-dir', dirA(), '--data-dir', bad]);
      assert.equal(r.code, 1, r.stdout);
      assert.match(r.stdout, /^node aud-a .*audit log intact/);
      const errors = r.stderr.trim().split('\n').filter((l) => !l.includes('warning:'));
      assert.equal(errors.length, 2, r.stderr);
      assert.match(errors[0]!, new RegExp(`^bastion: node aud-b \\(${bad}\\): record \\d+ was altered \\(hash mismatch\\)$`));
      assert.equal(errors[1], 'bastion: 1 of 2 audit logs failed verification');
    } finally {
      rmSync(bad, { recursive: true, force: true });
    }
  });

  test('two chains naming the same node fail (one node, one chain)', async () => {
    const copy = join(dir, 'aud-a-copy');
    cpSync(dirA(), copy, { recursive: true });
    try {
      const r = await audit(['verify', '--data-dir', dirA(), '--data-dir', copy]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, new RegExp(`bastion: node id aud-a names the chains of 2 data directories: ${dirA()}, ${copy}`));
      assert.match(r.stderr, /bastion: every audit log verified; 1 node id named by several chains\n$/);
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  });
});

test('a single broker: records name no node, verify prints as before', async () => {
  const single = await startTestBroker({ sys: { intervalSeconds: 0 } });
  const dataDir = single.dataDir;
  const keep = join(dir, 'single');
  try {
    const c = await connectMqtt(`mqtt://127.0.0.1:${single.plainPort}`, { clientId: 'solo', protocolVersion: 5 });
    await endQuietly(c);
  } finally {
    await single.server.stop();
    cpSync(dataDir, keep, { recursive: true });
    await single.stop();
  }
  const ev = await events(keep);
  assert.ok(ev.some((e) => e.type === 'connection.accepted' && e.clientId === 'solo'));
  assert.ok(ev.every((e) => !('node' in e)));
  const r = await audit(['verify', '--data-dir', keep]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^audit log intact: \d+ records?, \d+ checkpoints?, last signed at seq \d+; signatures: ECDSA P-256 \+ ML-DSA-65\n$/);
});
