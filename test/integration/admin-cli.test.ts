/**
 * `bastion clients list|show|kick` as child processes against a real broker's admin API:
 * token and operator-certificate logins, the environment variables, and every failure as
 * one stderr line with a non-zero exit (401, 403, 404, unreachable, plain http refused).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { MqttClient } from 'mqtt';
import { startTestBroker, type TestBroker } from '../helpers/broker.js';
import { issueClient, type TestClientFiles } from '../helpers/pki.js';
import { BASTION_MAIN, connectMqtt, freePort, nextEvent, run, type ProcResult } from './support.js';
import { clientTls } from './tls-support.js';

let broker: TestBroker;
let operator: TestClientFiles;
let token: string;
let url: string;
const open: MqttClient[] = [];

function bastion(args: string[], env: Record<string, string> = {}, input = ''): Promise<ProcResult> {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('BASTION_ADMIN_')));
  return run('node', [BASTION_MAIN, ...args], { env: { ...clean, ...env }, input });
}

/** The one-line failure contract of the CLI. */
function assertOneLineFailure(r: ProcResult, pattern: RegExp): void {
  assert.notEqual(r.code, 0, `expected a failure, got: ${r.stdout}`);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, pattern);
}

async function device(clientId: string): Promise<MqttClient> {
  const client = await connectMqtt(`mqtts://127.0.0.1:${broker.tlsPort}`, { clientId, protocolVersion: 5, servername: 'localhost', ...clientTls(broker.pki, broker.pki.clients.client1!) });
  open.push(client);
  return client;
}

before(async () => {
  broker = await startTestBroker({ clients: ['client1'], admin: {} });
  operator = await issueClient(broker.pki, 'op-cli', { organizationalUnit: 'operators' });
  url = `https://127.0.0.1:${broker.server.admin!.port}`;
  const created = await bastion(['admin', 'token', 'create', '--name', 'cli-test', '--data-dir', broker.dataDir]);
  assert.equal(created.code, 0, created.stderr);
  token = created.stdout.trim();
});

after(async () => {
  await Promise.all(open.map((c) => c.endAsync(true).catch(() => undefined)));
  await broker.stop();
});

describe('bastion clients', () => {
  test('list and show with a token from the environment', async () => {
    const c = await device('cli-listed');
    await c.subscribeAsync('devices/client1/a', { qos: 0 });
    const env = { BASTION_ADMIN_URL: url, BASTION_ADMIN_TOKEN: token };
    const list = await bastion(['clients', 'list', '--cafile', broker.pki.caCert], env);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /^cli-listed\tcertificate\tclient1\t\S*127\.0\.0\.1\tmqtts\tsince \S+\t1 subscription/m);
    const json = await bastion(['clients', 'list', '--json', '--limit', '1', '--cafile', broker.pki.caCert], env);
    assert.equal((JSON.parse(json.stdout) as { limit: number }).limit, 1);
    const show = await bastion(['clients', 'show', 'cli-listed', '--cafile', broker.pki.caCert], env);
    assert.equal(show.code, 0, show.stderr);
    assert.match(show.stdout, /client id: +cli-listed/);
    assert.match(show.stdout, /devices\/client1\/a \(QoS 0\)/);
  });

  test('kick with an operator certificate disconnects the client with 0x98', async () => {
    const c = await device('cli-kicked');
    const disconnected = nextEvent<{ reasonCode?: number }>(c, 'disconnect', 5000);
    const r = await bastion(['clients', 'kick', 'cli-kicked', '--admin-url', url, '--cafile', broker.pki.caCert, '--cert', operator.cert, '--key', operator.key]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'disconnected cli-kicked');
    assert.equal((await disconnected).reasonCode, 0x98);
  });

  test('failures are one readable line and a non-zero exit', async () => {
    const ca = ['--cafile', broker.pki.caCert];
    assertOneLineFailure(await bastion(['clients', 'kick', 'nobody-here', '--admin-url', url, '--token', token, ...ca]), /^bastion: not found: no connected client with id "nobody-here"$/);
    assertOneLineFailure(await bastion(['clients', 'list', '--admin-url', url, ...ca]), /^bastion: not authenticated: authentication required/);
    assertOneLineFailure(await bastion(['clients', 'list', '--admin-url', url, '--token', 'bst_not-a-token', ...ca]), /^bastion: not authenticated: unknown or revoked token/);
    const device1 = broker.pki.clients.client1!;
    assertOneLineFailure(await bastion(['clients', 'list', '--admin-url', url, '--cert', device1.cert, '--key', device1.key, ...ca]), /^bastion: forbidden: certificate "client1" is not an operator/);
    const closed = await freePort();
    assertOneLineFailure(await bastion(['clients', 'list', '--admin-url', `https://127.0.0.1:${closed}`, '--token', token, ...ca]), new RegExp(`^bastion: admin API not reachable at https://127\\.0\\.0\\.1:${closed}`));
    assertOneLineFailure(await bastion(['clients', 'list', '--admin-url', url.replace('https:', 'http:'), '--token', token]), /^bastion: --admin-url must be https:\/\//);
    assertOneLineFailure(await bastion(['clients', 'list', '--token', token]), /^bastion: no admin API given: use --admin-url/);
    // Without --cafile the test CA is not trusted: a TLS failure, named as such.
    assertOneLineFailure(await bastion(['clients', 'list', '--admin-url', url, '--token', token]), /^bastion: TLS with the admin API at .* failed/);
  });
});

describe('bastion bans', () => {
  test('add kicks the live client and refuses it; list shows the ban; remove lifts it; bad input is one line', async () => {
    const env = { BASTION_ADMIN_URL: url, BASTION_ADMIN_TOKEN: token };
    const ca = ['--cafile', broker.pki.caCert];
    const c = await device('cli-banned');
    const disconnected = nextEvent<{ reasonCode?: number }>(c, 'disconnect', 5000);
    const added = await bastion(['bans', 'add', 'clientId', 'cli-banned', '--reason', 'testing', '--for', '1h', ...ca], env);
    assert.equal(added.code, 0, added.stderr);
    assert.match(added.stdout, /^\d+\tdeny\tclientId\tcli-banned\tuntil \S+\tby token:cli-test\ttesting$/m);
    assert.match(added.stdout, /^disconnected: cli-banned$/m);
    assert.equal((await disconnected).reasonCode, 0x98);
    await assert.rejects(device('cli-banned'));
    const id = /^(\d+)\t/.exec(added.stdout)![1]!;
    const listed = await bastion(['bans', 'list', ...ca], env);
    assert.match(listed.stdout, new RegExp(`^${id}\tdeny\tclientId\tcli-banned\t`, 'm'));
    const removed = await bastion(['bans', 'remove', id, ...ca], env);
    assert.equal(removed.code, 0, removed.stderr);
    await device('cli-banned');
    assertOneLineFailure(await bastion(['bans', 'remove', id, ...ca], env), /^bastion: not found: no ban with id/);
    assertOneLineFailure(await bastion(['bans', 'add', 'planet', 'x', ...ca], env), /^bastion: ban kind "planet" is not one of/);
    assertOneLineFailure(await bastion(['bans', 'add', 'ip', '10.0.0.1', '--for', 'soon', ...ca], env), /^bastion: --for soon: expected a duration/);
  });

  test('--allow adds an allow-list entry (listed with --allow), the new kinds are checked before anything is sent', async () => {
    const env = { BASTION_ADMIN_URL: url, BASTION_ADMIN_TOKEN: token };
    const ca = ['--cafile', broker.pki.caCert];
    // The whole loopback range: every test client stays allowed.
    const added = await bastion(['bans', 'add', '--allow', 'cidr', '127.0.0.0/8', '--reason', 'lab only', ...ca], env);
    assert.equal(added.code, 0, added.stderr);
    assert.match(added.stdout, /^\d+\tallow\tcidr\t127\.0\.0\.0\/8\tpermanent\tby token:cli-test\tlab only$/m);
    assert.doesNotMatch(added.stdout, /disconnected/);
    const id = /^(\d+)\t/.exec(added.stdout)![1]!;
    await bastion(['bans', 'add', 'certFingerprint', 'AB'.repeat(32), '--for', '1h', ...ca], env);
    const allowOnly = await bastion(['bans', 'list', '--allow', ...ca], env);
    assert.deepEqual(allowOnly.stdout.trim().split('\n').map((l) => l.split('\t').slice(1, 4).join(' ')), ['allow cidr 127.0.0.0/8']);
    const byKind = await bastion(['bans', 'list', '--kind', 'certFingerprint', ...ca], env);
    assert.match(byKind.stdout, /^\d+\tdeny\tcertFingerprint\t(AB:){31}AB\tuntil /m);
    await device('inside-the-allow-list');
    const removed = await bastion(['bans', 'remove', id, ...ca], env);
    assert.equal(removed.stdout.trim(), `removed allow entry ${id}`);
    assertOneLineFailure(await bastion(['bans', 'add', 'cidr', '10.1.2.3/8', ...ca], env), /^bastion: cidr "10\.1\.2\.3\/8" has host bits set below the prefix: did you mean 10\.0\.0\.0\/8\?$/);
    assertOneLineFailure(await bastion(['bans', 'add', 'certFingerprint', 'abcd', ...ca], env), /^bastion: certFingerprint "abcd" is not a SHA-256 fingerprint/);
    assertOneLineFailure(await bastion(['bans', 'list', '--allow', '--deny', ...ca], env), /^bastion: give --allow or --deny, not both$/);
  });
});

describe('bastion user --admin-url', () => {
  test('add, list and del go through the running broker\'s admin API', async () => {
    const api = ['--admin-url', url, '--token', token, '--cafile', broker.pki.caCert];
    const added = await bastion(['user', 'add', 'api-user', '--password-stdin', ...api], {}, 'a long password 1\n');
    assert.equal(added.code, 0, added.stderr);
    assert.equal(added.stdout.trim(), 'added user api-user');
    const changed = await bastion(['user', 'add', 'api-user', '--password-stdin', ...api], {}, 'a long password 2\n');
    assert.equal(changed.stdout.trim(), 'password changed for user api-user');
    const listed = await bastion(['user', 'list', ...api]);
    assert.match(listed.stdout, /^api-user\t\S+$/m);
    const deleted = await bastion(['user', 'del', 'api-user', ...api]);
    assert.equal(deleted.stdout.trim(), 'deleted user api-user');
    assertOneLineFailure(await bastion(['user', 'del', 'api-user', ...api]), /^bastion: not found: no user "api-user"$/);
  });
});

describe('bastion acl --admin-url', () => {
  test('explain and lint ask the running broker\'s policy', async () => {
    const api = ['--admin-url', url, '--token', token, '--cafile', broker.pki.caCert];
    const explained = await bastion(['acl', 'explain', '--client-id', 'dev-1', '--publish', 'devices/dev-1/t', '--json', ...api]);
    assert.equal(explained.code, 0, explained.stderr);
    const answer = JSON.parse(explained.stdout) as { decision: string; topic: string };
    assert.equal(answer.decision, 'allow', 'this test broker runs the explicit allow-all policy');
    assert.equal(answer.topic, 'devices/dev-1/t');
    const lint = await bastion(['acl', 'lint', '--json', ...api]);
    assert.ok(Array.isArray((JSON.parse(lint.stdout) as { findings: unknown[] }).findings), lint.stderr);
  });
});

describe('bastion admin token', () => {
  test('a duplicate name and a bad name are refused; revoking an unknown token fails', async () => {
    assertOneLineFailure(await bastion(['admin', 'token', 'create', '--name', 'cli-test', '--data-dir', broker.dataDir]), /^bastion: a token named "cli-test" exists/);
    assertOneLineFailure(await bastion(['admin', 'token', 'create', '--name', 'no spaces', '--data-dir', broker.dataDir]), /^bastion: token name "no spaces" is not valid/);
    assertOneLineFailure(await bastion(['admin', 'token', 'revoke', 'never-made', '--data-dir', broker.dataDir]), /^bastion: no token named "never-made"$/);
    assertOneLineFailure(await bastion(['admin', 'token', 'create', '--name', 'rooty', '--scope', 'root', '--data-dir', broker.dataDir]), /^bastion: --scope must be admin or viewer, not "root"$/);
  });

  test('a token is admin unless --scope viewer says otherwise; list shows each scope', async () => {
    const viewer = await bastion(['admin', 'token', 'create', '--name', 'cli-viewer', '--scope', 'viewer', '--data-dir', broker.dataDir]);
    assert.equal(viewer.code, 0, viewer.stderr);
    const listed = await bastion(['admin', 'token', 'list', '--data-dir', broker.dataDir]);
    assert.match(listed.stdout, /^cli-test\tadmin\tcreated /m);
    assert.match(listed.stdout, /^cli-viewer\tviewer\tcreated /m);
  });
});
