/**
 * One TLS session ticket key for the cluster (issue 12): two in-process nodes (a, b), each
 * with its own data directory and so its own ticket key file, over one real nats-server
 * 2.9.10 with JetStream. They agree on one key at start, so a TLS session (1.3 and 1.2)
 * made with one node resumes with the other and keeps its certificate identity; a key
 * rotated on one node is installed on the other within 1 s (measured); junk or a
 * far-future key written into the bucket by someone else is refused and overwritten with
 * the nodes' key. Control: before the nodes agree, a's ticket does not resume on b.
 *
 * No sleeps: every wait is on an event (a log line, a handshake) with a timeout.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type tls from 'node:tls';
import { connect as natsConnect, type NatsConnection } from '@nats-io/transport-node';
import { Kvm, type KV } from '@nats-io/kv';
import { STATE_BUCKET } from '../../src/cluster/shared-state.js';
import { TICKET_ENTRY } from '../../src/server/cluster-tickets.js';
import { makeTestPki, type TestPki } from '../helpers/pki.js';
import { startNatsServer, type SingleNats } from '../helpers/nats-server.js';
import { withTimeout } from './support.js';
import { clientTls, connackOver, startTlsBroker, tlsHandshake, type TlsBroker } from './tls-support.js';

type Version = 'TLSv1.2' | 'TLSv1.3';

let nats: SingleNats;
let dir: string;
let pki: TestPki;
let a: TlsBroker;
let b: TlsBroker;
let nc: NatsConnection;
let kv: KV;

const keyFile = (node: TlsBroker): string => join(node.dir, 'data', 'tls-ticket-keys');
const keyHex = (node: TlsBroker): string => readFileSync(keyFile(node), 'utf8').trim().split(' ')[3]!;

function node(name: string): Promise<TlsBroker> {
  return startTlsBroker({ dir: join(dir, name), pki, cluster: { nats: { servers: [nats.url] }, nodeId: name } });
}

/** A full handshake with `node`; resolves the session to resume with. */
async function sessionFrom(target: TlsBroker, version: Version): Promise<Buffer> {
  const socket = await tlsHandshake(target.port, { ...clientTls(pki, pki.clients.client1!), minVersion: version, maxVersion: version });
  // TLS 1.2 delivers the ticket inside the handshake; TLS 1.3 sends it afterwards.
  const session = version === 'TLSv1.2' ? socket.getSession() : await withTimeout(new Promise<Buffer>((resolve) => socket.once('session', resolve)), 5000, 'a session ticket');
  assert.ok(session !== undefined, 'a TLS 1.2 session');
  socket.destroy();
  return session;
}

/** Whether a handshake with `target` offering `session` resumed it; with `clientId`, a CONNECT must then be admitted. */
async function resumes(target: TlsBroker, version: Version, session: Buffer, clientId?: string): Promise<boolean> {
  const socket: tls.TLSSocket = await tlsHandshake(target.port, { ...clientTls(pki, pki.clients.client1!), minVersion: version, maxVersion: version, session });
  try {
    if (clientId !== undefined) assert.equal(await connackOver(socket, clientId), 0);
    return socket.isSessionReused();
  } finally {
    socket.destroy();
  }
}

/** Writes a ticket key file as a rotation does (atomically, in the store's format). */
function rotateByHand(target: TlsBroker, createdAt: number): string {
  const key = randomBytes(48).toString('hex');
  const tmp = `${keyFile(target)}.hand.tmp`;
  writeFileSync(tmp, `bastion-ticket-key v1 ${createdAt} ${key}\n`, { mode: 0o600 });
  renameSync(tmp, keyFile(target));
  return key;
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'bastion-cluster-tickets-'));
  nats = await startNatsServer();
  pki = await makeTestPki(join(dir, 'pki'), ['client1']);
  a = await node('a');
  nc = await natsConnect({ servers: nats.url });
  kv = await new Kvm(nc).open(STATE_BUCKET);
});

after(async () => {
  await nc?.close();
  await b?.stop();
  await a?.stop();
  await nats?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('a node that joins adopts the cluster\'s key, or gives its newer one to the others', async () => {
  // The control first: a key b makes on its own (outside the cluster) does not resume a's tickets.
  const alone = await startTlsBroker({ dir: join(dir, 'alone'), pki });
  try {
    assert.equal(await resumes(alone, 'TLSv1.3', await sessionFrom(a, 'TLSv1.3')), false, 'without a shared key nothing resumes');
  } finally {
    await alone.stop();
  }
  const entry = await kv.get(TICKET_ENTRY);
  assert.ok(entry !== null && entry.operation === 'PUT', 'node a put its key into the bucket');
  assert.equal((JSON.parse(entry.string()) as { key: string }).key, keyHex(a));
  // b starts with a key of its own, made later than a's: it wins, and a installs it.
  const installedOnA = a.logger.waitFor('TLS session ticket key from the cluster installed', {}, 5000);
  b = await node('b');
  await installedOnA;
  assert.equal(keyHex(a), keyHex(b), 'both key files hold one key');
});

for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
  test(`${version}: a session made with one node resumes with the other, both ways, keeping the certificate identity`, async () => {
    const clientId = `resumed-across-${version}`;
    assert.equal(await resumes(b, version, await sessionFrom(a, version), clientId), true, 'a → b');
    assert.equal((await b.logger.waitFor('client connected', { clientId })).obj.principal, 'client1', 'the identity came with the resumed session');
    assert.equal(await resumes(a, version, await sessionFrom(b, version)), true, 'b → a');
  });
}

test('a key rotated on one node is installed on the other within 1 s', async () => {
  const before = b.logger.lines.items.filter((l) => l.msg === 'TLS session ticket key from the cluster installed').length;
  const installed = b.logger.lines.waitFor((ls) => ls.filter((l) => l.msg === 'TLS session ticket key from the cluster installed').length > before, 5000, 'the key on b');
  const started = performance.now();
  const key = rotateByHand(a, Date.now());
  await installed;
  const ms = performance.now() - started;
  assert.ok(ms < 1000, `installed after ${ms.toFixed(0)} ms`);
  assert.equal(keyHex(b), key);
  // b's listener follows its file: a ticket made with the new key on b resumes on a.
  const session = await sessionFrom(b, 'TLSv1.3');
  assert.equal(await resumes(a, 'TLSv1.3', session), true);
});

test('junk and a far-future key in the bucket are refused, and the nodes write their key back', async () => {
  const current = keyHex(a);
  for (const [value, why] of [
    ['{"v":1,"createdAt":1,"key":"00"}', 'key:'],
    [JSON.stringify({ v: 1, createdAt: Date.now() + 86_400_000, key: randomBytes(48).toString('hex') }), 'future'],
  ] as const) {
    const refused = a.logger.waitFor('shared security state: an entry could not be applied; ignored', { key: TICKET_ENTRY, err: why }, 5000);
    await kv.put(TICKET_ENTRY, value);
    await refused;
    const healed = await withTimeout(
      (async () => {
        for await (const e of await kv.watch({ key: TICKET_ENTRY })) {
          if (e.operation === 'PUT' && (JSON.parse(e.string()) as { key?: string }).key === current) return true;
        }
        return false;
      })(),
      5000,
      'the nodes\' key back in the bucket',
    );
    assert.equal(healed, true);
    assert.equal(keyHex(a), current, 'a kept its key');
    assert.equal(keyHex(b), current, 'b kept its key');
  }
});
