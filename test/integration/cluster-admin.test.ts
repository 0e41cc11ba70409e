/**
 * The admin API and the metrics of a cluster (issue 12): two in-process nodes on one real
 * nats-server, each with its HTTPS admin API. The API of either node lists the clients of
 * both, ordered by client id with stable paging, each naming its node; shows and kicks a
 * client connected to the other node (DISCONNECT 0x98 seen by the real MQTT.js client),
 * recorded by the node whose API was asked. Malformed requests on a node's NATS admin
 * subject are refused and change nothing. Each node's /metrics carries its node id and
 * the cluster gauges and counters, moved by real traffic and a real takeover, and
 * promtool accepts the scrapes.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import type { MqttClient } from 'mqtt';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { SecurityEvent } from '../../src/core/security-events.js';
import { adminRequest, type AdminAnswer, type AdminCall } from '../helpers/admin.js';
import { startTestBroker, type TestBroker } from '../helpers/broker.js';
import { startNatsServer, type SingleNats } from '../helpers/nats-server.js';
import { parseExposition, sampleValue, type Family } from '../helpers/prom-text.js';
import { BASTION_MAIN, connectMqtt, endQuietly, Inbox, inboxOf, killAllProcs, nextEvent, run } from './support.js';

const WAIT = 5000;
let nats: SingleNats;
let a: TestBroker;
let b: TestBroker;
const tokens = new Map<TestBroker, string>();
const open: MqttClient[] = [];

function call(node: TestBroker, c: Omit<AdminCall, 'token'>): Promise<AdminAnswer> {
  return adminRequest(node.pki, node.server.admin!.port, { ...c, token: tokens.get(node)! });
}

async function client(node: TestBroker, clientId: string): Promise<MqttClient> {
  const c = await connectMqtt(`mqtt://127.0.0.1:${node.plainPort}`, { clientId, protocolVersion: 5, reconnectPeriod: 0 });
  open.push(c);
  return c;
}

function ids(r: AdminAnswer): Array<[string, string]> {
  return (r.json.clients as Array<{ clientId: string; node: string }>).map((c) => [c.clientId, c.node]);
}

/** Retries `probe` (each attempt a real request) until it returns a value or `ms` pass. */
async function eventually<T>(what: string, ms: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

before(async () => {
  nats = await startNatsServer();
  const node = (nodeId: string): Promise<TestBroker> => startTestBroker({ cluster: { nats: { servers: [nats.url] }, nodeId }, admin: {}, sys: { intervalSeconds: 0 } });
  a = await node('adm-a');
  b = await node('adm-b');
  for (const n of [a, b]) {
    const created = await run('node', [BASTION_MAIN, 'admin', 'token', 'create', '--name', 'ops', '--data-dir', n.dataDir]);
    assert.equal(created.code, 0, created.stderr);
    tokens.set(n, created.stdout.trim());
  }
});

after(async () => {
  await Promise.all(open.map((c) => endQuietly(c)));
  await a?.stop();
  await b?.stop();
  await nats?.stop();
  await killAllProcs();
});

describe('metrics of a 2-node cluster', () => {
  const scrapes = new Map<TestBroker, { text: string; families: Map<string, Family> }>();

  before(async () => {
    // QoS 1 from a client on A to a subscriber on B: stored by A, received from the cluster by B.
    const sub = await client(b, 'metrics-sub');
    const inbox = inboxOf(sub);
    await sub.subscribeAsync('m/#', { qos: 1 });
    const pub = await client(a, 'metrics-pub');
    for (let i = 0; i < 3; i++) await pub.publishAsync(`m/${i}`, `v${i}`, { qos: 1 });
    await inbox.waitForCount(3, WAIT, 'the three messages on B');
    // A takeover: the same client id on B closes its connection on A (0x8E).
    const first = await client(a, 'roamer');
    const taken = nextEvent<{ reasonCode?: number }>(first, 'disconnect', WAIT);
    await client(b, 'roamer');
    assert.equal((await taken).reasonCode, 0x8e);
    for (const n of [a, b]) {
      // Each node's lease sweep runs every second: the other node is live once it saw it.
      const scrape = await eventually('both nodes live', WAIT, async () => {
        const r = await call(n, { path: '/metrics' });
        assert.equal(r.status, 200, r.text);
        const families = parseExposition(r.text);
        return sampleValue(families, 'bastion_cluster_nodes_live') === 2 ? { text: r.text, families } : undefined;
      });
      scrapes.set(n, scrape);
    }
  });

  test('each node names itself in bastion_cluster_node_info, and only itself', () => {
    const fa = scrapes.get(a)!.families;
    const fb = scrapes.get(b)!.families;
    assert.equal(sampleValue(fa, 'bastion_cluster_node_info', { node: 'adm-a' }), 1);
    assert.equal(fa.get('bastion_cluster_node_info')!.samples.length, 1);
    assert.equal(sampleValue(fb, 'bastion_cluster_node_info', { node: 'adm-b' }), 1);
    assert.equal(fb.get('bastion_cluster_node_info')!.samples.length, 1);
  });

  test('gauges: live nodes, NATS connected, nothing waiting for JetStream', () => {
    for (const n of [a, b]) {
      const f = scrapes.get(n)!.families;
      assert.equal(sampleValue(f, 'bastion_cluster_nodes_live'), 2);
      assert.equal(sampleValue(f, 'bastion_cluster_nats_connected'), 1);
      assert.equal(sampleValue(f, 'bastion_cluster_store_pending'), 0);
      assert.ok((sampleValue(f, 'bastion_cluster_nats_subscriptions') ?? -1) >= 0);
    }
    assert.ok((sampleValue(scrapes.get(b)!.families, 'bastion_cluster_nats_subscriptions') ?? 0) >= 1, "B holds a NATS subscription for its subscriber's filter");
  });

  test('counters: stores on A, messages received on B, the takeover answered by A', () => {
    const fa = scrapes.get(a)!.families;
    const fb = scrapes.get(b)!.families;
    assert.equal(sampleValue(fa, 'bastion_cluster_messages_stored_total'), 3);
    assert.equal(sampleValue(fb, 'bastion_cluster_messages_received_total'), 3);
    assert.equal(sampleValue(fa, 'bastion_cluster_messages_received_total'), 0, 'A has no subscriber');
    assert.equal(sampleValue(fa, 'bastion_cluster_takeovers_total'), 1);
    assert.equal(sampleValue(fb, 'bastion_cluster_takeovers_total'), 0);
    for (const f of [fa, fb]) {
      for (const name of ['bastion_cluster_messages_duplicates_total', 'bastion_cluster_messages_malformed_total', 'bastion_cluster_messages_expired_total', 'bastion_cluster_store_retries_total', 'bastion_cluster_store_failures_total', 'bastion_cluster_orphan_wills_total']) {
        assert.equal(sampleValue(f, name), 0, name);
      }
    }
  });

  test('no cluster family has a label but the node id (never one per client)', () => {
    for (const { families } of scrapes.values()) {
      const cluster = [...families.values()].filter((f) => f.name.startsWith('bastion_cluster_'));
      assert.ok(cluster.length >= 14, `cluster families: ${cluster.map((f) => f.name).join(', ')}`);
      for (const f of cluster) for (const s of f.samples) assert.deepEqual(Object.keys(s.labels), f.name === 'bastion_cluster_node_info' ? ['node'] : [], f.name);
    }
  });

  test('promtool check metrics accepts both scrapes', (t) => {
    if (spawnSync('promtool', ['--version'], { encoding: 'utf8' }).error !== undefined) {
      t.skip('promtool is not installed here (Debian package "prometheus")');
      return;
    }
    for (const { text } of scrapes.values()) {
      const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
      assert.equal(r.status, 0, `promtool: ${r.stdout}${r.stderr}`);
    }
  });
});

describe('the admin API of any node sees the clients of every node', () => {
  let victim: MqttClient;

  before(async () => {
    // Only this describe's clients from here on.
    await Promise.all(open.splice(0).map((c) => endQuietly(c)));
    await eventually('the metrics clients gone', WAIT, async () => ((await call(a, { path: '/api/v1/clients' })).json.total === 0 ? true : undefined));
    await client(b, 'c-1');
    await client(a, 'c-2');
    victim = await client(b, 'c-3');
    await victim.subscribeAsync('devices/c-3/#', { qos: 1 });
  });

  test('either node lists all three, ordered by client id, each with its node', async () => {
    for (const n of [a, b]) {
      const r = await call(n, { path: '/api/v1/clients' });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.total, 3);
      assert.deepEqual(ids(r), [['c-1', 'adm-b'], ['c-2', 'adm-a'], ['c-3', 'adm-b']]);
      assert.deepEqual(r.json.unreachableNodes, []);
      const c3 = (r.json.clients as Array<Record<string, unknown>>)[2]!;
      assert.equal(c3.listener, 'plain');
      assert.equal(c3.subscriptions, 1);
    }
  });

  test('paging over both nodes is stable', async () => {
    const page = async (offset: number, limit: number): Promise<Array<[string, string]>> => {
      const r = await call(a, { path: `/api/v1/clients?offset=${offset}&limit=${limit}` });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.total, 3);
      assert.equal(r.json.offset, offset);
      return ids(r);
    };
    assert.deepEqual(await page(0, 1), [['c-1', 'adm-b']]);
    assert.deepEqual(await page(1, 1), [['c-2', 'adm-a']]);
    assert.deepEqual(await page(2, 1), [['c-3', 'adm-b']]);
    assert.deepEqual(await page(1, 5), [['c-2', 'adm-a'], ['c-3', 'adm-b']]);
    assert.deepEqual(await page(3, 5), []);
    assert.equal((await call(a, { path: '/api/v1/clients?limit=0' })).status, 400);
  });

  test('the detail of a client on B, through A', async () => {
    const r = await call(a, { path: '/api/v1/clients/c-3' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.node, 'adm-b');
    assert.deepEqual(r.json.subscriptionFilters, [{ filter: 'devices/c-3/#', qos: 1 }]);
    assert.equal((await call(a, { path: '/api/v1/clients/c-2' })).json.node, 'adm-a');
    assert.equal((await call(a, { path: '/api/v1/clients/nobody' })).status, 404);
  });

  test('malformed requests on a node\'s NATS admin subject are refused and change nothing', async () => {
    const nc: NatsConnection = await connect({ servers: nats.url });
    try {
      const ask = async (payload: string): Promise<Record<string, unknown>> => (await nc.request('bmc.node.adm-b.admin', payload, { timeout: WAIT })).json();
      for (const bad of [
        'not json',
        '[]',
        JSON.stringify({ op: 'kick', id: 'c-1', reason: 'x', also: 'everyone' }),
        JSON.stringify({ op: 'kick', id: '', reason: 'x' }),
        JSON.stringify({ op: 'kick', id: 'c-1' }),
        JSON.stringify({ op: 'kick', id: 'c-1', reason: 'x'.repeat(513) }),
        JSON.stringify({ op: 'disconnect-all' }),
        JSON.stringify({ op: 'ids', after: null, limit: 1_000_000 }),
      ]) {
        assert.deepEqual(await ask(bad), { error: 'malformed admin request' }, bad.slice(0, 60));
      }
      const good = await ask(JSON.stringify({ op: 'get', id: 'c-1' }));
      assert.equal((good.client as { node: string }).node, 'adm-b', 'a well-formed request is answered');
    } finally {
      await nc.close();
    }
    assert.deepEqual(ids(await call(a, { path: '/api/v1/clients' })), [['c-1', 'adm-b'], ['c-2', 'adm-a'], ['c-3', 'adm-b']], 'nobody was disconnected');
  });

  test('a kick through A disconnects the client on B with 0x98, recorded on A', async () => {
    const events = new Inbox<SecurityEvent>();
    const off = a.server.broker.events.on((e) => events.push(e));
    try {
      const disconnected = nextEvent<{ reasonCode?: number; properties?: { reasonString?: string } }>(victim, 'disconnect', WAIT);
      const r = await call(a, { method: 'DELETE', path: '/api/v1/clients/c-3' });
      assert.equal(r.status, 200, r.text);
      const packet = await disconnected;
      assert.equal(packet.reasonCode, 0x98);
      assert.match(packet.properties?.reasonString ?? '', /disconnected by operator ops/);
      await events.waitFor((es) => es.some((e) => e.type === 'admin.change' && e.action === 'client.kick' && e.target === 'c-3' && e.outcome === 'ok'), WAIT, 'the kick recorded on A');
    } finally {
      off();
    }
    await eventually('c-3 gone from the listing', WAIT, async () => (ids(await call(a, { path: '/api/v1/clients' })).length === 2 ? true : undefined));
    assert.equal((await call(a, { path: '/api/v1/clients/c-3' })).status, 404);
    assert.equal((await call(a, { method: 'DELETE', path: '/api/v1/clients/c-3' })).status, 404);
  });

  test('a single broker names its own node id on every client', async () => {
    const single = await startTestBroker({ admin: {}, sys: { intervalSeconds: 0 } });
    try {
      const created = await run('node', [BASTION_MAIN, 'admin', 'token', 'create', '--name', 'ops', '--data-dir', single.dataDir]);
      assert.equal(created.code, 0, created.stderr);
      tokens.set(single, created.stdout.trim());
      await client(single, 'solo');
      const r = await call(single, { path: '/api/v1/clients' });
      assert.deepEqual(ids(r), [['solo', single.server.broker.nodeId]]);
      assert.equal(r.json.unreachableNodes, undefined, 'no cluster: the page is as before');
    } finally {
      await Promise.all(open.splice(0).map((c) => endQuietly(c)));
      await single.stop();
    }
  });
});
