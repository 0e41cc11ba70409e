/**
 * Certificate identity: the listener's `identity` mapping decides the principal, a
 * certificate without a value for it is refused with CONNACK 0x87 (v3: 5), and
 * `clientIdMustMatch` refuses another client id with 0x85 (v3: 2). Every refusal is logged.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import type { ClientIdentity } from '../../src/broker/ports.js';
import { issueClient, type TestClientFiles } from '../helpers/pki.js';
import { clientTls, startTlsBroker, tryMqttConnect, type TlsBroker } from './tls-support.js';

async function principalOf(b: TlsBroker, clientId: string): Promise<unknown> {
  const line = await b.logger.waitFor('client connected', { clientId });
  return line.obj.principal;
}

describe('identity: san-uri', () => {
  let b: TlsBroker;
  let withUri: TestClientFiles;
  before(async () => {
    b = await startTlsBroker({ listener: { identity: 'san-uri' } });
    withUri = await issueClient(b.pki, 'dev-uri', { sans: [{ type: 'uri', value: 'spiffe://bastion.test/device/7' }] });
  });
  after(() => b.stop());

  test('the URI SAN is the principal', async () => {
    assert.deepEqual(await tryMqttConnect(b.port, { ...clientTls(b.pki, withUri), clientId: 'uri-1', protocolVersion: 5 }), { connack: 0 });
    assert.equal(await principalOf(b, 'uri-1'), 'spiffe://bastion.test/device/7');
  });

  test('a certificate without a URI SAN is refused with 0x87 (v5) and 5 (v3.1.1), and logged', async () => {
    const noUri = clientTls(b.pki, b.pki.clients.client1!);
    assert.deepEqual(await tryMqttConnect(b.port, { ...noUri, clientId: 'no-uri-5', protocolVersion: 5 }), { connack: 0x87 });
    assert.deepEqual(await tryMqttConnect(b.port, { ...noUri, clientId: 'no-uri-4', protocolVersion: 4 }), { connack: 5 });
    const line = await b.logger.waitFor('client certificate has no value for the identity mapping', { clientId: 'no-uri-4', mapping: 'san-uri', listener: 'mqtts' });
    assert.match(String(line.obj.remote), /127\.0\.0\.1/);
  });
});

describe('identity: san-dns and subject', () => {
  test('san-dns maps the first DNS SAN', async () => {
    const b = await startTlsBroker({ listener: { identity: 'san-dns' } });
    try {
      const c = await issueClient(b.pki, 'dev-dns', { sans: [{ type: 'dns', value: 'sensor-9.devices.test' }] });
      assert.deepEqual(await tryMqttConnect(b.port, { ...clientTls(b.pki, c), clientId: 'dns-1' }), { connack: 0 });
      assert.equal(await principalOf(b, 'dns-1'), 'sensor-9.devices.test');
    } finally {
      await b.stop();
    }
  });

  test('subject maps the whole subject name, organizational unit included', async () => {
    const b = await startTlsBroker({ listener: { identity: 'subject' } });
    try {
      const c = await issueClient(b.pki, 'dev-ou', { organizationalUnit: 'sensors' });
      assert.deepEqual(await tryMqttConnect(b.port, { ...clientTls(b.pki, c), clientId: 'subj-1' }), { connack: 0 });
      const principal = String(await principalOf(b, 'subj-1'));
      assert.match(principal, /CN=dev-ou/);
      assert.match(principal, /OU=sensors/);
    } finally {
      await b.stop();
    }
  });
});

describe('clientIdMustMatch', () => {
  let b: TlsBroker;
  before(async () => {
    b = await startTlsBroker({ listener: { clientIdMustMatch: true } });
  });
  after(() => b.stop());

  test('the certificate CN as the client id is admitted', async () => {
    assert.deepEqual(await tryMqttConnect(b.port, { ...clientTls(b.pki, b.pki.clients.client1!), clientId: 'client1', protocolVersion: 5 }), { connack: 0 });
  });

  test('another client id is refused with 0x85 (v5) and 2 (v3.1.1), and logged', async () => {
    const tlsFiles = clientTls(b.pki, b.pki.clients.client1!);
    assert.deepEqual(await tryMqttConnect(b.port, { ...tlsFiles, clientId: 'impostor', protocolVersion: 5 }), { connack: 0x85 });
    assert.deepEqual(await tryMqttConnect(b.port, { ...tlsFiles, clientId: 'impostor4', protocolVersion: 4 }), { connack: 2 });
    await b.logger.waitFor('client id does not match the TLS identity', { clientId: 'impostor4', identity: 'client1', listener: 'mqtts' });
  });
});

describe('the identity details reach the broker', () => {
  test('serial, fingerprint, issuer, OU and SANs are carried with the principal', async () => {
    const b = await startTlsBroker();
    try {
      const c = await issueClient(b.pki, 'rich', { organizationalUnit: 'fleet-a', sans: [{ type: 'dns', value: 'rich.test' }, { type: 'email', value: 'ops@rich.test' }, { type: 'ip', value: '10.1.2.3' }] });
      const seen: ClientIdentity[] = [];
      b.server.broker.addAdmissionGuard((client) => {
        seen.push(client.identity);
        return null;
      });
      assert.deepEqual(await tryMqttConnect(b.port, { ...clientTls(b.pki, c), clientId: 'rich-1' }), { connack: 0 });
      const x509 = new X509Certificate(await readFile(c.cert));
      const identity = seen[0]!;
      assert.equal(identity.method, 'certificate');
      assert.equal(identity.principal, 'rich');
      assert.equal(identity.listener, 'mqtts');
      const cert = identity.certificate!;
      assert.equal(cert.commonName, 'rich');
      assert.equal(cert.serialNumber, x509.serialNumber);
      assert.equal(cert.fingerprint256, x509.fingerprint256);
      assert.equal(cert.issuer, 'CN=Bastion Test CA');
      assert.match(cert.subject, /CN=rich/);
      assert.deepEqual(cert.organizationalUnits, ['fleet-a']);
      assert.deepEqual(cert.sans, { dns: ['rich.test'], uri: [], ip: ['10.1.2.3'], email: ['ops@rich.test'] });
    } finally {
      await b.stop();
    }
  });
});
