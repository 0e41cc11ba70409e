/**
 * A real 3-node nats-server 2.9.10 JetStream cluster on loopback (issue 12): an R3 stream
 * takes a publish; `kill -9` of the stream's leader, and the node's connection (our
 * connectNats, given only that node's URL) reports the disconnect, reconnects to a
 * survivor it learnt from the cluster, and a publish is acknowledged again within ~10 s
 * with nothing acknowledged lost; the killed node restarts on its store and rejoins.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { parseConfig } from '../../src/server/load-config.js';
import { connectNats, type ClusterNatsConnection, type NatsStatusEvent } from '../../src/cluster/nats-connection.js';
import { startNatsCluster, type NatsCluster } from '../helpers/nats-server.js';
import { Inbox, killAllProcs } from './support.js';

const auth = { user: 'bastion', password: 'cluster-test-password' };
let cluster: NatsCluster;
let dir: string;
const open: ClusterNatsConnection[] = [];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'bastion-nats-failover-'));
  writeFileSync(join(dir, 'nats.pass'), auth.password, { mode: 0o600 });
  cluster = await startNatsCluster({ auth });
});

after(async () => {
  await Promise.all(open.map((c) => c.close().catch(() => undefined)));
  await cluster?.stop();
  await killAllProcs();
  rmSync(dir, { recursive: true, force: true });
});

async function connectTo(urls: string[], nodeId: string): Promise<ClusterNatsConnection> {
  const listeners = [{ name: 'plain', protocol: 'mqtt', port: 0, insecure: true, allowAnonymous: true }];
  const config = parseConfig({ listeners, cluster: { nats: { servers: urls, credentials: { user: auth.user, passwordFile: 'nats.pass' } }, nodeId, replicas: 3 } }, dir).config.cluster!;
  const conn = await connectNats({ cluster: config, nodeId, baseDir: dir });
  open.push(conn);
  return conn;
}

test('3-node cluster: an R3 stream takes a publish, survives kill -9 of its leader (publish acknowledged again within 10 s, nothing acknowledged lost), the node restarts and rejoins', async () => {
  const admin = await connectTo(cluster.urls, 'admin');
  assert.equal(admin.features.version, '2.9.10');
  const jsm = await jetstreamManager(admin.nc);
  const info = await jsm.streams.add({ name: 'FAILOVER', subjects: ['failover.>'], num_replicas: 3 });
  assert.equal(info.config.num_replicas, 3);
  const leader = info.cluster?.leader;
  assert.ok(leader !== undefined && ['n1', 'n2', 'n3'].includes(leader), `leader ${leader}`);
  assert.equal(info.cluster?.replicas?.length, 2);

  // This node's connection knows only the leader's URL; the cluster tells it the others.
  const node = await connectTo([cluster.node(leader).url], 'edge-1');
  assert.equal(node.server(), `127.0.0.1:${cluster.node(leader).port}`);
  const events = new Inbox<NatsStatusEvent>();
  node.onStatus((e) => events.push(e));
  const js = jetstream(node.nc, { timeout: 1500 });
  const first = await js.publish('failover.a', 'before', { msgID: 'm-1' });
  assert.equal(first.seq, 1);

  await cluster.kill(leader);
  const killedAt = Date.now();
  await events.waitFor((es) => es.some((e) => e.type === 'disconnect'), 5000, 'a disconnect event');
  const reconnected = await events.waitFor((es) => es.some((e) => e.type === 'reconnect'), 8000, 'a reconnect event to a survivor');
  const to = reconnected.find((e): e is Extract<NatsStatusEvent, { type: 'reconnect' }> => e.type === 'reconnect')!;
  assert.notEqual(to.server, `127.0.0.1:${cluster.node(leader).port}`);
  assert.equal(to.features.version, '2.9.10');

  // Retry with the same message id until JetStream acknowledges (the stream elects a new leader meanwhile).
  let ack: Awaited<ReturnType<typeof js.publish>> | undefined;
  let lastError = '';
  while (ack === undefined && Date.now() - killedAt < 12000) {
    try {
      ack = await js.publish('failover.a', 'after', { msgID: 'm-2' });
    } catch (err) {
      lastError = (err as Error).message;
    }
  }
  const outageMs = Date.now() - killedAt;
  assert.ok(ack !== undefined, `no acknowledgement within 12 s of the kill; last error: ${lastError}`);
  assert.ok(outageMs < 10500, `publish acknowledged again after ${outageMs} ms`);
  assert.equal(ack.seq, 2, 'kept once and in order');
  const after = await jsm.streams.info('FAILOVER');
  assert.equal(after.state.messages, 2, 'both acknowledged messages are stored');
  assert.notEqual(after.cluster?.leader, leader);
  process.stdout.write(`# publish acknowledged again ${outageMs} ms after kill -9 of the stream leader ${leader}\n`);

  await cluster.restart(leader);
  // The restarted node serves the stream again (as a replica) and a publish through it is acknowledged.
  const back = await connectTo([cluster.node(leader).url], 'edge-2');
  const seq = (await jetstream(back.nc).publish('failover.b', 'rejoined', { msgID: 'm-3' })).seq;
  assert.equal(seq, 3);
});
