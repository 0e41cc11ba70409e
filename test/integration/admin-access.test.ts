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

  test('delete → the next login is refused; deleting again is 404', async () => {
    assert.equal((await call({ method: 'POST', path: '/api/v1/users', body: { username: 'dave', password: 'dave has a password' } })).status, 201);
    assert.deepEqual(await passwordLogin('dave', 'dave has a password'), { connack: 0 });
    assert.equal((await call({ method: 'DELETE', path: '/api/v1/users/dave' })).status, 200);
    assert.notDeepEqual(await passwordLogin('dave', 'dave has a password'), { connack: 0 });
    assert.equal((await call({ method: 'DELETE', path: '/api/v1/users/dave' })).status, 404);
    await logger.waitFor('admin change', { action: 'user.del', target: 'dave', outcome: 'not-found' });
  });
});
