/**
 * Provisioning over MQTT end to end (issue 13), against a real broker with the built-in
 * PKI: a claim certificate turns a CSR into a device certificate whose identity comes from
 * the template (not the CSR's subject); the device reconnects with it and reaches its own
 * topics only; the same with a one-time token (which then works no more); the step-1
 * placeholder certificate can do nothing (confined, refused, one day); a claim is confined to the provisioning topics
 * whatever the ACL says; answers reach only the requester. Renewal: CONNACK says when the
 * certificate is due, a CSR for a new key over the device's own topic gives a new
 * certificate, and its first use revokes the old one.
 *
 * No sleeps: every wait is on a packet, an answer or a log line, with a timeout.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import type { MqttClient } from 'mqtt';
import { startProvisioningBroker, type ProvisioningBroker } from '../helpers/provisioning-broker.js';
import { ask, CSR_TOPIC, provisionThrough, pubackCode, statusOf } from './provisioning-support.js';
import { createCsrWithKey } from '../../src/pki/index.js';

describe('provisioning by claim and by token', () => {
  let b: ProvisioningBroker;
  const open: MqttClient[] = [];
  before(async () => {
    b = await startProvisioningBroker();
  });
  after(async () => {
    for (const c of open) c.end(true);
    await b.stop();
  });

  test('a claim provisions a device: identity from the template, the step-1 placeholder useless, own topics only', async () => {
    const claim = await b.claim('sensor', { maxDevices: 5 });
    const factory = await b.connect({ clientId: 'factory-1', cert: claim.cert, key: claim.key });
    open.push(factory);
    const { keyPem, created, registered } = await provisionThrough(factory, 'ABC123');
    assert.equal(registered.identity, 'sensor-ABC123');
    assert.deepEqual(registered.roles, ['sensor']);
    const leaf = new X509Certificate(String(registered.certificatePem));
    assert.match(leaf.subject, /CN=sensor-ABC123/);
    assert.match(leaf.subject, /OU=sensors/);
    assert.match(leaf.subjectAltName ?? '', /URI:urn:bastion:sensor:ABC123/);
    // The step-1 placeholder is left to expire (one day), and it can do nothing meanwhile.
    assert.equal(await statusOf(b, String(created.certificateId)), 'valid');
    const placeholder = await b.connect({ clientId: 'placeholder-1', cert: String(created.certificatePem), key: keyPem });
    open.push(placeholder);
    assert.equal(await pubackCode(placeholder, 'devices/sensor-ABC123/telemetry'), 0x87, 'confined like a claim');
    const asked = await ask(placeholder, CSR_TOPIC, { certificateSigningRequest: (await createCsrWithKey({ commonName: 'p' })).csrPem });
    assert.equal(asked.body.errorCode, 'InvalidToken', 'and refused there: it is not a claim');
    assert.ok(new X509Certificate(String(created.certificatePem)).validToDate.getTime() - Date.now() <= 86_400_000 + 60_000, 'it lasts a day');

    const device = await b.connect({ clientId: 'sensor-ABC123', cert: String(registered.certificatePem), key: keyPem });
    open.push(device);
    assert.equal(await pubackCode(device, 'devices/sensor-ABC123/telemetry', '21.5'), 0, 'its own topic');
    assert.equal(await pubackCode(device, 'devices/sensor-OTHER/telemetry'), 0x87, 'another device\'s topic');
  });

  test('a one-time token provisions once; the second use is refused at CONNECT', async () => {
    const token = b.token('sensor');
    const factory = await b.connect({ clientId: 'token-client-1', username: '$provision', password: token });
    open.push(factory);
    const { registered } = await provisionThrough(factory, 'TOK001');
    assert.equal(registered.identity, 'sensor-TOK001');
    factory.end(true);
    await assert.rejects(b.connect({ clientId: 'token-client-2', username: '$provision', password: token }), /Bad User Name or Password|bad user name/i);
  });

  test('a claim is confined to the provisioning topics whatever the ACL says, and answers reach only the requester', async () => {
    const claim = await b.claim('sensor');
    const factory = await b.connect({ clientId: 'factory-2', cert: claim.cert, key: claim.key });
    open.push(factory);
    assert.equal(await pubackCode(factory, 'devices/claim-anything/x'), 0x87);
    const granted = await factory.subscribeAsync(['#', 'devices/#', '$bastion/certs/x/#'], { qos: 1 }).then(
      (g) => g.map((x) => x.qos),
      (err: { packet?: { granted?: number[] } }) => err.packet?.granted,
    );
    assert.deepEqual(granted, [0x87, 0x87, 0x87]);
    // A second claim listening on the answer topics hears nothing of the first one's exchange.
    const other = await b.connect({ clientId: 'factory-3', cert: (await b.claim('sensor')).cert, key: claim.key }).catch(() => null);
    assert.equal(other, null, 'a claim certificate with the wrong key does not connect');
    const eavesdropper = await b.connect({ clientId: 'factory-4', ...(await b.claim('sensor')) });
    open.push(eavesdropper);
    await eavesdropper.subscribeAsync(`${CSR_TOPIC}/#`, { qos: 1 });
    const heard: string[] = [];
    eavesdropper.on('message', (t) => heard.push(t));
    const { registered } = await provisionThrough(factory, 'EAV001');
    assert.equal(registered.identity, 'sensor-EAV001');
    // The eavesdropper's own round trip proves its subscription is live and ordered after ours.
    const ping = await ask(eavesdropper, CSR_TOPIC, { certificateSigningRequest: 'not a csr' });
    assert.equal(ping.body.errorCode, 'InvalidCsr');
    assert.deepEqual(heard.filter((t) => t.endsWith('/accepted')), [], 'nobody else received the certificate or the token');
  });
});
