/**
 * The admin API's access-control endpoints on a real broker: users added through the API
 * log in over MQTT with their password at once, and are refused once deleted; roles,
 * bindings, explain and lint go through the real policy service and change what a live
 * client may do.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { adminRequest, type AdminCall } from '../helpers/admin.js';
import { issueClient, makeTestPki, type TestClientFiles, type TestPki } from '../helpers/pki.js';
import { parseConfig } from '../../src/server/load-config.js';
import { startServer, type BastionServer } from '../../src/server/server.js';
import { RecordingLogger, tryMqttConnect } from './tls-support.js';
import { connectMqtt } from './support.js';

let dir: string;
let pki: TestPki;
let server: BastionServer;
let operator: TestClientFiles;
let logger: RecordingLogger;

function call(c: AdminCall): ReturnType<typeof adminRequest> {
  return adminRequest(pki, server.admin!.port, { client: operator, ...c });
}

function passwordLogin(username: string, password: string): ReturnType<typeof tryMqttConnect> {
  return tryMqttConnect(server.listeners[0]!.port, { clientId: `login-${username}`, protocolVersion: 5, username, password, ca: readFileSync(pki.caCert) });
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'bastion-admin-access-'));
  pki = await makeTestPki(join(dir, 'pki'), []);
  operator = await issueClient(pki, 'op-access', { organizationalUnit: 'operators' });
  const { config, baseDir } = parseConfig(
    {
      dataDir: join(dir, 'data'),
      listeners: [
        {
          name: 'passwords',
          protocol: 'mqtts',
          host: '127.0.0.1',
          port: 0,
          tls: { cert: pki.serverCert, key: pki.serverKey, clientCerts: 'none' },
          auth: { providers: ['password'] },
        },
      ],
      persistence: { enabled: true },
      log: { level: 'silent' },
      admin: { port: 0, tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.caCert } },
    },
    dir,
  );
  logger = new RecordingLogger();
  server = await startServer({ config, baseDir, logger });
});

after(async () => {
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('admin API users', () => {
  test('add → the user logs in over MQTT; duplicate 409; weak password and bad name 400; list shows no secrets', async () => {
    const added = await call({ method: 'POST', path: '/api/v1/users', body: { username: 'alice', password: 'correct horse battery' } });
    assert.equal(added.status, 201, added.text);
    assert.deepEqual(await passwordLogin('alice', 'correct horse battery'), { connack: 0 });
    assert.deepEqual(await passwordLogin('alice', 'wrong password!!'), { connack: 0x86 });
    const line = await logger.waitFor('admin change', { action: 'user.add', target: 'alice', outcome: 'ok' });
    assert.equal(line.obj.actor, 'certificate:op-access');
    assert.ok(!JSON.stringify(line.obj).includes('correct horse'), 'the password is never logged');

    assert.equal((await call({ method: 'POST', path: '/api/v1/users', body: { username: 'alice', password: 'another good one' } })).status, 409);
    const weak = await call({ method: 'POST', path: '/api/v1/users', body: { username: 'bob', password: 'short' } });
    assert.equal(weak.status, 400);
    assert.match(weak.json.error ?? '', /shorter than 10 characters/);
    const badName = await call({ method: 'POST', path: '/api/v1/users', body: { username: 'dev/+', password: 'long enough password' } });
    assert.equal(badName.status, 400);
    const missing = await call({ method: 'POST', path: '/api/v1/users', body: { username: 'carol' } });
    assert.equal(missing.status, 400);
    assert.match(missing.json.error ?? '', /^body\.password/);

    const list = await call({ path: '/api/v1/users' });
    assert.equal(list.status, 200);
    assert.deepEqual((list.json.users as Array<{ username: string }>).map((u) => u.username), ['alice']);
    assert.ok(!/scrypt|hash|scram/i.test(list.text), list.text);
  });

  test('PUT sets a new password (the old one is refused at once) or creates the user', async () => {
    const created = await call({ method: 'PUT', path: '/api/v1/users/erin', body: { password: 'first password ok' } });
    assert.equal(created.status, 201);
    assert.equal(created.json.outcome, 'added');
    const changed = await call({ method: 'PUT', path: '/api/v1/users/erin', body: { password: 'second password ok' } });
    assert.equal(changed.status, 200);
    assert.equal(changed.json.outcome, 'changed');
    assert.deepEqual(await passwordLogin('erin', 'second password ok'), { connack: 0 });
    assert.deepEqual(await passwordLogin('erin', 'first password ok'), { connack: 0x86 });
  });

  test('a username ban refuses that user\'s login (0x8A) and shows the user name in the client list', async () => {
    assert.equal((await call({ method: 'PUT', path: '/api/v1/users/gina', body: { password: 'gina password 1' } })).status, 201);
    const ban = await call({ method: 'POST', path: '/api/v1/bans', body: { kind: 'username', value: 'gina', reason: 'leaked password' } });
    assert.equal(ban.status, 201);
    assert.deepEqual(await passwordLogin('gina', 'gina password 1'), { connack: 0x8a });
    assert.deepEqual(await passwordLogin('alice', 'correct horse battery'), { connack: 0 });
    assert.equal((await call({ method: 'DELETE', path: `/api/v1/bans/${(ban.json.ban as { id: number }).id}` })).status, 200);
    const live = await connectMqtt(`mqtts://127.0.0.1:${server.listeners[0]!.port}`, { clientId: 'gina-live', protocolVersion: 5, username: 'gina', password: 'gina password 1', ca: readFileSync(pki.caCert), servername: 'localhost' });
    try {
      const shown = await call({ path: '/api/v1/clients/gina-live' });
      assert.equal(shown.json.username, 'gina');
      assert.equal(shown.json.method, 'password');
    } finally {
      await live.endAsync(true);
    }
  });

  test('delete → the next login is refused; deleting again is 404', async () => {
    assert.equal((await call({ method: 'POST', path: '/api/v1/users', body: { username: 'dave', password: 'dave has a password' } })).status, 201);
    assert.deepEqual(await passwordLogin('dave', 'dave has a password'), { connack: 0 });
    assert.equal((await call({ method: 'DELETE', path: '/api/v1/users/dave' })).status, 200);
    assert.notDeepEqual(await passwordLogin('dave', 'dave has a password'), { connack: 0 });
    assert.equal((await call({ method: 'DELETE', path: '/api/v1/users/dave' })).status, 404);
    await logger.waitFor('admin change', { action: 'user.del', target: 'dave', outcome: 'not-found' });
  });
});

/** PUBACK reason of one QoS 1 publish: 0 accepted (or 0x10 no subscribers), else the refusal code. */
async function publishOutcome(username: string, password: string, topic: string): Promise<number> {
  const client = await connectMqtt(`mqtts://127.0.0.1:${server.listeners[0]!.port}`, { clientId: `pub-${username}`, protocolVersion: 5, username, password, ca: readFileSync(pki.caCert), servername: 'localhost' });
  try {
    const packet = await client.publishAsync(topic, 'x', { qos: 1 });
    return (packet as { reasonCode?: number } | undefined)?.reasonCode ?? 0;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'number') return code;
    throw err;
  } finally {
    await client.endAsync(true);
  }
}

describe('admin API roles, bindings, explain, lint (the real policy service)', () => {
  test('a role and a binding made through the API let a user publish at once; deleting the binding takes it away', async () => {
    assert.equal((await call({ method: 'PUT', path: '/api/v1/users/frank', body: { password: 'frank password 1' } })).status, 201);
    assert.equal(await publishOutcome('frank', 'frank password 1', 'sensors/frank/temp'), 0x87, 'denied by default');

    const role = await call({ method: 'PUT', path: '/api/v1/roles/sensors', body: { rules: [{ effect: 'allow', action: 'publish', topic: 'sensors/${username}/#' }] } });
    assert.equal(role.status, 200, role.text);
    const bound = await call({ method: 'POST', path: '/api/v1/bindings', body: { role: 'sensors', attribute: 'username', value: 'frank' } });
    assert.equal(bound.status, 201, bound.text);
    assert.ok([0, 0x10].includes(await publishOutcome('frank', 'frank password 1', 'sensors/frank/temp')));
    assert.equal(await publishOutcome('frank', 'frank password 1', 'sensors/other/temp'), 0x87, 'another user\'s topic stays closed');

    const explained = await call({ method: 'POST', path: '/api/v1/acl/explain', body: { clientId: 'x', username: 'frank', publish: 'sensors/frank/temp' } });
    assert.equal(explained.status, 200, explained.text);
    assert.equal(explained.json.decision, 'allow');
    assert.ok((explained.json.roles as string[]).includes('sensors'));
    const denied = await call({ method: 'POST', path: '/api/v1/acl/explain', body: { clientId: 'dev-9', certificate: { commonName: 'dev-9' }, publish: 'devices/dev-8/x' } });
    assert.equal(denied.json.decision, 'deny');
    const lint = await call({ path: '/api/v1/acl/lint' });
    assert.equal(lint.status, 200);
    assert.ok(Array.isArray(lint.json.findings));
    const roles = await call({ path: '/api/v1/roles/sensors' });
    assert.equal(roles.status, 200);
    await logger.waitFor('admin change', { action: 'binding.put', actor: 'certificate:op-access', outcome: 'ok' });

    const unbound = await call({ method: 'DELETE', path: '/api/v1/bindings?role=sensors&attribute=username&value=frank' });
    assert.equal(unbound.status, 200, unbound.text);
    assert.equal(await publishOutcome('frank', 'frank password 1', 'sensors/frank/temp'), 0x87);
    assert.equal((await call({ method: 'DELETE', path: '/api/v1/bindings?role=sensors&attribute=username&value=frank' })).status, 404);
    assert.equal((await call({ method: 'DELETE', path: '/api/v1/roles/sensors' })).status, 200);
    assert.equal((await call({ method: 'DELETE', path: '/api/v1/roles/sensors' })).status, 404);
  });

  test('explain passes QoS and retain on to the rules', async () => {
    assert.equal((await call({ method: 'PUT', path: '/api/v1/roles/lowqos', body: { rules: [{ effect: 'allow', action: 'publish', topic: 'q/#', maxQos: 0, retain: false }] } })).status, 200);
    assert.equal((await call({ method: 'POST', path: '/api/v1/bindings', body: { role: 'lowqos', attribute: 'clientId', value: 'qos-probe' } })).status, 201);
    const ask = async (extra: Record<string, unknown>): Promise<unknown> => (await call({ method: 'POST', path: '/api/v1/acl/explain', body: { clientId: 'qos-probe', publish: 'q/a', ...extra } })).json.decision;
    assert.equal(await ask({ qos: 0 }), 'allow');
    assert.equal(await ask({ qos: 1 }), 'deny');
    assert.equal(await ask({ qos: 0, retain: true }), 'deny');
    assert.equal((await call({ method: 'DELETE', path: '/api/v1/roles/lowqos' })).status, 200);
  });

  test('invalid rules and bindings are 400 with the service\'s reason; built-in roles are 409; explain needs one action', async () => {
    const badTopic = await call({ method: 'PUT', path: '/api/v1/roles/bad', body: { rules: [{ effect: 'allow', action: 'publish', topic: 'a/#/b' }] } });
    assert.equal(badTopic.status, 400);
    assert.match(badTopic.json.error ?? '', /invalid rule/);
    const badEffect = await call({ method: 'PUT', path: '/api/v1/roles/bad', body: { rules: [{ effect: 'maybe', action: 'publish', topic: 'a' }] } });
    assert.equal(badEffect.status, 400);
    const noRole = await call({ method: 'POST', path: '/api/v1/bindings', body: { role: 'ghost', attribute: 'username', value: 'x' } });
    assert.equal(noRole.status, 400);
    assert.match(noRole.json.error ?? '', /unknown role "ghost"/);
    const builtIn = await call({ method: 'PUT', path: '/api/v1/roles/device', body: { rules: [] } });
    assert.equal(builtIn.status, 409, builtIn.text);
    const both = await call({ method: 'POST', path: '/api/v1/acl/explain', body: { clientId: 'x', publish: 'a', subscribe: 'b' } });
    assert.equal(both.status, 400);
    assert.match(both.json.error ?? '', /exactly one of publish or subscribe/);
  });
});
