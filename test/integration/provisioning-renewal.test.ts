/**
 * Certificate renewal over MQTT end to end (issue 13), across a broker restart: a device
 * whose certificate is inside the renewal window is told so in its v5 CONNACK (user
 * property `bastion-cert-renew`) and on `$bastion/certs/<identity>/renewal-due`; it sends
 * a CSR for a new key on its own renew topic and gets a new certificate; the broker
 * restarts; the new certificate's first connection revokes the old one (superseded), after
 * which the old certificate is refused. Renewal is limited per day, and only the current
 * certificate may renew.
 *
 * No sleeps: every wait is on a packet, an answer or a log line, with a timeout.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import type { IConnackPacket, MqttClient } from 'mqtt';
import { createCsrWithKey } from '../../src/pki/index.js';
import { SENSOR_TEMPLATE, startProvisioningBroker, type ProvisioningBroker } from '../helpers/provisioning-broker.js';
import { RecordingLogger } from './tls-support.js';
import { ask, statusOf } from './provisioning-support.js';
import { connectMqtt, withTimeout } from './support.js';

/** Connects and resolves the CONNACK too (its user properties say whether renewal is due). */
async function connectWithConnack(b: ProvisioningBroker, clientId: string, cert: string, key: string): Promise<{ client: MqttClient; connack: IConnackPacket }> {
  let connack: IConnackPacket | undefined;
  const client = await connectMqtt(b.url, { ca: b.caPem, cert, key, clientId, protocolVersion: 5 }, 5000, (c) => c.once('connect', (ack) => (connack = ack)));
  return { client, connack: connack! };
}

let b: ProvisioningBroker;
const logger = new RecordingLogger();
const open: MqttClient[] = [];
after(async () => {
  for (const c of open) c.end(true);
  await b?.stop();
});

test('a due certificate is renewed over MQTT, survives a restart, and its first use revokes the old one', async () => {
  // A one-day certificate and a seven-day window: due from the start.
  b = await startProvisioningBroker({ templates: { sensor: { ...SENSOR_TEMPLATE, days: 1 } }, provisioning: { renewal: { windowDays: 7, graceHours: 24, maxPerDay: 2 } }, logger });
  const claim = await b.claim('sensor');
  const factory = await b.connect({ clientId: 'factory-renew', cert: claim.cert, key: claim.key });
  open.push(factory);
  const first = await createCsrWithKey({ commonName: 'x' });
  const created = await ask(factory, '$bastion/provision/certificates/create-from-csr/json', { certificateSigningRequest: first.csrPem });
  const reg = await ask(factory, '$bastion/provision/templates/sensor/provision/json', { certificateOwnershipToken: created.body.certificateOwnershipToken, parameters: { serialNumber: 'REN001' } });
  assert.ok(reg.topic.endsWith('/accepted'), JSON.stringify(reg.body));
  factory.end(true);
  const identity = 'sensor-REN001';
  const oldCert = String(reg.body.certificatePem);
  const oldSerial = String(reg.body.certificateId);

  // The device connects: CONNACK says renewal is due, and so does its renewal-due topic.
  const { client: device, connack } = await connectWithConnack(b, identity, oldCert, first.keyPem);
  open.push(device);
  const renewBy = connack.properties?.userProperties?.['bastion-cert-renew'];
  assert.equal(typeof renewBy, 'string', 'CONNACK carries bastion-cert-renew');
  assert.ok(Date.parse(String(renewBy)) > Date.now(), 'it is the certificate\'s notAfter');
  const due = new Promise<Record<string, unknown>>((resolve) => device.once('message', (_t, p: Buffer) => resolve(JSON.parse(p.toString('utf8')) as Record<string, unknown>)));
  await device.subscribeAsync(`$bastion/certs/${identity}/renewal-due`, { qos: 1 });
  const notice = await withTimeout(due, 5000, 'the renewal-due notice');
  assert.equal(notice.identity, identity);
  assert.equal(notice.certificateId, oldSerial);

  // Renew with a new key.
  const second = await createCsrWithKey({ commonName: 'whatever' });
  const renewed = await ask(device, `$bastion/certs/${identity}/renew/json`, { certificateSigningRequest: second.csrPem, clientToken: 'r1' });
  assert.ok(renewed.topic.endsWith('/accepted'), JSON.stringify(renewed.body));
  assert.equal(renewed.body.clientToken, 'r1');
  const newSerial = String(renewed.body.certificateId);
  assert.notEqual(newSerial, oldSerial);
  assert.equal(await statusOf(b, oldSerial), 'valid', 'the old certificate stays valid until the new one is used (grace)');
  // Only the current certificate may renew: the old one (still connected) is refused now.
  const again = await ask(device, `$bastion/certs/${identity}/renew/json`, { certificateSigningRequest: (await createCsrWithKey({ commonName: 'y' })).csrPem });
  assert.equal(again.body.errorCode, 'InvalidToken');
  device.end(true);

  // Restart: the renewal is in provisioning.db, and the new certificate's first use supersedes the old one.
  b = await b.restart();
  const reloadsBefore = logger.lines.items.filter((l) => l.msg === 'TLS material reloaded').length;
  const renewedDevice = await b.connect({ clientId: identity, cert: String(renewed.body.certificatePem), key: second.keyPem });
  open.push(renewedDevice);
  // The supersede re-signs crl.pem; the listener reloads it.
  await logger.lines.waitFor((ls) => ls.filter((l) => l.msg === 'TLS material reloaded').length > reloadsBefore, 10_000, 'the CRL reloaded');
  assert.equal(await statusOf(b, oldSerial), 'revoked');
  await assert.rejects(b.connect({ clientId: `${identity}-old`, cert: oldCert, key: first.keyPem }), 'the superseded certificate is refused');
});
