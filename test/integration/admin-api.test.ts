/**
 * The HTTPS admin API against a real broker: operator mTLS and bearer tokens (made by the
 * real CLI), 401/403/429, clients list/show/kick seen by real MQTT.js clients (0x98),
 * bans refusing the next CONNECT and closing the live session, and malformed requests
 * (400, 413, 404, 405).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { MqttClient } from 'mqtt';
import { adminRequest, type AdminCall } from '../helpers/admin.js';
import { startTestBroker, type TestBroker } from '../helpers/broker.js';
import { issueClient, type TestClientFiles } from '../helpers/pki.js';
import { BASTION_MAIN, connectMqtt, nextEvent, run } from './support.js';
import { clientTls, RecordingLogger, tryMqttConnect } from './tls-support.js';

let broker: TestBroker;
let logger: RecordingLogger;
let operator: TestClientFiles;
let adminPort: number;
const open: MqttClient[] = [];

function call(c: AdminCall): ReturnType<typeof adminRequest> {
  return adminRequest(broker.pki, adminPort, c);
}

async function device(name: string, clientId = name): Promise<MqttClient> {
  const files = broker.pki.clients[name] ?? (await issueClient(broker.pki, name));
  const client = await connectMqtt(`mqtts://127.0.0.1:${broker.tlsPort}`, { clientId, protocolVersion: 5, servername: 'localhost', ...clientTls(broker.pki, files) });
  open.push(client);
  return client;
}

before(async () => {
  logger = new RecordingLogger();
  broker = await startTestBroker({ clients: ['client1', 'client2'], admin: { maxBodyBytes: 2048 }, logger });
  operator = await issueClient(broker.pki, 'op1', { organizationalUnit: 'operators' });
  adminPort = broker.server.admin!.port;
});

after(async () => {
  await Promise.all(open.map((c) => c.endAsync(true).catch(() => undefined)));
  await broker.stop();
});

describe('admin API authentication', () => {
  test('no certificate and no token: 401 with a JSON message', async () => {
    const r = await call({ path: '/api/v1/clients' });
    assert.equal(r.status, 401);
    assert.match(r.json.error ?? '', /authentication required/);
    assert.match(String(r.headers['www-authenticate']), /^Bearer/);
  });

  test('a trusted certificate without the operators OU: 403', async () => {
    const r = await call({ path: '/api/v1/clients', client: broker.pki.clients.client1! });
    assert.equal(r.status, 403);
    assert.match(r.json.error ?? '', /not an operator/);
  });

  test('an unknown route is 404 and a wrong method 405, for an operator only', async () => {
    assert.equal((await call({ path: '/api/v1/nothing-here' })).status, 401);
    const missing = await call({ path: '/api/v1/nothing-here', client: operator });
    assert.equal(missing.status, 404);
    const wrong = await call({ method: 'PUT', path: '/api/v1/clients', client: operator });
    assert.equal(wrong.status, 405);
    assert.equal(wrong.headers.allow, 'GET');
  });

  test('token create (CLI) → use → revoke (CLI) → 401', async () => {
    const created = await run('node', [BASTION_MAIN, 'admin', 'token', 'create', '--name', 'ci-bot', '--data-dir', broker.dataDir]);
    assert.equal(created.code, 0, created.stderr);
    const token = created.stdout.trim();
    assert.match(token, /^bst_[A-Za-z0-9_-]{43}$/);
    const listed = await run('node', [BASTION_MAIN, 'admin', 'token', 'list', '--data-dir', broker.dataDir]);
    assert.match(listed.stdout, /^ci-bot\t/m);
    assert.ok(!listed.stdout.includes(token), 'the token itself is not stored or shown again');
    assert.equal((await call({ path: '/api/v1/clients', token })).status, 200);

    const revoked = await run('node', [BASTION_MAIN, 'admin', 'token', 'revoke', 'ci-bot', '--data-dir', broker.dataDir]);
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.match(revoked.stderr, /^bastion: admin change token\.revoke of ci-bot by local:\S+$/m);
    const after = await call({ path: '/api/v1/clients', token });
    assert.equal(after.status, 401);
    assert.match(after.json.error ?? '', /unknown or revoked token/);
  });

  test('repeated failures from one IP are refused with 429 before the credential is checked', async () => {
    for (let i = 0; i < 5; i++) assert.equal((await call({ path: '/api/v1/clients', token: 'bst_wrong', localAddress: '127.0.0.2' })).status, 401);
    const blocked = await call({ path: '/api/v1/clients', client: operator, localAddress: '127.0.0.2' });
    assert.equal(blocked.status, 429);
    assert.ok(Number(blocked.headers['retry-after']) >= 1);
    // Another address is not affected.
    assert.equal((await call({ path: '/api/v1/clients', client: operator, localAddress: '127.0.0.3' })).status, 200);
  });
});

describe('admin API clients', () => {
  test('list shows connected clients with identity, method, address, listener, since and subscriptions; paging', async () => {
    const a = await device('client1', 'list-a');
    await a.subscribeAsync('devices/client1/#', { qos: 1 });
    await device('client2', 'list-b');
    const r = await call({ path: '/api/v1/clients', client: operator });
    assert.equal(r.status, 200);
    const clients = r.json.clients as Array<Record<string, unknown>>;
    const byId = new Map(clients.map((c) => [c.clientId, c]));
    const one = byId.get('list-a')!;
    assert.equal(one.principal, 'client1');
    assert.equal(one.method, 'certificate');
    assert.equal(one.listener, 'mqtts');
    assert.match(String(one.remoteAddress), /127\.0\.0\.1/);
    assert.equal(one.subscriptions, 1);
    assert.ok(!Number.isNaN(Date.parse(String(one.connectedSince))));
    assert.ok(byId.has('list-b'));

    const page = await call({ path: '/api/v1/clients?offset=0&limit=1', client: operator });
    assert.equal(page.json.total, r.json.total);
    assert.equal((page.json.clients as unknown[]).length, 1);
    const bad = await call({ path: '/api/v1/clients?limit=0', client: operator });
    assert.equal(bad.status, 400);
    assert.match(bad.json.error ?? '', /^query\.limit/);

    const detail = await call({ path: '/api/v1/clients/list-a', client: operator });
    assert.equal(detail.status, 200);
    assert.deepEqual(detail.json.subscriptionFilters, [{ filter: 'devices/client1/#', qos: 1 }]);
    assert.equal((await call({ path: '/api/v1/clients/nobody', client: operator })).status, 404);
  });

  test('kick disconnects the client with DISCONNECT 0x98 and is logged with who did it; unknown id is 404', async () => {
    const victim = await device('client1', 'kick-me');
    const disconnected = nextEvent<{ reasonCode?: number }>(victim, 'disconnect', 5000);
    const r = await call({ method: 'DELETE', path: '/api/v1/clients/kick-me', client: operator });
    assert.equal(r.status, 200);
    assert.equal((await disconnected).reasonCode, 0x98);
    const line = await logger.waitFor('admin change', { action: 'client.kick', target: 'kick-me', outcome: 'ok' });
    assert.equal(line.obj.actor, 'certificate:op1');
    const missing = await call({ method: 'DELETE', path: '/api/v1/clients/kick-me', client: operator });
    assert.equal(missing.status, 404);
    await logger.waitFor('admin change', { action: 'client.kick', target: 'kick-me', outcome: 'not-found' });
  });
});

describe('admin API bans', () => {
  test('a client-id ban closes the live session (0x98) and refuses the next CONNECT (0x8A); unban lets it in', async () => {
    const live = await device('client2', 'banned-one');
    const disconnected = nextEvent<{ reasonCode?: number }>(live, 'disconnect', 5000);
    const r = await call({ method: 'POST', path: '/api/v1/bans', client: operator, body: { kind: 'clientId', value: 'banned-one', reason: 'test', ttlSeconds: 3600 } });
    assert.equal(r.status, 201, r.text);
    assert.deepEqual(r.json.disconnected, ['banned-one']);
    assert.equal((await disconnected).reasonCode, 0x98);
    const files = broker.pki.clients.client2!;
    assert.deepEqual(await tryMqttConnect(broker.tlsPort, { clientId: 'banned-one', protocolVersion: 5, ...clientTls(broker.pki, files) }), { connack: 0x8a });
    // Another client id with the same certificate is not banned.
    assert.deepEqual(await tryMqttConnect(broker.tlsPort, { clientId: 'not-banned', protocolVersion: 5, ...clientTls(broker.pki, files) }), { connack: 0 });

    const list = await call({ path: '/api/v1/bans', client: operator });
    const ban = (list.json.bans as Array<{ id: number; kind: string; value: string; createdBy: string; expiresAt: string | null }>).find((b) => b.value === 'banned-one')!;
    assert.equal(ban.createdBy, 'certificate:op1');
    assert.ok(ban.expiresAt !== null);
    await logger.waitFor('admin change', { action: 'ban.add', target: 'clientId:banned-one', actor: 'certificate:op1' });

    assert.equal((await call({ method: 'DELETE', path: `/api/v1/bans/${ban.id}`, client: operator })).status, 200);
    assert.deepEqual(await tryMqttConnect(broker.tlsPort, { clientId: 'banned-one', protocolVersion: 5, ...clientTls(broker.pki, files) }), { connack: 0 });
    assert.equal((await call({ method: 'DELETE', path: `/api/v1/bans/${ban.id}`, client: operator })).status, 404);
  });

  test('a certificate-serial ban refuses every client id presenting that certificate (v3.1.1: not authorized)', async () => {
    const files = await issueClient(broker.pki, 'serial-banned');
    const probe = await device('serial-banned', 'probe');
    const detail = await call({ path: '/api/v1/clients/probe', client: operator });
    const serial = (detail.json.certificate as { serialNumber: string }).serialNumber;
    const gone = nextEvent(probe, 'close', 5000);
    // Lower case with colons: normalised to the same ban.
    const lower = serial.toLowerCase().match(/.{1,2}/g)!.join(':');
    assert.equal((await call({ method: 'POST', path: '/api/v1/bans', client: operator, body: { kind: 'certSerial', value: lower } })).status, 201);
    await gone;
    assert.deepEqual(await tryMqttConnect(broker.tlsPort, { clientId: 'other-id', protocolVersion: 4, ...clientTls(broker.pki, files) }), { connack: 5 });
  });

  test('bad ban bodies: 400 naming the problem, bad JSON 400, wrong content type 415, oversized 413', async () => {
    const unknownKind = await call({ method: 'POST', path: '/api/v1/bans', client: operator, body: { kind: 'planet', value: 'x' } });
    assert.equal(unknownKind.status, 400);
    assert.match(unknownKind.json.error ?? '', /^body\.kind/);
    const extra = await call({ method: 'POST', path: '/api/v1/bans', client: operator, body: { kind: 'ip', value: '10.0.0.1', admin: true } });
    assert.equal(extra.status, 400);
    const past = await call({ method: 'POST', path: '/api/v1/bans', client: operator, body: { kind: 'ip', value: '10.0.0.1', expiresAt: '2001-01-01T00:00:00Z' } });
    assert.equal(past.status, 400);
    assert.match(past.json.error ?? '', /past/);
    const badJson = await call({ method: 'POST', path: '/api/v1/bans', client: operator, rawBody: '{"kind": "ip",' });
    assert.equal(badJson.status, 400);
    assert.match(badJson.json.error ?? '', /not valid JSON/);
    const wrongType = await call({ method: 'POST', path: '/api/v1/bans', client: operator, rawBody: 'kind=ip', contentType: 'application/x-www-form-urlencoded' });
    assert.equal(wrongType.status, 415);
    const big = await call({ method: 'POST', path: '/api/v1/bans', client: operator, body: { kind: 'clientId', value: 'x', reason: 'r'.repeat(4096) } });
    assert.equal(big.status, 413);
    assert.match(big.json.error ?? '', /larger than 2048 bytes/);
    const badIp = await call({ method: 'POST', path: '/api/v1/bans', client: operator, body: { kind: 'ip', value: '10.0.0.300' } });
    assert.equal(badIp.status, 400);
    assert.match(badIp.json.error ?? '', /^body\.value: ip is not an IPv4 or IPv6 address/);
    const badSerial = await call({ method: 'POST', path: '/api/v1/bans', client: operator, body: { kind: 'certSerial', value: 'not-hex' } });
    assert.match(badSerial.json.error ?? '', /^body\.value: certSerial is not a hex certificate serial/);
    const badId = await call({ method: 'DELETE', path: '/api/v1/bans/abc', client: operator });
    assert.equal(badId.status, 400);
  });
});
