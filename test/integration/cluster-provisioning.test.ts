/**
 * Device provisioning in a cluster (issue 13): two Bastion nodes on one real nats-server,
 * each with its own data directory and the same CA (the PKI copied before the first start,
 * as an operator does for nodes on several machines). A one-time token made on one node's
 * data directory (as `bastion provision token create` makes it) provisions a device on the
 * other node, once; a claim limited to one device provisions one device however two nodes
 * race; a device provisioned on one node renews on the other; and the first use of the
 * renewed certificate revokes the old one on both nodes, though another node issued it.
 *
 * Waits are on answers, log lines or a polled condition with a timeout; never a fixed delay.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { createCsrWithKey } from '../../src/pki/index.js';
import { parseToken } from '../../src/provisioning/secrets.js';
import { setUpPki, startProvisioningBroker, type ProvisioningBroker } from '../helpers/provisioning-broker.js';
import { startNatsServer, type SingleNats } from '../helpers/nats-server.js';
import { ask, CSR_TOPIC, registerTopic, statusOf, withStore } from './provisioning-support.js';
import { until } from './support.js';
import { RecordingLogger } from './tls-support.js';

let dir: string;
let nats: SingleNats;
let a: ProvisioningBroker;
let b: ProvisioningBroker;
const logA = new RecordingLogger();
const logB = new RecordingLogger();
const open: MqttClient[] = [];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'bastion-cluster-prov-'));
  nats = await startNatsServer();
  const pkiDir = join(dir, 'ca');
  await setUpPki(pkiDir);
  const node = (nodeId: string, logger: RecordingLogger): Promise<ProvisioningBroker> =>
    startProvisioningBroker({ pkiFrom: pkiDir, cluster: { nats: { servers: [nats.url] }, nodeId }, provisioning: { renewal: { windowDays: 7, graceHours: 24, maxPerDay: 5 } }, templates: { sensor: { commonName: 'sensor-${serialNumber}', days: 1, roles: ['sensor'], parameters: { serialNumber: { pattern: '[A-Z0-9]{4,16}' } } } }, logger });
  a = await node('prov-a', logA);
  b = await node('prov-b', logB);
});

after(async () => {
  for (const c of open) c.end(true);
  await a?.stop();
  await b?.stop();
  await nats?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Provisions `serialNumber` on `node` with the one-time `token`: the answer of step 2 (or a rejection). */
async function provisionWithToken(node: ProvisioningBroker, token: string, serialNumber: string): Promise<{ topic: string; body: Record<string, unknown>; keyPem: string }> {
  const client = await node.connect({ clientId: `factory-${serialNumber}-${node.port}`, username: '$provision', password: token });
  open.push(client);
  const csr = await createCsrWithKey({ commonName: 'ignored' });
  const created = await ask(client, CSR_TOPIC, { certificateSigningRequest: csr.csrPem });
  if (!created.topic.endsWith('/accepted')) return { ...created, keyPem: csr.keyPem };
  const reg = await ask(client, registerTopic('sensor'), { certificateOwnershipToken: created.body.certificateOwnershipToken, parameters: { serialNumber } });
  client.end(true);
  return { ...reg, keyPem: csr.keyPem };
}

test('a token made on one node provisions a device on the other, once', async () => {
  const token = a.token('sensor');
  const id = parseToken(token)!.id;
  await until(() => withStore(b, (s) => s.token(id) !== null), 5000, 'the token to reach node b');
  const done = await provisionWithToken(b, token, 'TOK001');
  assert.ok(done.topic.endsWith('/accepted'), JSON.stringify(done.body));
  assert.equal(done.body.identity, 'sensor-TOK001');
  // The spend reached node a: the same token is refused there (at CONNECT or at step 1).
  await until(() => withStore(a, (s) => s.token(id)?.usedAt !== null), 5000, 'the spend to reach node a');
  const replay = await provisionWithToken(a, token, 'TOK002').catch((err: unknown) => ({ topic: 'refused', body: { error: String(err) }, keyPem: '' }));
  assert.ok(!replay.topic.endsWith('/accepted'), 'a spent token provisions nothing on another node');
  // The device b provisioned is a device of a too: it connects there with its own certificate.
  await until(() => withStore(a, (s) => s.device('sensor-TOK001') !== null), 5000, 'the device record to reach node a');
  const device = await a.connect({ clientId: 'sensor-TOK001', cert: String(done.body.certificatePem), key: done.keyPem });
  open.push(device);
  device.end(true);
});

test('a claim for one device provisions one device, whichever nodes race', async () => {
  const claim = await a.claim('sensor', { maxDevices: 1 });
  await until(() => withStore(b, (s) => s.claim(claim.serialNumber) !== null), 5000, 'the claim to reach node b');
  const step = async (node: ProvisioningBroker, serialNumber: string): Promise<string> => {
    const client = await node.connect({ clientId: `claim-${serialNumber}`, cert: claim.cert, key: claim.key });
    open.push(client);
    const csr = await createCsrWithKey({ commonName: 'ignored' });
    const created = await ask(client, CSR_TOPIC, { certificateSigningRequest: csr.csrPem });
    assert.ok(created.topic.endsWith('/accepted'), JSON.stringify(created.body));
    const reg = await ask(client, registerTopic('sensor'), { certificateOwnershipToken: created.body.certificateOwnershipToken, parameters: { serialNumber } });
    client.end(true);
    return reg.topic.endsWith('/accepted') ? 'ok' : String(reg.body.errorCode);
  };
  const outcomes = await Promise.all([step(a, 'CLM001'), step(b, 'CLM002')]);
  assert.deepEqual(outcomes.slice().sort(), ['ClaimExhausted', 'ok'], `outcomes: ${outcomes.join(', ')}`);
  await until(() => withStore(a, (s) => s.claim(claim.serialNumber)?.devices === 1) && withStore(b, (s) => s.claim(claim.serialNumber)?.devices === 1), 5000, 'both nodes to count one device');
});

test('a device provisioned on one node renews on the other; the renewed certificate\'s first use revokes the old one everywhere', async () => {
  const done = await provisionWithToken(b, b.token('sensor'), 'REN042');
  assert.ok(done.topic.endsWith('/accepted'), JSON.stringify(done.body));
  const identity = 'sensor-REN042';
  const oldCert = String(done.body.certificatePem);
  const oldSerial = String(done.body.certificateId);
  await until(() => withStore(a, (s) => s.device(identity) !== null), 5000, 'the device record to reach node a');

  // Renew on a: a signs the new certificate; b issued the old one.
  const device = await a.connect({ clientId: identity, cert: oldCert, key: done.keyPem });
  open.push(device);
  const next = await createCsrWithKey({ commonName: 'ignored' });
  const renewed = await ask(device, `$bastion/certs/${identity}/renew/json`, { certificateSigningRequest: next.csrPem });
  assert.ok(renewed.topic.endsWith('/accepted'), JSON.stringify(renewed.body));
  device.end(true);
  const newCert = String(renewed.body.certificatePem);
  const newSerial = String(renewed.body.certificateId);
  await until(() => withStore(b, (s) => s.renewalByNewSerial(newSerial) !== null && s.device(identity)?.certSerial === newSerial), 5000, 'the renewal to reach node b');

  // The old certificate cannot renew again on b either: b knows the device moved on.
  const stale = await b.connect({ clientId: `${identity}-stale`, cert: oldCert, key: done.keyPem });
  open.push(stale);
  const again = await ask(stale, `$bastion/certs/${identity}/renew/json`, { certificateSigningRequest: (await createCsrWithKey({ commonName: 'x' })).csrPem });
  assert.equal(again.body.errorCode, 'InvalidToken', JSON.stringify(again.body));
  stale.end(true);

  // First use of the new certificate on b: the old one is revoked, on b and on a.
  const fresh = await b.connect({ clientId: identity, cert: newCert, key: next.keyPem });
  open.push(fresh);
  await until(async () => (await statusOf(b, oldSerial)) === 'revoked', 10_000, 'the old certificate revoked on b');
  await until(() => withStore(a, (s) => s.renewalByNewSerial(String(renewed.body.certificateId))?.supersededAt != null), 5000, 'the supersession to reach node a');
  for (const node of [a, b]) {
    await until(
      () => node.connect({ clientId: `${identity}-old-${node.port}`, cert: oldCert, key: done.keyPem }).then((c) => (c.end(true), false), () => true),
      10_000,
      `the superseded certificate refused on node ${node === a ? 'a' : 'b'}`,
    );
  }
  fresh.end(true);
});
