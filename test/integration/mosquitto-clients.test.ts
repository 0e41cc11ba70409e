/**
 * Debian's mosquitto_pub / mosquitto_sub against a real Bastion over mutual TLS, for
 * MQTT 3.1.1 and 5.0: QoS 0/1/2 round trips, retained messages, and refusal of clients
 * without a certificate or with one from another CA (the TLS handshake fails, so no
 * CONNECT is ever read).
 *
 * Synchronisation without sleeps: mosquitto_sub runs with `-d` under `stdbuf -oL` (its
 * stdout is block-buffered on a pipe otherwise), and the test publishes only after the
 * subscriber printed "received SUBACK". `-C`/`-W` bound every subscriber, since
 * mosquitto_sub reconnects on its own.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createRootCa, issueCertificate } from '../../src/pki/index.js';
import { startTestBroker, type TestBroker } from '../helpers/broker.js';
import { killAllProcs, Proc, run, type ProcResult } from './support.js';

const VERSIONS = ['mqttv311', 'mqttv5'] as const;
type Version = (typeof VERSIONS)[number];

interface Received {
  topic: string;
  qos: number;
  retain: boolean;
  payload: string;
}

let broker: TestBroker;
let tmp: string;
let foreign: { cert: string; key: string };

function tlsArgs(client: { cert: string; key: string } | null): string[] {
  const args = ['-h', '127.0.0.1', '-p', String(broker.tlsPort), '--cafile', broker.pki.caCert];
  if (client !== null) args.push('--cert', client.cert, '--key', client.key);
  return args;
}

function uniqueTopic(prefix: string): string {
  return `${prefix}/${randomBytes(4).toString('hex')}`;
}

/** Starts mosquitto_sub and resolves once it has its SUBACK. */
async function startSub(version: Version, filter: string, qos: number, count: number, client: { cert: string; key: string } | null = broker.pki.clients.client1!): Promise<Proc> {
  const sub = Proc.spawn('stdbuf', ['-oL', 'mosquitto_sub', ...tlsArgs(client), '-V', version, '-t', filter, '-q', String(qos), '-C', String(count), '-W', '10', '-d', '-F', 'MSG %t %q %r %p'], {
    label: `mosquitto_sub ${version} ${filter}`,
  });
  sub.child.stdin?.end();
  await sub.waitForOutput(/received SUBACK/, 10000);
  return sub;
}

function pub(version: Version, topic: string, args: string[], client: { cert: string; key: string } | null = broker.pki.clients.client2!): Promise<ProcResult> {
  return run('mosquitto_pub', [...tlsArgs(client), '-V', version, '-t', topic, '-d', ...args], { timeoutMs: 10000 });
}

function messagesOf(out: string): Received[] {
  return out
    .split('\n')
    .filter((l) => l.startsWith('MSG '))
    .map((l) => {
      const [, topic, qos, retain, ...rest] = l.split(' ');
      return { topic: topic!, qos: Number(qos), retain: retain === '1', payload: rest.join(' ') };
    });
}

async function subResult(sub: Proc): Promise<Received[]> {
  const r = await sub.waitExit(15000);
  assert.equal(r.code, 0, `mosquitto_sub failed (code ${r.code}):\n${r.stdout}\n${r.stderr}`);
  return messagesOf(r.stdout);
}

before(async () => {
  broker = await startTestBroker({ clients: ['client1', 'client2'] });
  tmp = mkdtempSync(join(tmpdir(), 'bastion-mosq-'));
  // A client certificate with a familiar CN from a CA the broker does not trust.
  const otherCa = await createRootCa({ commonName: 'Some Other CA' });
  const leaf = await issueCertificate({ ca: otherCa, profile: 'client', commonName: 'client1' });
  foreign = { cert: join(tmp, 'foreign.crt'), key: join(tmp, 'foreign.key') };
  writeFileSync(foreign.cert, leaf.certPem);
  writeFileSync(foreign.key, leaf.keyPem, { mode: 0o600 });
});

after(async () => {
  await killAllProcs();
  await broker?.stop();
  if (tmp !== undefined) rmSync(tmp, { recursive: true, force: true });
});

for (const version of VERSIONS) {
  describe(`mosquitto clients, ${version}, mutual TLS`, () => {
    for (const qos of [0, 1, 2]) {
      test(`QoS ${qos} round trip`, async () => {
        const topic = uniqueTopic(`mosq/${version}/q${qos}`);
        const sub = await startSub(version, topic, qos, 1);
        const p = await pub(version, topic, ['-q', String(qos), '-m', `hello qos ${qos}`]);
        assert.equal(p.code, 0, p.stdout + p.stderr);
        // The publisher saw the whole acknowledgement flow of its QoS.
        if (qos === 1) assert.match(p.stdout, /received PUBACK/);
        if (qos === 2) assert.match(p.stdout, /received PUBREC[\s\S]*sending PUBREL[\s\S]*received PUBCOMP/);
        const got = await subResult(sub);
        assert.deepEqual(got, [{ topic, qos, retain: false, payload: `hello qos ${qos}` }]);
        if (qos === 2) assert.match(sub.stdout, /received PUBREL[\s\S]*sending PUBCOMP/);
      });
    }

    test('a retained message reaches a later mosquitto_sub -C 1', async () => {
      const topic = uniqueTopic(`mosq/${version}/retained`);
      const p = await pub(version, topic, ['-q', '1', '-r', '-m', 'kept for later']);
      assert.equal(p.code, 0, p.stdout + p.stderr);
      // Subscribing only now: the message must come from the retained store, flagged retain.
      const sub = Proc.spawn('mosquitto_sub', [...tlsArgs(broker.pki.clients.client1!), '-V', version, '-t', topic, '-q', '1', '-C', '1', '-W', '10', '-F', 'MSG %t %q %r %p']);
      sub.child.stdin?.end();
      assert.deepEqual(await subResult(sub), [{ topic, qos: 1, retain: true, payload: 'kept for later' }]);
      // Clear it (empty retained payload) and check a new subscriber gets nothing retained:
      // the first message it sees is a live one.
      const clear = await pub(version, topic, ['-q', '1', '-r', '-n']);
      assert.equal(clear.code, 0, clear.stdout + clear.stderr);
      const sub2 = await startSub(version, topic, 1, 1);
      assert.equal((await pub(version, topic, ['-q', '1', '-m', 'live'])).code, 0);
      assert.deepEqual(await subResult(sub2), [{ topic, qos: 1, retain: false, payload: 'live' }]);
    });

    test('a client without a certificate is refused in the TLS handshake', async () => {
      const topic = uniqueTopic(`mosq/${version}/nocert`);
      const sub = await startSub(version, topic, 1, 1);
      const refused = await pub(version, topic, ['-q', '1', '-m', 'from nobody'], null);
      assert.notEqual(refused.code, 0, `mosquitto_pub without a certificate succeeded:\n${refused.stdout}`);
      assert.doesNotMatch(refused.stdout, /received CONNACK/);
      // TLS 1.3: the server's alert arrives after the client's Finished, as OpenSSL reports.
      assert.match(refused.stdout + refused.stderr, /alert certificate required/);
      // A refused client cannot subscribe either: mosquitto_sub fails without a SUBACK.
      const refusedSub = await run('mosquitto_sub', [...tlsArgs(null), '-V', version, '-t', topic, '-C', '1', '-W', '5', '-d'], { timeoutMs: 10000 });
      assert.notEqual(refusedSub.code, 0);
      assert.doesNotMatch(refusedSub.stdout, /received CONNACK|SUBACK/);
      // Nothing of the refused publisher arrived: the first message is the next legitimate one.
      assert.equal((await pub(version, topic, ['-q', '1', '-m', 'legit'])).code, 0);
      assert.deepEqual(await subResult(sub), [{ topic, qos: 1, retain: false, payload: 'legit' }]);
    });

    test('a client certificate from a different CA is refused in the TLS handshake', async () => {
      const topic = uniqueTopic(`mosq/${version}/foreign`);
      const sub = await startSub(version, topic, 1, 1);
      const refused = await pub(version, topic, ['-q', '1', '-m', 'from a stranger'], foreign);
      assert.notEqual(refused.code, 0, `mosquitto_pub with a foreign certificate succeeded:\n${refused.stdout}`);
      assert.doesNotMatch(refused.stdout, /received CONNACK/);
      // Node's TLS server verifies the chain after the handshake and closes the socket without
      // an alert, so the client reports an EOF (or a reset), never a CONNACK.
      assert.match(refused.stdout + refused.stderr, /OpenSSL Error|connection was lost|reset/i);
      assert.equal((await pub(version, topic, ['-q', '1', '-m', 'legit'])).code, 0);
      assert.deepEqual(await subResult(sub), [{ topic, qos: 1, retain: false, payload: 'legit' }]);
    });
  });
}
