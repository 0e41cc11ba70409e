/**
 * Hot reload of the TLS files: a rotated server certificate (atomic rename, or a
 * Kubernetes-style `..data` symlink swap) is served to new handshakes while connected
 * clients stay connected; a broken file is refused, logged, and the old context stays;
 * a changed CRL is applied and handed to the onCrlLoaded hook.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createCrl, issueLocalServerCertificate } from '../../src/pki/index.js';
import type { ReloadResult } from '../../src/transport/tls-context.js';
import { makeTestPki, testCa, type TestPki } from '../helpers/pki.js';
import { connectMqtt, endQuietly, Inbox, inboxOf } from './support.js';
import { clientTls, startTlsBroker, tlsHandshake, tryMqttConnect, type TlsBroker } from './tls-support.js';

/** The serial number of the certificate a new handshake gets. */
async function servedSerial(b: TlsBroker): Promise<string> {
  const socket = await tlsHandshake(b.port, { ...clientTls(b.pki, b.pki.clients.client1!) });
  const serial = socket.getPeerCertificate().serialNumber;
  socket.destroy();
  return serial;
}

function serialOf(pem: string): string {
  return new X509Certificate(pem).serialNumber;
}

/** Writes `text` to a temporary name and renames it over `path` (how tools replace files atomically). */
function replaceAtomically(path: string, text: string): void {
  writeFileSync(`${path}.tmp`, text, { mode: 0o600 });
  renameSync(`${path}.tmp`, path);
}

function reloadsOf(b: TlsBroker): Inbox<ReloadResult> {
  const inbox = new Inbox<ReloadResult>();
  b.tls.onReload((r) => inbox.push(r));
  return inbox;
}

describe('reload by atomic rename', () => {
  let dir: string;
  let pki: TestPki;
  let b: TlsBroker;
  let certPath: string;
  let keyPath: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'bastion-tls-reload-'));
    pki = await makeTestPki(join(dir, 'pki'), ['client1']);
    mkdirSync(join(dir, 'tls'));
    certPath = join(dir, 'tls', 'server.crt');
    keyPath = join(dir, 'tls', 'server.key');
    writeFileSync(certPath, readFileSync(pki.serverCert));
    writeFileSync(keyPath, readFileSync(pki.serverKey), { mode: 0o600 });
    b = await startTlsBroker({ dir, pki, tls: { cert: certPath, key: keyPath } });
  });
  after(async () => {
    await b.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a rotated certificate is served to new handshakes; a connected client stays and can publish', async () => {
    const oldSerial = serialOf(readFileSync(certPath, 'utf8'));
    assert.equal(await servedSerial(b), oldSerial);
    const client = await connectMqtt(`mqtts://127.0.0.1:${b.port}`, { ...clientTls(b.pki, b.pki.clients.client1!), servername: 'localhost', clientId: 'stays', protocolVersion: 5 });
    try {
      const received = inboxOf(client);
      await client.subscribeAsync('reload/t', { qos: 1 });
      const reloads = reloadsOf(b);
      const fresh = await issueLocalServerCertificate(await testCa());
      replaceAtomically(keyPath, fresh.keyPem);
      replaceAtomically(certPath, fresh.certPem);
      await reloads.waitFor((rs) => rs.some((r) => r.ok && r.changed.includes('cert')), 5000, 'a successful reload');
      assert.equal(await servedSerial(b), serialOf(fresh.certPem));
      assert.equal(client.connected, true);
      await client.publishAsync('reload/t', 'after rotation', { qos: 1 });
      await received.waitFor((ms) => ms.some((m) => m.payload === 'after rotation'), 5000, 'the message published after the rotation');
    } finally {
      await endQuietly(client);
    }
  });

  test('a broken certificate is refused and logged; the last good one is still served', async () => {
    const before = await servedSerial(b);
    const reloads = reloadsOf(b);
    replaceAtomically(certPath, '-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n');
    await reloads.waitFor((rs) => rs.some((r) => !r.ok), 5000, 'a refused reload');
    await b.logger.waitFor('TLS reload refused; keeping the current certificates', { listener: 'mqtts' });
    assert.equal(await servedSerial(b), before);
  });

  test('a key that does not match the certificate is refused; the last good pair is still served', async () => {
    const good = await issueLocalServerCertificate(await testCa());
    const other = await issueLocalServerCertificate(await testCa());
    const reloads = reloadsOf(b);
    replaceAtomically(keyPath, other.keyPem);
    replaceAtomically(certPath, good.certPem);
    await reloads.waitFor((rs) => rs.some((r) => !r.ok && /key values mismatch|unusable/.test(r.error)), 5000, 'a refused mismatched pair');
    assert.notEqual(await servedSerial(b), serialOf(good.certPem));
    // Fixing the key completes the rotation.
    const fixed = reloadsOf(b);
    replaceAtomically(keyPath, good.keyPem);
    await fixed.waitFor((rs) => rs.some((r) => r.ok), 5000, 'the reload after the key was fixed');
    assert.equal(await servedSerial(b), serialOf(good.certPem));
  });
});

describe('reload by Kubernetes-style symlink swap', () => {
  let dir: string;
  let b: TlsBroker;
  let mount: string;
  /** Writes a timestamped directory with the pair and points `..data` at it, atomically. */
  const publish = (name: string, certPem: string, keyPem: string): void => {
    mkdirSync(join(mount, name));
    writeFileSync(join(mount, name, 'tls.crt'), certPem);
    writeFileSync(join(mount, name, 'tls.key'), keyPem, { mode: 0o600 });
    symlinkSync(name, join(mount, '..data_tmp'));
    renameSync(join(mount, '..data_tmp'), join(mount, '..data'));
  };
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'bastion-tls-k8s-'));
    const pki = await makeTestPki(join(dir, 'pki'), ['client1']);
    mount = join(dir, 'secret');
    mkdirSync(mount);
    publish('..2026_11_26_01', readFileSync(pki.serverCert, 'utf8'), readFileSync(pki.serverKey, 'utf8'));
    symlinkSync('..data/tls.crt', join(mount, 'tls.crt'));
    symlinkSync('..data/tls.key', join(mount, 'tls.key'));
    b = await startTlsBroker({ dir, pki, tls: { cert: join(mount, 'tls.crt'), key: join(mount, 'tls.key') } });
  });
  after(async () => {
    await b.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('swapping ..data to a new directory rotates the served certificate', async () => {
    const reloads = reloadsOf(b);
    const fresh = await issueLocalServerCertificate(await testCa());
    publish('..2026_11_26_02', fresh.certPem, fresh.keyPem);
    await reloads.waitFor((rs) => rs.some((r) => r.ok && r.changed.includes('cert') && r.changed.includes('key')), 5000, 'the reload after the swap');
    assert.equal(await servedSerial(b), serialOf(fresh.certPem));
  });
});

describe('CRL reload', () => {
  test('a new CRL is applied to new handshakes and handed to onCrlLoaded', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bastion-tls-crl-'));
    try {
      const pki = await makeTestPki(join(dir, 'pki'), ['client1', 'victim']);
      const crlPath = join(dir, 'crl.pem');
      const nextUpdate = new Date(Date.now() + 86_400_000);
      writeFileSync(crlPath, await createCrl({ ca: await testCa(), entries: [], crlNumber: 1n, nextUpdate }));
      const b = await startTlsBroker({ dir, pki, tls: { crl: crlPath } });
      try {
        const loaded = new Inbox<string>();
        b.tls.onCrlLoaded((pem) => loaded.push(pem));
        await loaded.waitForCount(1, 1000, 'the CRL at registration (already attached)');
        const victim = clientTls(pki, pki.clients.victim!);
        assert.deepEqual(await tryMqttConnect(b.port, { ...victim, clientId: 'victim-1' }), { connack: 0 });
        const serialNumber = new X509Certificate(victim.cert).serialNumber;
        const revoking = await createCrl({ ca: await testCa(), entries: [{ serialNumber, revokedAt: new Date() }], crlNumber: 2n, nextUpdate });
        replaceAtomically(crlPath, revoking);
        await loaded.waitForCount(2, 5000, 'the CRL after reload');
        assert.equal(loaded.items[1], revoking);
        const outcome = await tryMqttConnect(b.port, { ...victim, clientId: 'victim-2' });
        assert.ok('closed' in outcome, JSON.stringify(outcome));
        await b.logger.waitFor('TLS handshake failed', { reason: 'certificate revoked' });
      } finally {
        await b.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
