/**
 * Helpers shared by the provisioning integration tests (issue 13): ask a request over MQTT
 * and wait for its answer, read PUBACK / SUBACK reason codes, provision a device through a
 * claim or token client, count what the broker issued (PKI inventory and devices in
 * provisioning.db), record the server's `provisioning` security events and check a
 * refusal. Must not: be imported by src/ (test-only).
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import type { SecurityEvent } from '../../src/core/security-events.js';
import { createCsrWithKey } from '../../src/pki/index.js';
import { PROVISIONING_DB_FILE, SqliteProvisioningStore } from '../../src/provisioning/sqlite-provisioning-store.js';
import { PkiService } from '../../src/server/pki-service.js';
import type { ProvisioningBroker } from '../helpers/provisioning-broker.js';
import { withTimeout } from './support.js';

import { CREATE_FROM_CSR_TOPIC as CSR_TOPIC, registerTopic, renewTopic } from '../../src/core/provisioning-topics.js';

export { CSR_TOPIC, registerTopic, renewTopic };

export type Answer = { topic: string; body: Record<string, unknown> };

/**
 * Subscribes to the answers of `topic`, publishes `payload` there (an object is sent as
 * JSON, a string or Buffer as is), resolves the answer. When the request carries a
 * clientToken, only the answer echoing it counts.
 */
export async function ask(client: MqttClient, topic: string, payload: Record<string, unknown> | string | Buffer): Promise<Answer> {
  await client.subscribeAsync([`${topic}/accepted`, `${topic}/rejected`], { qos: 1 });
  const wanted = typeof payload === 'object' && !Buffer.isBuffer(payload) && typeof payload.clientToken === 'string' ? payload.clientToken : undefined;
  const answer = new Promise<Answer>((resolve) => {
    const on = (t: string, raw: Buffer): void => {
      if (t !== `${topic}/accepted` && t !== `${topic}/rejected`) return;
      const body = JSON.parse(raw.toString('utf8')) as Record<string, unknown>;
      if (wanted !== undefined && body.clientToken !== wanted) return;
      client.off('message', on);
      resolve({ topic: t, body });
    };
    client.on('message', on);
  });
  const wire = typeof payload === 'string' || Buffer.isBuffer(payload) ? payload : JSON.stringify(payload);
  await client.publishAsync(topic, wire, { qos: 1 });
  return withTimeout(answer, 10_000, `an answer on ${topic}`);
}

/** The PUBACK reason code of a QoS 1 publish (MQTT.js rejects codes >= 0x80; v3.1.1 has none: 0). */
export async function pubackCode(client: MqttClient, topic: string, payload = 'x'): Promise<number> {
  try {
    await client.publishAsync(topic, payload, { qos: 1 });
    return 0;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'number') return code;
    throw err;
  }
}

/** The SUBACK codes of one SUBSCRIBE of `filters` (MQTT.js rejects when one is >= 0x80). */
export async function subackCodes(client: MqttClient, filters: string[]): Promise<number[]> {
  const out = await client.subscribeAsync(filters, { qos: 1 }).then(
    (g) => g.map((x) => x.qos),
    (err: { packet?: { granted?: number[] } }) => err.packet?.granted,
  );
  assert.ok(Array.isArray(out), 'a SUBACK with one code per filter');
  return out;
}

export function accepted(a: Answer): Record<string, unknown> {
  assert.ok(a.topic.endsWith('/accepted'), `accepted, got ${a.topic}: ${JSON.stringify(a.body)}`);
  return a.body;
}

/** Asserts a clear refusal: `…/rejected`, the status and error code, one readable line, no credential in it. */
export function assertRejected(a: Answer, statusCode: number, errorCode: string): void {
  assert.ok(a.topic.endsWith('/rejected'), `rejected with ${errorCode}, got ${a.topic}: ${JSON.stringify(a.body)}`);
  assert.equal(a.body.errorCode, errorCode, JSON.stringify(a.body));
  assert.equal(a.body.statusCode, statusCode, JSON.stringify(a.body));
  const message = a.body.errorMessage;
  assert.ok(typeof message === 'string' && message.length > 0 && !message.includes('\n'), `a one-line errorMessage: ${JSON.stringify(message)}`);
  for (const key of ['certificatePem', 'certificateOwnershipToken', 'certificateId', 'identity']) assert.equal(a.body[key], undefined, `no ${key} in a refusal`);
}

export async function statusOf(b: ProvisioningBroker, serial: string): Promise<string> {
  const pki = await PkiService.open(b.pkiDir);
  try {
    return pki.show(serial).status;
  } finally {
    pki.close();
  }
}

/** What the broker has issued: certificates in the PKI inventory and devices in provisioning.db. */
export async function issuedCounts(b: ProvisioningBroker): Promise<{ certificates: number; devices: number }> {
  const pki = await PkiService.open(b.pkiDir);
  let certificates: number;
  try {
    certificates = pki.list().length;
  } finally {
    pki.close();
  }
  const store = SqliteProvisioningStore.open(join(b.dataDir, PROVISIONING_DB_FILE));
  try {
    return { certificates, devices: store.listDevices().length };
  } finally {
    store.close();
  }
}

/** Runs `fn` on the broker's provisioning.db (a second connection, as the CLI opens it). */
export function withStore<T>(b: ProvisioningBroker, fn: (store: SqliteProvisioningStore) => T): T {
  const store = SqliteProvisioningStore.open(join(b.dataDir, PROVISIONING_DB_FILE));
  try {
    return fn(store);
  } finally {
    store.close();
  }
}

/** Step 1 through `client`: a fresh key, its CSR, the placeholder certificate and its ownership token. */
export async function createStep1(client: MqttClient): Promise<{ keyPem: string; csrPem: string; created: Record<string, unknown>; token: string }> {
  // The CSR asks for an identity of its own choosing: the template's wins.
  const csr = await createCsrWithKey({ commonName: 'admin' });
  const created = accepted(await ask(client, CSR_TOPIC, { certificateSigningRequest: csr.csrPem, clientToken: 'step-1' }));
  assert.equal(created.clientToken, 'step-1');
  return { keyPem: csr.keyPem, csrPem: csr.csrPem, created, token: String(created.certificateOwnershipToken) };
}

/** Provisions one device through `client`; returns its key and the register answer. */
export async function provisionThrough(
  client: MqttClient,
  serialNumber: string,
  template = 'sensor',
): Promise<{ keyPem: string; created: Record<string, unknown>; registered: Record<string, unknown> }> {
  const { keyPem, created, token } = await createStep1(client);
  const registered = accepted(await ask(client, registerTopic(template), { certificateOwnershipToken: token, parameters: { serialNumber } }));
  return { keyPem, created, registered };
}

export type ProvisioningEvent = Extract<SecurityEvent, { type: 'provisioning' }>;

/** Records the server's `provisioning` security events (the audit log's input) from now on. */
export function recordProvisioningEvents(b: ProvisioningBroker): { events: ProvisioningEvent[]; stop: () => void } {
  const events: ProvisioningEvent[] = [];
  const stop = b.server.broker.events.on((e) => {
    if (e.type === 'provisioning') events.push(e);
  });
  return { events, stop };
}

/** Asserts that exactly one refusal of `clientId` with `errorCode` was audited since `from` (an index into `events`). */
export function assertRefusalAudited(events: readonly ProvisioningEvent[], from: number, clientId: string, errorCode: string, action?: ProvisioningEvent['action']): ProvisioningEvent {
  const mine = events.slice(from).filter((e) => e.clientId === clientId);
  const refused = mine.filter((e) => e.outcome === 'refused');
  assert.equal(refused.length, 1, `one refused provisioning event for ${clientId}, got ${JSON.stringify(mine)}`);
  const e = refused[0]!;
  assert.equal(e.errorCode, errorCode);
  assert.ok(typeof e.reason === 'string' && e.reason.length > 0, 'the audit event says why');
  if (action !== undefined) assert.equal(e.action, action);
  assert.equal(mine.filter((x) => x.outcome === 'ok').length, 0, `nothing succeeded for ${clientId}: ${JSON.stringify(mine)}`);
  return e;
}
