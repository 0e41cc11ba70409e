/**
 * A Bastion node killed with -9 under QoS 1 load (issue 12): two `bastion serve` processes
 * on one nats-server; persistent subscribers (each with a will) on the victim, a publisher
 * on the survivor. Mid-load the victim is killed; its subscribers fail over to the survivor
 * and resume their sessions. Every message the publisher had acknowledged reaches every
 * subscriber (QoS 1 may repeat: never lost), and the survivor publishes the victim's wills
 * once its lease expires.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { startNatsServer, type SingleNats } from '../helpers/nats-server.js';
import { connectMqtt, endQuietly, Inbox, killAllProcs, startBrokerProcess, withTimeout, type BrokerProcess } from './support.js';

const SUBSCRIBERS = 4;
const MESSAGES = 1200;
const KILL_AFTER = 400;
const WINDOW = 40;

let nats: SingleNats;
let dir: string;
let victim: BrokerProcess;
let survivor: BrokerProcess;
const clients: MqttClient[] = [];

function nodeConfig(name: string): string {
  const path = join(dir, `${name}.yaml`);
  writeFileSync(
    path,
    [
      `dataDir: ${JSON.stringify(join(dir, name))}`,
      'listeners:',
      '  - name: plain',
      '    protocol: mqtt',
      '    host: 127.0.0.1',
      '    port: 0',
      '    insecure: true',
      '    allowAnonymous: true',
      'authz:',
      '  policy: allow-all-INSECURE',
      'log:',
      '  level: warn',
      'cluster:',
      '  nats:',
      `    servers: [${JSON.stringify(nats.url)}]`,
      `  nodeId: ${name}`,
      '',
    ].join('\n'),
  );
  return path;
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'bastion-cluster-kill-'));
  nats = await startNatsServer();
  victim = await startBrokerProcess(['-c', nodeConfig('victim')]);
  survivor = await startBrokerProcess(['-c', nodeConfig('survivor')]);
});

after(async () => {
  await Promise.all(clients.map((c) => endQuietly(c)));
  await killAllProcs();
  await nats?.stop();
  rmSync(dir, { recursive: true, force: true });
});

interface Subscriber {
  id: string;
  got: Set<number>;
  client: MqttClient;
}

async function connectSubscriber(port: number, id: string, got: Set<number>, withWill: boolean): Promise<MqttClient> {
  const client = await connectMqtt(
    `mqtt://127.0.0.1:${port}`,
    {
      clientId: id,
      protocolVersion: 5,
      clean: false,
      properties: { sessionExpiryInterval: 600 },
      ...(withWill ? { will: { topic: `wills/${id}`, payload: Buffer.from(`${id} gone`), qos: 1, retain: false } } : {}),
    },
    5000,
    (c) => c.on('message', (topic, payload) => {
      if (topic.startsWith('load/')) got.add(Number(payload.toString()));
    }),
  );
  clients.push(client);
  return client;
}

test('kill -9 of a node under QoS 1 load: subscribers fail over and resume, nothing acknowledged is lost, the dead node\'s wills are published', { timeout: 90_000 }, async () => {
  const wills = new Inbox<string>();
  const watcher = await connectMqtt(`mqtt://127.0.0.1:${survivor.port}`, { clientId: 'will-watcher', protocolVersion: 5 });
  clients.push(watcher);
  watcher.on('message', (topic) => wills.push(topic));
  await watcher.subscribeAsync('wills/#', { qos: 1 });

  const subs: Subscriber[] = [];
  for (let i = 0; i < SUBSCRIBERS; i++) {
    const id = `kill-sub-${i}`;
    const got = new Set<number>();
    const client = await connectSubscriber(victim.port, id, got, true);
    await client.subscribeAsync('load/#', { qos: 1 });
    subs.push({ id, got, client });
  }

  const pub = await connectMqtt(`mqtt://127.0.0.1:${survivor.port}`, { clientId: 'kill-pub', protocolVersion: 5 });
  clients.push(pub);
  const acked = new Set<number>();
  let next = 0;
  let killed: Promise<void> | null = null;
  const lane = async (): Promise<void> => {
    while (next < MESSAGES) {
      const n = next++;
      await pub.publishAsync(`load/${n % 7}`, String(n), { qos: 1 });
      acked.add(n);
      if (acked.size === KILL_AFTER && killed === null) {
        victim.proc.kill('SIGKILL');
        killed = victim.proc.exited.then(() => undefined);
      }
    }
  };
  await withTimeout(Promise.all(Array.from({ length: WINDOW }, lane)), 60_000, 'publishing under load');
  assert.notEqual(killed, null, 'the victim was killed during the load');
  await killed;
  assert.equal(acked.size, MESSAGES);

  // Subscribers notice the dead node and resume on the survivor.
  for (const s of subs) {
    await withTimeout(new Promise<void>((r) => (!s.client.connected ? r() : s.client.once('close', () => r()))), 10_000, `${s.id} sees its node die`);
    s.client = await connectSubscriber(survivor.port, s.id, s.got, false);
  }
  // Every acknowledged message reaches every subscriber.
  for (const s of subs) {
    const deadline = Date.now() + 20_000;
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        const check = (): void => {
          if ([...acked].every((n) => s.got.has(n))) resolve();
          else if (Date.now() > deadline) reject(new Error(`${s.id} misses ${[...acked].filter((n) => !s.got.has(n)).length} acknowledged messages`));
          else s.client.once('message', check);
        };
        check();
      }),
      25_000,
      `${s.id} has every acknowledged message`,
    );
  }
  // The survivor publishes the dead node's wills once its lease expires.
  await wills.waitFor((w) => subs.every((s) => w.includes(`wills/${s.id}`)), 20_000, 'the wills of the dead node');
  assert.equal(new Set(wills.items).size, wills.items.length, 'each will once');
});

test('a node stopped with SIGTERM publishes its clients\' wills through the cluster before it exits 0', { timeout: 60_000 }, async () => {
  const leaving = await startBrokerProcess(['-c', nodeConfig('leaving')]);
  const wills = new Inbox<string>();
  const watcher = await connectMqtt(`mqtt://127.0.0.1:${survivor.port}`, { clientId: 'stop-watcher', protocolVersion: 5 });
  clients.push(watcher);
  watcher.on('message', (topic) => wills.push(topic));
  await watcher.subscribeAsync('stop-wills/#', { qos: 1 });
  const c = await connectMqtt(`mqtt://127.0.0.1:${leaving.port}`, { clientId: 'stopping-client', protocolVersion: 5, will: { topic: 'stop-wills/stopping-client', payload: Buffer.from('bye'), qos: 1, retain: false } });
  clients.push(c);
  leaving.proc.kill('SIGTERM');
  const exit = await withTimeout(leaving.proc.exited, 15_000, 'the node to stop');
  assert.equal(exit.code, 0, leaving.proc.stderr.slice(-800));
  await wills.waitFor((w) => w.includes('stop-wills/stopping-client'), 5000, 'the will, published at the stop');
});

test('a node killed with -9 whose clients never come back: a survivor publishes their wills once the node\'s lease expires, each once', { timeout: 60_000 }, async () => {
  const lonely = await startBrokerProcess(['-c', nodeConfig('lonely')]);
  const wills = new Inbox<string>();
  const watcher = await connectMqtt(`mqtt://127.0.0.1:${survivor.port}`, { clientId: 'lease-watcher', protocolVersion: 5 });
  clients.push(watcher);
  watcher.on('message', (topic, payload) => wills.push(`${topic}=${payload.toString()}`));
  await watcher.subscribeAsync('lease-wills/#', { qos: 1 });
  for (const [id, v] of [['gone-v5', 5], ['gone-v3', 4]] as const) {
    const c = await connectMqtt(`mqtt://127.0.0.1:${lonely.port}`, { clientId: id, protocolVersion: v, will: { topic: `lease-wills/${id}`, payload: Buffer.from('offline'), qos: 1, retain: false } });
    clients.push(c);
  }
  const killedAt = Date.now();
  lonely.proc.kill('SIGKILL');
  await lonely.proc.exited;
  await wills.waitFor((w) => w.length >= 2, 20_000, 'the wills of the node whose lease expired');
  // Not before the lease (5 s without renewal) expired: the node might only have been slow.
  assert.ok(Date.now() - killedAt >= 4000, `published ${Date.now() - killedAt} ms after the kill`);
  assert.deepEqual([...wills.items].sort(), ['lease-wills/gone-v3=offline', 'lease-wills/gone-v5=offline']);
});
