/**
 * `bastion serve --workers 2` (issue 12) with real processes on loopback: a single
 * nats-server 2.9.10 (JetStream, monitoring on) and the broker's primary with its two
 * workers. Proves: one banner for the set; both workers in NATS (`/connz` names
 * bastion:wt-w1 and bastion:wt-w2) and MQTT connections spread over both (owners read from
 * the session registry's KV bucket); QoS 1 messages between connections on the same and on
 * different workers; a deny rule added with `bastion acl` in the data directory enforced by
 * both workers; the data directory locked for the whole set; kill -9 of a worker is
 * followed by its restart and the broker keeps serving; SIGTERM to the primary exits 0
 * with every worker gone and every lock released. And a first start that cannot work (no
 * NATS listening, a node id too long for the worker ids) is one line and exit 1, not a
 * restart loop. The tests run in order on one broker set.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Kvm, type KV } from '@nats-io/kv';
import { clientIdToKey } from '../../src/cluster/subject-codec.js';
import { SqliteAclStore } from '../../src/store/sqlite/acl-store.js';
import { SESSIONS_BUCKET } from '../../src/cluster/session-registry.js';
import { startNatsServer, freePorts, type SingleNats } from '../helpers/nats-server.js';
import { BASTION_MAIN, LISTENING_LINE, Proc, connectMqtt, endQuietly, inboxOf, killAllProcs, pubackCode, run, type Inbox, type Received } from './support.js';

const WAIT_MS = 10_000;
let nats: SingleNats;
let dir: string;
let broker: Proc;
let url: string;
let nc: NatsConnection;
let sessions: KV;
const clients: MqttClient[] = [];

/** A config in `dir` (its own data directory) whose cluster section names `servers`. */
function writeConfig(at: string, servers: string[], nodeId = 'wt'): string {
  mkdirSync(at, { recursive: true });
  const file = join(at, 'bastion.yaml');
  writeFileSync(
    file,
    [
      'dataDir: data',
      'listeners:',
      '  - { name: plain, protocol: mqtt, host: 127.0.0.1, port: 0, insecure: true, allowAnonymous: true }',
      'authz: { policy: allow-all-INSECURE }',
      'log: { level: info }',
      'cluster:',
      `  nats: { servers: [${servers.join(', ')}], connectTimeoutSeconds: 2 }`,
      `  nodeId: ${nodeId}`,
      '',
    ].join('\n'),
  );
  return file;
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'bastion-cluster-workers-'));
  nats = await startNatsServer({ monitor: true });
  const config = writeConfig(dir, [nats.url]);
  broker = Proc.spawn(process.execPath, [BASTION_MAIN, 'serve', '-c', config, '--workers', '2'], { cwd: dir, label: 'bastion serve --workers 2' });
  const m = await broker.waitForOutput(LISTENING_LINE, 30_000, 'stderr');
  url = `mqtt://127.0.0.1:${m[3]}`;
  // Printed once every worker reported its listeners up.
  await broker.waitForOutput(/^Bastion running 2 workers \(cluster node ids wt-w1 to wt-w2; primary pid \d+\)$/m, 30_000, 'stderr');
  nc = await connect({ servers: nats.url });
  sessions = await new Kvm(nc).open(SESSIONS_BUCKET);
});

after(async () => {
  await Promise.all(clients.map((c) => endQuietly(c)));
  await nc?.close();
  await broker?.stop();
  await nats?.stop();
  await killAllProcs();
  rmSync(dir, { recursive: true, force: true });
});

/** The primary's JSON records with `msg`, in order. */
function records(msg: string): Array<Record<string, unknown>> {
  return broker.stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((r) => r.msg === msg);
}

/** The pid of each worker, from the primary's latest "worker listening" record for it. */
function workerPids(): Map<number, number> {
  const pids = new Map<number, number>();
  for (const r of records('worker listening')) pids.set(r.worker as number, r.workerPid as number);
  return pids;
}

/** The node that owns `clientId` now (the session registry's KV bucket). */
async function ownerOf(clientId: string): Promise<string> {
  const key = clientIdToKey(clientId);
  assert.equal(typeof key, 'string');
  const entry = await sessions.get(key as string);
  assert.ok(entry !== null && entry.value.length > 0, `no owner for ${clientId}`);
  return (JSON.parse(Buffer.from(entry.value).toString('utf8')) as { n: string }).n;
}

async function natsConnectionNames(): Promise<string[]> {
  const connz = (await (await fetch(`http://127.0.0.1:${nats.node.monitorPort}/connz`)).json()) as { connections: Array<{ name?: string }> };
  return connz.connections.map((c) => c.name ?? '').filter((n) => n.startsWith('bastion:')).sort();
}

interface Member {
  id: string;
  client: MqttClient;
  inbox: Inbox<Received>;
  owner: string;
}

/** Connects `id` (MQTT 5, clean start), subscribed at QoS 1 to `ring/<id>`, with its owner node. */
async function member(id: string): Promise<Member> {
  const client = await connectMqtt(url, { clientId: id, protocolVersion: 5 });
  clients.push(client);
  const inbox = inboxOf(client);
  const granted = await client.subscribeAsync(`ring/${id}`, { qos: 1 });
  assert.equal(granted[0]?.qos, 1);
  return { id, client, inbox, owner: await ownerOf(id) };
}

const ring: Member[] = [];

test('one banner for the set; both workers joined NATS as <nodeId>-w1/-w2 and MQTT connections land on both', { timeout: 60_000 }, async () => {
  assert.equal(broker.stderr.match(new RegExp(LISTENING_LINE.source, 'g'))?.length, 1, broker.stderr);
  assert.deepEqual(await natsConnectionNames(), ['bastion:wt-w1', 'bastion:wt-w2']);
  // Connected one after another: the primary hands them round robin to the workers.
  for (let i = 0; i < 16; i++) ring.push(await member(`ring-${i}`));
  const owners = new Set(ring.map((m) => m.owner));
  assert.deepEqual([...owners].sort(), ['wt-w1', 'wt-w2'], JSON.stringify(ring.map((m) => m.owner)));
});

test('QoS 1 messages reach subscribers on the same and on the other worker', { timeout: 60_000 }, async () => {
  // Each member publishes to the next one and to the one after it (a ring of 16): with
  // both workers in the ring some edges cross workers, and if no step-1 edge stays on one
  // worker the members alternate, so every step-2 edge does.
  const edges = ring.flatMap((from, j) => [1, 2].map((step) => ({ from, to: ring[(j + step) % ring.length]! })));
  const crossing = edges.filter((e) => e.from.owner !== e.to.owner).length;
  assert.ok(crossing > 0 && crossing < edges.length, `${crossing} of ${edges.length} edges cross workers`);
  await Promise.all(edges.map((e) => e.from.client.publishAsync(`ring/${e.to.id}`, `from ${e.from.id}`, { qos: 1 })));
  for (const m of ring) {
    const got = await m.inbox.waitForCount(2, WAIT_MS, `2 messages for ${m.id}`);
    assert.deepEqual(got.map((r) => r.payload).sort(), edges.filter((e) => e.to === m).map((e) => `from ${e.from.id}`).sort());
    assert.ok(got.every((r) => r.packet.qos === 1 && r.topic === `ring/${m.id}`));
  }
});

test('SECURITY: a deny rule `bastion acl` adds in the data directory is enforced by both workers (they share its rule store)', { timeout: 60_000 }, async () => {
  const onW1 = ring.find((m) => m.owner === 'wt-w1')!;
  const onW2 = ring.find((m) => m.owner === 'wt-w2')!;
  // Allowed (allow-all-INSECURE): a success code (in a cluster 0x00: subscribers may be on other nodes).
  const before = await Promise.all([pubackCode(onW1.client, 'fenced/a', WAIT_MS), pubackCode(onW2.client, 'fenced/a', WAIT_MS)]);
  assert.ok(before.every((code) => code < 0x80), JSON.stringify(before));
  for (const args of [
    ['role', 'add', 'fence'],
    ['rule', 'add', 'fence', 'deny', 'publish', 'fenced/#'],
    ['bind', 'add', 'fence', 'clientId', '*'],
  ]) {
    const r = await run(process.execPath, [BASTION_MAIN, 'acl', ...args, '-c', join(dir, 'bastion.yaml')], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
  }
  const store = SqliteAclStore.open(join(dir, 'data', 'authz.db'));
  const counter = store.changeCounter();
  store.close();
  // Each worker polls the shared store and logs its reload at the store's change counter.
  for (const w of [1, 2]) await broker.waitForOutput(new RegExp(`"worker":${w},"counter":${counter},[^\n]*"msg":"ACL rules reloaded"`), WAIT_MS, 'stderr');
  assert.deepEqual(await Promise.all([pubackCode(onW1.client, 'fenced/a', WAIT_MS), pubackCode(onW2.client, 'fenced/a', WAIT_MS)]), [0x87, 0x87]);
});

test('the data directory belongs to the set: a single bastion serve on it is refused in one line', { timeout: 30_000 }, async () => {
  const primary = broker.pid!;
  const r = await run(process.execPath, [BASTION_MAIN, 'serve', '-c', join(dir, 'bastion.yaml')], { cwd: dir, timeoutMs: 15_000 });
  assert.equal(r.code, 1);
  assert.match(r.stderr, new RegExp(`^bastion: data directory \\S+ is in use by bastion pid ${primary} \\(started [^)]+\\); stop it or use another --data-dir\\n$`));
});

test('kill -9 of a worker: the primary restarts it (one line), the other worker keeps its clients, and the restarted one serves', { timeout: 60_000 }, async () => {
  const before = workerPids();
  const victim = before.get(2)!;
  assert.ok(victim > 0 && before.get(1)! > 0, JSON.stringify([...before]));
  process.kill(victim, 'SIGKILL');
  await broker.waitForOutput(new RegExp(`"worker":2,"workerPid":${victim},"code":null,"signal":"SIGKILL","restartInMs":\\d+,"restartsLastMinute":1,"msg":"worker died unexpectedly; restarting it"`), WAIT_MS, 'stderr');
  await broker.waitForOutput(new RegExp(`"worker":2,"workerPid":(?!${victim}\\b)\\d+,"nodeId":"wt-w2","msg":"worker listening"`), 30_000, 'stderr');
  assert.equal(broker.result, null, 'the primary runs on');
  assert.equal(broker.stderr.match(new RegExp(LISTENING_LINE.source, 'g'))?.length, 1, 'no second banner');
  // The clients on worker 1 never noticed; those on the killed worker lost their connection.
  const survivors = ring.filter((m) => m.owner === 'wt-w1');
  assert.ok(survivors.length > 0 && survivors.every((m) => m.client.connected));
  // New connections: round robin puts one of the first two on the restarted worker.
  const fresh = [await member('after-0'), await member('after-1')];
  const onNew = fresh.find((m) => m.owner === 'wt-w2');
  assert.ok(onNew !== undefined, JSON.stringify(fresh.map((m) => m.owner)));
  await survivors[0]!.client.publishAsync(`ring/${onNew.id}`, 'to the restarted worker', { qos: 1 });
  await onNew.client.publishAsync(`ring/${survivors[0]!.id}`, 'from the restarted worker', { qos: 1 });
  await onNew.inbox.waitFor((items) => items.some((r) => r.payload === 'to the restarted worker'), WAIT_MS, 'a message on the restarted worker');
  await survivors[0]!.inbox.waitFor((items) => items.some((r) => r.payload === 'from the restarted worker'), WAIT_MS, 'a message from the restarted worker');
});

test('SIGTERM to the primary: every worker stops gracefully, the primary exits 0, no process or lock is left', { timeout: 60_000 }, async () => {
  const pids = [...workerPids().values()];
  assert.equal(pids.length, 2);
  broker.kill('SIGTERM');
  const r = await broker.waitExit(30_000);
  assert.equal(r.code, 0, r.stderr.slice(-3000));
  assert.equal(records('shutting down').filter((x) => x.worker === undefined).length, 1, 'the primary logged its shutdown');
  for (const w of [1, 2]) assert.ok(records('stopped').some((x) => x.worker === w), `worker ${w} stopped gracefully`);
  for (const pid of pids) assert.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, `worker pid ${pid} is gone`);
  for (const lock of ['bastion.lock', 'workers/w1/bastion.lock', 'workers/w2/bastion.lock']) assert.equal(existsSync(join(dir, 'data', lock)), false, lock);
});

test('a first start that cannot work is one line and exit 1, not a restart loop (no NATS listening; node ids too long)', { timeout: 60_000 }, async () => {
  const [port] = await freePorts(1);
  const down = join(dir, 'down');
  const long = join(dir, 'long');
  const [refused, tooLong] = await Promise.all([
    run(process.execPath, [BASTION_MAIN, 'serve', '-c', writeConfig(down, [`nats://127.0.0.1:${port}`]), '--workers', '2'], { cwd: down, timeoutMs: 30_000 }),
    run(process.execPath, [BASTION_MAIN, 'serve', '-c', writeConfig(long, [nats.url], 'n'.repeat(62)), '--workers', '2'], { cwd: long, timeoutMs: 30_000 }),
  ]);
  const said = (stderr: string): string[] => stderr.split('\n').filter((l) => l !== '' && !l.startsWith('{'));
  assert.equal(refused.code, 1);
  assert.deepEqual(said(refused.stderr), [`bastion: cannot connect to NATS at nats://127.0.0.1:${port}: connection refused (connect ECONNREFUSED 127.0.0.1:${port})`]);
  assert.doesNotMatch(refused.stderr, /restarting it/);
  assert.equal(existsSync(join(down, 'data', 'bastion.lock')), false, 'the primary released its lock');
  assert.equal(tooLong.code, 1);
  assert.deepEqual(said(tooLong.stderr), [`bastion: config error at cluster.nodeId: with --workers 2 the workers are ${'n'.repeat(62)}-w1 to ${'n'.repeat(62)}-w2, longer than 64 characters: shorten cluster.nodeId to 61 or fewer`]);
});
