/**
 * Certificate revocation across a cluster (issue 12): two in-process nodes (a, b) over one
 * real nats-server 2.9.10 with JetStream, each with an mTLS listener trusting the test CA
 * and a CRL file of its own. A revocation applied on node a (its CRL file replaced, as
 * `bastion cert revoke` does) disconnects the revoked device's live session on node b
 * within 2 s (measured; v5 DISCONNECT 0x98) and b refuses its reconnect (CONNACK 0x87)
 * although b's own CRL file never changed; a third node started afterwards without any CRL
 * of its own refuses the device from its first CONNECT (the shared state is read before
 * the listeners open). Entries written into the bucket by someone else are validated: junk,
 * a CRL under another issuer's key, a CRL with the right issuer name but a forged
 * signature, and a replayed older CRL are logged and ignored. A revocation made while NATS
 * is down reaches b after the reconnect (node a sends it again; b re-reads the bucket).
 *
 * No sleeps: every wait is on an event (a packet, a log line, a NATS status) with a timeout.
 */
import { after, before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { connect as natsConnect, type NatsConnection } from '@nats-io/transport-node';
import { Kvm, type KV } from '@nats-io/kv';
import { createCrl, createRootCa, type CaMaterial } from '../../src/pki/index.js';
import { crlKeyOf } from '../../src/server/cluster-shared-state.js';
import { STATE_BUCKET } from '../../src/cluster/shared-state.js';
import type { NatsStatusEvent } from '../../src/cluster/nats-connection.js';
import { startTestBroker, type TestBroker } from '../helpers/broker.js';
import { startNatsServer, type SingleNats } from '../helpers/nats-server.js';
import { testCa } from '../helpers/pki.js';
import { connectMqtt, endQuietly, Inbox, inboxOf, killAllProcs, withTimeout } from './support.js';
import { RecordingLogger, tryMqttConnect } from './tls-support.js';

const DAY_MS = 24 * 3600 * 1000;
const CLIENTS = ['rev-v5', 'rev-v3', 'rev-bystander', 'rev-late', 'rev-outage', 'rev-after-forgery'];

let nats: SingleNats;
let dir: string;
let a: TestBroker;
let b: TestBroker;
const logA = new RecordingLogger();
const logB = new RecordingLogger();
let crlA: string;
let crlB: string;
/** CRL numbers only grow: the bucket keeps the newest CRL per issuer for the whole file. */
let crlNumber = 1n;
/** Serials node a's CRL revokes so far. */
const revoked: string[] = [];
const open: MqttClient[] = [];
let nc: NatsConnection | null = null;

function serialOf(name: string): string {
  return new X509Certificate(readFileSync(a.pki.clients[name]!.cert)).serialNumber;
}

async function signCrl(ca: CaMaterial, serials: string[], n: bigint): Promise<string> {
  const now = new Date();
  return createCrl({ ca, entries: serials.map((serialNumber) => ({ serialNumber, revokedAt: now, reason: 'keyCompromise' as const })), crlNumber: n, nextUpdate: new Date(now.getTime() + 7 * DAY_MS) });
}

/** Replaces a CRL file the way `bastion cert revoke` does: a new file renamed over the old. */
function replaceFile(path: string, pem: string): void {
  writeFileSync(`${path}.tmp`, pem);
  renameSync(`${path}.tmp`, path);
}

/** Node a's CRL now also revokes `name` (a new CRL number). */
async function revokeOnA(name: string): Promise<void> {
  revoked.push(serialOf(name));
  replaceFile(crlA, await signCrl(await testCa(), revoked, ++crlNumber));
}

function tlsOf(name: string): { ca: Buffer; cert: Buffer; key: Buffer; servername: string; reconnectPeriod: number } {
  const files = a.pki.clients[name]!;
  return { ca: readFileSync(a.pki.caCert), cert: readFileSync(files.cert), key: readFileSync(files.key), servername: 'localhost', reconnectPeriod: 0 };
}

async function device(node: TestBroker, name: string, protocolVersion: 4 | 5 = 5): Promise<MqttClient> {
  const c = await connectMqtt(`mqtts://127.0.0.1:${node.tlsPort}`, { ...tlsOf(name), clientId: name, protocolVersion });
  open.push(c);
  return c;
}

async function roundTrip(c: MqttClient, topic: string): Promise<void> {
  const inbox = inboxOf(c);
  await c.subscribeAsync(topic, { qos: 1 });
  await c.publishAsync(topic, 'ping', { qos: 1 });
  await inbox.waitFor((ms) => ms.some((m) => m.topic === topic), 5000, `round trip on ${topic}`);
}

/** The shared state bucket, as any NATS client with access to it sees it. */
async function bucket(): Promise<KV> {
  nc ??= await natsConnect({ servers: nats.url, name: 'test-writer' });
  return new Kvm(nc).open(STATE_BUCKET);
}

function statusOf(node: TestBroker): Inbox<NatsStatusEvent> {
  const inbox = new Inbox<NatsStatusEvent>();
  node.server.cluster!.conn.onStatus((e) => inbox.push(e));
  return inbox;
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'bastion-cluster-rev-'));
  crlA = join(dir, 'crl-a.pem');
  crlB = join(dir, 'crl-b.pem');
  const first = await signCrl(await testCa(), [], 1n);
  writeFileSync(crlA, first);
  // b's own CRL file says nothing is revoked, and stays so: whatever b refuses, it learnt from the cluster.
  writeFileSync(crlB, first);
  nats = await startNatsServer();
  a = await startTestBroker({ clients: CLIENTS, tls: { crl: crlA }, cluster: { nats: { servers: [nats.url] }, nodeId: 'rev-a' }, logger: logA });
  b = await startTestBroker({ clients: CLIENTS, tls: { crl: crlB }, cluster: { nats: { servers: [nats.url] }, nodeId: 'rev-b' }, logger: logB });
});

after(async () => {
  for (const c of open) await endQuietly(c);
  await nc?.close();
  await a?.stop();
  await b?.stop();
  await nats?.stop();
  await killAllProcs();
  rmSync(dir, { recursive: true, force: true });
});

test('a certificate revoked through node a: its sessions on node b are disconnected within 2 s (v5 0x98, v3.1.1 closed), b refuses its reconnect (0x87), a refuses its handshake, bystanders carry on', async (t: TestContext) => {
  const v5 = await device(b, 'rev-v5', 5);
  const v3 = await device(b, 'rev-v3', 4);
  const bystander = await device(b, 'rev-bystander', 5);
  const v5Disconnect = new Promise<number | undefined>((resolve) => v5.on('disconnect', (p) => resolve(p.reasonCode)));
  const v5Closed = new Promise<void>((resolve) => v5.once('close', () => resolve()));
  const v3Closed = new Promise<void>((resolve) => v3.once('close', () => resolve()));

  const started = performance.now();
  revoked.push(serialOf('rev-v5'));
  await revokeOnA('rev-v3');
  assert.equal(await withTimeout(v5Disconnect, 2000, 'DISCONNECT on node b'), 0x98);
  await withTimeout(Promise.all([v5Closed, v3Closed]), 2000, 'both revoked sessions on node b closed');
  const elapsedMs = performance.now() - started;
  t.diagnostic(`revoked on node a → sessions on node b closed after ${Math.round(elapsedMs)} ms`);
  assert.ok(elapsedMs < 2000, `revoked sessions on node b closed after ${Math.round(elapsedMs)} ms`);
  await logB.waitFor('client certificate revoked: session disconnected', { clientId: 'rev-v5', source: 'cluster' });
  // Signed by the CA node b trusts in tls.ca: the signature was checked.
  const applied = await logB.waitFor('CRL from the cluster applied', { crlNumber: crlNumber.toString() });
  assert.equal(applied.obj.verified, true);

  // b's TLS layer still has its old CRL: the handshake passes, the CONNECT is refused.
  assert.deepEqual(await tryMqttConnect(b.tlsPort, { ...tlsOf('rev-v5'), clientId: 'rev-v5', protocolVersion: 5 }), { connack: 0x87 });
  // a refuses it in the TLS handshake (its own CRL).
  const onA = await tryMqttConnect(a.tlsPort, { ...tlsOf('rev-v5'), clientId: 'rev-v5', protocolVersion: 5 });
  assert.ok('closed' in onA, JSON.stringify(onA));

  assert.equal(bystander.connected, true);
  await roundTrip(bystander, 'rev/still-here');
});

test('SECURITY: entries someone else writes into the bucket are checked: junk, a CRL under another key, a forged signature, a replayed older CRL and an unknown kind are logged and ignored', async () => {
  const bystander = await device(b, 'rev-bystander', 5);
  const kv = await bucket();
  const ca = await testCa();
  const key = crlKeyOf(new X509Certificate(ca.certPem).subject);

  await kv.put('crl.0123456789abcdef', 'not a CRL at all');
  await logB.waitFor('a CRL entry of the cluster is not one readable CRL; ignored', { key: 'crl.0123456789abcdef' });

  // A genuine CRL revoking the bystander, but under a key that is not its issuer's.
  await kv.put('crl.00000000000000000000', await signCrl(ca, [serialOf('rev-bystander')], 1000n));
  await logB.waitFor("a CRL entry of the cluster sits under another issuer's key; ignored", { key: 'crl.00000000000000000000' });

  // The first CRL (nothing revoked) again: it would lift the revocations.
  await kv.put(key, await signCrl(ca, [], 1n));
  await logB.waitFor('SECURITY: a CRL entry of the cluster is older than the one in force; ignored', { key });

  // A CA with the same name but another key: its CRL would revoke the bystander.
  const forger = await createRootCa({ commonName: 'Bastion Test CA' });
  await kv.put(key, await signCrl(forger, [serialOf('rev-bystander')], 1001n));
  await logB.waitFor("SECURITY: a CRL entry of the cluster does not verify against its issuer's certificate; ignored", { key });

  await kv.put('nosuchkind.x', 'whatever');
  await logB.waitFor('shared security state: an entry of no known kind; ignored', { key: 'nosuchkind.x' });

  // Nothing of it took: the bystander is connected, the revoked device still refused.
  assert.equal(bystander.connected, true);
  await roundTrip(bystander, 'rev/after-junk');
  assert.deepEqual(await tryMqttConnect(b.tlsPort, { ...tlsOf('rev-v5'), clientId: 'rev-v5', protocolVersion: 5 }), { connack: 0x87 });

  // The forged entry (with its higher CRL number) does not hold back the next genuine revocation.
  const next = await device(b, 'rev-after-forgery', 5);
  const closed = new Promise<void>((resolve) => next.once('close', () => resolve()));
  await revokeOnA('rev-after-forgery');
  await withTimeout(closed, 2000, 'a device revoked after the forgery disconnected on node b');
  await endQuietly(bystander);
});

test('fail closed at start: a node started later, with no CRL of its own, refuses a revoked device from its first CONNECT (junk in the bucket does not stop it)', async () => {
  const late = await startTestBroker({ clients: CLIENTS, cluster: { nats: { servers: [nats.url] }, nodeId: 'rev-c' } });
  try {
    assert.deepEqual(await tryMqttConnect(late.tlsPort, { ...tlsOf('rev-v3'), clientId: 'rev-v3', protocolVersion: 5 }), { connack: 0x87 });
    const fine = await device(late, 'rev-late', 5);
    await roundTrip(fine, 'rev/late');
    await endQuietly(fine);
  } finally {
    await late.stop();
  }
});

test('a revocation made while NATS is down reaches node b once NATS is back: a sends it again, b reads the bucket again and disconnects the device', async (t: TestContext) => {
  const victim = await device(b, 'rev-outage', 5);
  const closed = new Promise<void>((resolve) => victim.once('close', () => resolve()));
  const statusA = statusOf(a);
  const statusB = statusOf(b);
  await nats.kill();
  await statusA.waitFor((e) => e.some((x) => x.type === 'disconnect'), 10000, 'node a sees NATS go');
  await statusB.waitFor((e) => e.some((x) => x.type === 'disconnect'), 10000, 'node b sees NATS go');
  await revokeOnA('rev-outage');
  await logA.waitFor('CRL not shared with the cluster (sent again after the next NATS reconnect)', {}, 15000);
  assert.equal(victim.connected, true, 'b cannot know yet');

  await nats.restart();
  await statusB.waitFor((e) => e.some((x) => x.type === 'reconnect'), 15000, 'node b reconnects');
  const back = performance.now();
  await withTimeout(closed, 10000, 'the device revoked during the outage is disconnected on node b');
  t.diagnostic(`node b reconnected → device revoked during the outage closed after ${Math.round(performance.now() - back)} ms`);
  await logB.waitFor('client certificate revoked: session disconnected', { clientId: 'rev-outage', source: 'cluster' }, 10000);
  assert.deepEqual(await tryMqttConnect(b.tlsPort, { ...tlsOf('rev-outage'), clientId: 'rev-outage', protocolVersion: 5 }), { connack: 0x87 });
});
