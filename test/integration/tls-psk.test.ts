/**
 * TLS-PSK: identities and keys from a YAML file; the PSK identity is the principal
 * (method 'psk'); mosquitto clients and Node's tls.connect (TLS 1.2 and 1.3) connect with
 * a key, a wrong key or unknown identity is refused and logged, short keys are a config
 * error, and the file is reloaded on change.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import type { ClientIdentity } from '../../src/broker/ports.js';
import type { ReloadResult } from '../../src/transport/tls-context.js';
import { createRootCa, issueCertificate } from '../../src/pki/index.js';
import { makeTestPki } from '../helpers/pki.js';
import { connectMqtt, endQuietly, Inbox, inboxOf, run } from './support.js';
import { clientTls, recordIdentities, startTlsBroker, tryMqttConnect, type TlsBroker } from './tls-support.js';

const KEY1 = '00112233445566778899aabbccddeeff';
const KEY2 = 'f0e1d2c3b4a5968778695a4b3c2d1e0f00112233445566778899aabbccddeeff';

function mosquittoPub(b: TlsBroker, identity: string, key: string, extra: string[] = []): ReturnType<typeof run> {
  return run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(b.port), '--psk', key, '--psk-identity', identity, '-i', identity, '-t', 'psk/t', '-m', `from ${identity}`, '-q', '1', ...extra]);
}

describe('TLS-PSK listener', () => {
  let dir: string;
  let pskFile: string;
  let b: TlsBroker;
  let identities: ClientIdentity[];
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'bastion-tls-psk-'));
    pskFile = join(dir, 'psk.yaml');
    writeFileSync(pskFile, `dev1: ${KEY1}\n`, { mode: 0o600 });
    const pki = await makeTestPki(join(dir, 'pki'), ['client1']);
    b = await startTlsBroker({ dir, pki, listener: { psk: { file: pskFile } } });
    identities = recordIdentities(b.server);
  });
  after(async () => {
    await b.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const version of ['tlsv1.2', 'tlsv1.3']) {
    test(`mosquitto_pub --psk (${version}) publishes, and a certificate subscriber receives it`, async () => {
      const sub = await connectMqtt(`mqtts://127.0.0.1:${b.port}`, { ...clientTls(b.pki, b.pki.clients.client1!), servername: 'localhost', clientId: `sub-${version}` });
      try {
        const inbox = inboxOf(sub);
        await sub.subscribeAsync('psk/t', { qos: 1 });
        const r = await mosquittoPub(b, 'dev1', KEY1, ['--tls-version', version]);
        assert.equal(r.code, 0, r.stderr);
        await inbox.waitFor((ms) => ms.some((m) => m.payload === 'from dev1'), 5000, 'the PSK client\'s message');
        const id = identities.find((i) => i.pskIdentity === 'dev1');
        assert.equal(id?.method, 'psk');
        assert.equal(id?.principal, 'dev1');
        assert.equal(id?.certificate, undefined);
      } finally {
        await endQuietly(sub);
      }
    });
  }

  test('a wrong key is refused and logged', async () => {
    const r = await mosquittoPub(b, 'dev1', 'ffffffffffffffffffffffffffffffff', ['--tls-version', 'tlsv1.2']);
    assert.notEqual(r.code, 0);
    const line = await b.logger.waitFor('TLS handshake failed', { listener: 'mqtts' });
    assert.match(String(line.obj.remote), /127\.0\.0\.1/);
  });

  test('an unknown identity is refused and logged with the identity', async () => {
    const r = await mosquittoPub(b, 'nobody', KEY1, ['--tls-version', 'tlsv1.2']);
    assert.notEqual(r.code, 0);
    await b.logger.waitFor('unknown TLS-PSK identity', { pskIdentity: 'nobody', listener: 'mqtts' });
  });

  for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
    test(`MQTT.js with a pskCallback over ${version}`, async () => {
      const outcome = await tryMqttConnect(b.port, {
        clientId: `node-psk-${version}`,
        minVersion: version,
        maxVersion: version,
        ciphers: version === 'TLSv1.2' ? 'ECDHE-PSK-CHACHA20-POLY1305:PSK-AES128-GCM-SHA256' : 'TLS_AES_128_GCM_SHA256',
        pskCallback: () => ({ identity: 'dev1', psk: Buffer.from(KEY1, 'hex') }),
        // No certificate in a PSK handshake: the key itself authenticates the server.
        checkServerIdentity: () => undefined,
      } as never);
      assert.deepEqual(outcome, { connack: 0 });
      const id = identities.find((i) => i.pskIdentity === 'dev1' && i.remoteAddress !== '' && identities.indexOf(i) === identities.length - 1);
      assert.equal(id?.principal, 'dev1');
    });
  }

  for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
    test(`a resumed TLS-PSK session (${version}) keeps its PSK identity`, async () => {
      const options = {
        minVersion: version,
        maxVersion: version,
        ciphers: version === 'TLSv1.2' ? 'ECDHE-PSK-CHACHA20-POLY1305' : 'TLS_AES_128_GCM_SHA256',
        pskCallback: () => ({ identity: 'dev1', psk: Buffer.from(KEY1, 'hex') }),
        checkServerIdentity: () => undefined,
        servername: 'localhost',
      };
      // The first connection is a full PSK handshake; keep the ticket the broker issues.
      const tickets = new Inbox<Buffer>();
      const first = await connectMqtt(`mqtts://127.0.0.1:${b.port}`, { ...options, clientId: `psk-first-${version}` } as never, 5000, (c) => {
        c.stream.on('session', (ticket: Buffer) => tickets.push(ticket));
      });
      const [ticket] = await tickets.waitFor((t) => t.length > 0, 5000, 'a session ticket');
      await endQuietly(first);

      const resumed = await connectMqtt(`mqtts://127.0.0.1:${b.port}`, { ...options, session: ticket, clientId: `psk-resumed-${version}` } as never);
      try {
        assert.equal((resumed.stream as import('node:tls').TLSSocket).isSessionReused(), true, 'the session was resumed');
        const id = identities.find((i) => i.remoteAddress !== '' && identities.indexOf(i) === identities.length - 1);
        assert.equal(id?.method, 'psk');
        assert.equal(id?.principal, 'dev1');
      } finally {
        await endQuietly(resumed);
      }
    });
  }

  test('the PSK file is reloaded on change: a new identity gets in', async () => {
    const reloads = new Inbox<ReloadResult>();
    b.tls.onReload((r) => reloads.push(r));
    writeFileSync(pskFile, `dev1: ${KEY1}\ndev2: ${KEY2}\n`);
    await reloads.waitFor((rs) => rs.some((r) => r.ok && r.changed.includes('psk')), 5000, 'the PSK reload');
    const r = await mosquittoPub(b, 'dev2', KEY2, ['--tls-version', 'tlsv1.2']);
    assert.equal(r.code, 0, r.stderr);
  });

  test('a PSK file with a short key is refused on reload; the old keys stay', async () => {
    const reloads = new Inbox<ReloadResult>();
    b.tls.onReload((r) => reloads.push(r));
    writeFileSync(pskFile, `dev1: ${KEY1}\nweak: 0011\n`);
    await reloads.waitFor((rs) => rs.some((r) => !r.ok && r.error.includes('at least 16')), 5000, 'the refused reload');
    const r = await mosquittoPub(b, 'dev2', KEY2, ['--tls-version', 'tlsv1.2']);
    assert.equal(r.code, 0, r.stderr);
  });

  test('a resumed TLS 1.3 PSK session whose identity left the PSK file is refused', async () => {
    const options = {
      minVersion: 'TLSv1.3',
      maxVersion: 'TLSv1.3',
      ciphers: 'TLS_AES_128_GCM_SHA256',
      pskCallback: () => ({ identity: 'dev1', psk: Buffer.from(KEY1, 'hex') }),
      checkServerIdentity: () => undefined,
      servername: 'localhost',
    };
    const tickets = new Inbox<Buffer>();
    const first = await connectMqtt(`mqtts://127.0.0.1:${b.port}`, { ...options, clientId: 'psk-gone-first' } as never, 5000, (c) => {
      c.stream.on('session', (ticket: Buffer) => tickets.push(ticket));
    });
    const [ticket] = await tickets.waitFor((t) => t.length > 0, 5000, 'a session ticket');
    await endQuietly(first);
    const reloads = new Inbox<ReloadResult>();
    b.tls.onReload((r) => reloads.push(r));
    writeFileSync(pskFile, `dev2: ${KEY2}\n`);
    await reloads.waitFor((rs) => rs.some((r) => r.ok && r.changed.includes('psk')), 5000, 'the PSK reload');
    const outcome = await tryMqttConnect(b.port, { ...options, session: ticket, clientId: 'psk-gone-resumed' } as never);
    assert.deepEqual(outcome, { closed: 'closed before CONNACK' });
    await b.logger.waitFor('resumed TLS-PSK session of an identity no longer in the PSK file', { pskIdentity: 'dev1', listener: 'mqtts' });
  });
});

test('a PSK key shorter than 16 bytes is a config error at start', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bastion-tls-psk-short-'));
  try {
    const pskFile = join(dir, 'psk.yaml');
    writeFileSync(pskFile, 'dev1: 00112233445566778899\n');
    await assert.rejects(startTlsBroker({ dir, listener: { psk: { file: pskFile } } }), (err: Error & { code?: string }) => err.code === 'ERR_CONFIG' && /dev1.*10 bytes; at least 16/.test(err.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a TLS handshake without PSK still works on a PSK listener (certificates and PSK side by side)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bastion-tls-psk-mixed-'));
  try {
    const pskFile = join(dir, 'psk.yaml');
    writeFileSync(pskFile, `dev1: ${KEY1}\n`);
    const b = await startTlsBroker({ dir, listener: { psk: { file: pskFile } } });
    try {
      assert.deepEqual(await tryMqttConnect(b.port, { ...clientTls(b.pki, b.pki.clients.client1!), clientId: 'cert-client' }), { connack: 0 });
      // SECURITY: a PSK listener verifies certificates itself (Node 24+ would drop PSK
      // handshakes with rejectUnauthorized): neither a certificate nor a PSK is refused,
      // and so is a certificate from a CA the listener does not trust.
      const { ca } = clientTls(b.pki, b.pki.clients.client1!);
      assert.deepEqual(await tryMqttConnect(b.port, { ca, clientId: 'nobody' }), { closed: 'closed before CONNACK' });
      await b.logger.waitFor('TLS handshake failed', { listener: 'mqtts', reason: 'no client certificate' });
      const otherCa = await createRootCa({ commonName: 'Some Other CA' });
      const stranger = await issueCertificate({ ca: otherCa, profile: 'client', commonName: 'client1' });
      assert.deepEqual(await tryMqttConnect(b.port, { cert: stranger.certPem, key: stranger.keyPem, ca, clientId: 'stranger' }), { closed: 'closed before CONNACK' });
      await b.logger.waitFor('TLS handshake failed', { listener: 'mqtts', reason: 'unknown ca' });
      void tls;
    } finally {
      await b.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
