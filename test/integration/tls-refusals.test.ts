/**
 * Client certificates that must not get in: unknown CA, expired, a server certificate
 * used as a client certificate, revoked (tls.crl), none at all. Each is refused before
 * MQTT starts, and each refusal is logged with the listener, the remote address and
 * OpenSSL's reason. With `clientCerts: optional`, a bad certificate is refused too
 * (never downgraded to anonymous).
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createCrl, createIntermediateCa, createRootCa, issueCertificate } from '../../src/pki/index.js';
import { issueClient, makeTestPki, testCa, type TestClientFiles, type TestPki } from '../helpers/pki.js';
import { clientTls, startTlsBroker, tryMqttConnect, type TlsBroker } from './tls-support.js';

async function writeIssued(pki: TestPki, name: string, issued: { certPem: string; keyPem: string }): Promise<TestClientFiles> {
  const files = { cert: join(pki.dir, `${name}.crt`), key: join(pki.dir, `${name}.key`) };
  await writeFile(files.cert, issued.certPem);
  await writeFile(files.key, issued.keyPem, { mode: 0o600 });
  return files;
}

async function expectRefusedAndLogged(b: TlsBroker, files: TestClientFiles, clientId: string, reason: string): Promise<void> {
  const outcome = await tryMqttConnect(b.port, { ...clientTls(b.pki, files), clientId });
  assert.ok('closed' in outcome, `expected no CONNACK, got ${JSON.stringify(outcome)}`);
  const line = await b.logger.waitFor('TLS handshake failed', { listener: 'mqtts', reason });
  assert.match(String(line.obj.remote), /127\.0\.0\.1/, JSON.stringify(line));
}

const DAY = 86_400_000;

interface RefusalFixture {
  dir: string;
  pki: TestPki;
  /** The test CA and an "old" CA created ten days ago (to issue an expired certificate). */
  caBundle: string;
  /** One CRL per CA; the test CA's revokes `revoked`. */
  crl: string;
  expired: TestClientFiles;
  revoked: TestClientFiles;
}

async function makeFixture(): Promise<RefusalFixture> {
  const dir = mkdtempSync(join(tmpdir(), 'bastion-tls-refusals-'));
  const pki = await makeTestPki(join(dir, 'pki'), ['client1', 'good']);
  const oldCa = await createRootCa({ commonName: 'Bastion Old Test CA', now: new Date(Date.now() - 10 * DAY) });
  const expired = await writeIssued(pki, 'expired-dev', await issueCertificate({ ca: oldCa, profile: 'client', commonName: 'expired-dev', now: new Date(Date.now() - 5 * DAY), days: 1 }));
  const revoked = await issueClient(pki, 'revoked-dev');
  const caBundle = join(dir, 'ca-bundle.pem');
  await writeFile(caBundle, `${await readFile(pki.caCert, 'utf8')}${oldCa.certPem}`);
  const serialNumber = new X509Certificate(await readFile(revoked.cert)).serialNumber;
  const nextUpdate = new Date(Date.now() + DAY);
  const crl = join(dir, 'crl.pem');
  // With a CRL, OpenSSL checks every CA of a chain: each CA needs its own CRL in the file.
  await writeFile(
    crl,
    (await createCrl({ ca: await testCa(), entries: [{ serialNumber, revokedAt: new Date() }], crlNumber: 1n, nextUpdate })) +
      (await createCrl({ ca: oldCa, entries: [], crlNumber: 1n, nextUpdate })),
  );
  return { dir, pki, caBundle, crl, expired, revoked };
}

describe('refused client certificates (clientCerts: required)', () => {
  let f: RefusalFixture;
  let b: TlsBroker;
  before(async () => {
    f = await makeFixture();
    b = await startTlsBroker({ dir: f.dir, pki: f.pki, tls: { ca: f.caBundle, crl: f.crl } });
  });
  after(async () => {
    await b.stop();
    rmSync(f.dir, { recursive: true, force: true });
  });

  test('a certificate from an unknown CA', async () => {
    const other = await createRootCa({ commonName: 'Some Other CA' });
    const files = await writeIssued(b.pki, 'stranger', await issueCertificate({ ca: other, profile: 'client', commonName: 'stranger' }));
    await expectRefusedAndLogged(b, files, 'stranger', 'unknown ca');
  });

  test('an expired certificate', async () => {
    await expectRefusedAndLogged(b, f.expired, 'expired-dev', 'certificate has expired');
  });

  test('a server certificate used as a client certificate (EKU serverAuth only)', async () => {
    const files = await writeIssued(b.pki, 'server-as-client', await issueCertificate({ ca: await testCa(), profile: 'server', commonName: 'server-as-client' }));
    await expectRefusedAndLogged(b, files, 'server-as-client', 'unsupported certificate purpose');
  });

  test('a revoked certificate (tls.crl)', async () => {
    await expectRefusedAndLogged(b, f.revoked, 'revoked-dev', 'certificate revoked');
  });

  test('no certificate at all', async () => {
    const outcome = await tryMqttConnect(b.port, { ca: await readFile(b.pki.caCert), clientId: 'nocert' });
    assert.ok('closed' in outcome, JSON.stringify(outcome));
    await b.logger.waitFor('TLS handshake failed', { listener: 'mqtts', reason: 'certificate' });
  });

  test('a good certificate still gets in with the CRL in place', async () => {
    assert.deepEqual(await tryMqttConnect(b.port, { ...clientTls(b.pki, b.pki.clients.good!), clientId: 'good' }), { connack: 0 });
  });
});

describe('clientCerts: optional', () => {
  let f: RefusalFixture;
  let b: TlsBroker;
  before(async () => {
    f = await makeFixture();
    b = await startTlsBroker({ dir: f.dir, pki: f.pki, tls: { ca: f.caBundle, clientCerts: 'optional' }, listener: { allowAnonymous: true } });
  });
  after(async () => {
    await b.stop();
    rmSync(f.dir, { recursive: true, force: true });
  });

  test('no certificate is anonymous, a good one is its CN', async () => {
    assert.deepEqual(await tryMqttConnect(b.port, { ca: await readFile(b.pki.caCert), clientId: 'anon' }), { connack: 0 });
    assert.equal((await b.logger.waitFor('client connected', { clientId: 'anon' })).obj.principal, null);
    assert.deepEqual(await tryMqttConnect(b.port, { ...clientTls(b.pki, b.pki.clients.client1!), clientId: 'c1' }), { connack: 0 });
    assert.equal((await b.logger.waitFor('client connected', { clientId: 'c1' })).obj.principal, 'client1');
  });

  test('an expired certificate is refused, not treated as anonymous', async () => {
    await expectRefusedAndLogged(b, f.expired, 'expired-opt', 'certificate has expired');
  });
});

describe('CRLs with an intermediate CA', () => {
  test('one crl.pem with the intermediate\'s and the root\'s CRL admits a good client and refuses a revoked one', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bastion-tls-crl-chain-'));
    try {
      const pki = await makeTestPki(join(dir, 'pki'), ['client1']);
      const root = await createRootCa({ commonName: 'Chain Root', pathLength: 1 });
      const inter = await createIntermediateCa({ root, commonName: 'Chain Issuing CA' });
      const good = await issueCertificate({ ca: inter, profile: 'client', commonName: 'chain-good' });
      const bad = await issueCertificate({ ca: inter, profile: 'client', commonName: 'chain-bad' });
      const nextUpdate = new Date(Date.now() + DAY);
      const badSerial = new X509Certificate(bad.certPem).serialNumber;
      const crl = join(dir, 'crl.pem');
      // Node reads only the first CRL of a PEM string: the listener must split the file.
      await writeFile(crl, (await createCrl({ ca: inter, entries: [{ serialNumber: badSerial, revokedAt: new Date() }], crlNumber: 1n, nextUpdate })) + (await createCrl({ ca: root, entries: [], crlNumber: 1n, nextUpdate })));
      const caFile = join(dir, 'chain-root.crt');
      await writeFile(caFile, root.certPem);
      const goodFiles = await writeIssued(pki, 'chain-good', { certPem: good.certPem + inter.certPem, keyPem: good.keyPem });
      const badFiles = await writeIssued(pki, 'chain-bad', { certPem: bad.certPem + inter.certPem, keyPem: bad.keyPem });
      const b = await startTlsBroker({ dir, pki, tls: { ca: caFile, crl } });
      try {
        const serverCa = await readFile(pki.caCert);
        assert.deepEqual(await tryMqttConnect(b.port, { cert: await readFile(goodFiles.cert), key: await readFile(goodFiles.key), ca: serverCa, clientId: 'chain-good' }), { connack: 0 });
        const outcome = await tryMqttConnect(b.port, { cert: await readFile(badFiles.cert), key: await readFile(badFiles.key), ca: serverCa, clientId: 'chain-bad' });
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
