/**
 * Automatic bans an attacker cannot aim at someone else (issue 11, part 5), with a real
 * broker (port 0, our PKI, SQLite admin.db, the HTTPS admin API) and MQTT.js clients bound
 * to 127.0.0.x source addresses: wrong passwords under a certificate device's client id ban
 * the attacker's address and the user name it tried, never the device; the banned user
 * name refuses its password logins while the device connects; the ban is on the broker's
 * log at warn; an operator's client-id ban still refuses (and closes) the device.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IClientOptions } from 'mqtt';
import type { SecurityEvent } from '../../src/core/security-events.js';
import { parseConfig } from '../../src/server/load-config.js';
import { startServer, type BastionServer } from '../../src/server/server.js';
import { adminRequest, type AdminAnswer, type AdminCall } from '../helpers/admin.js';
import { issueClient, makeTestPki, type TestClientFiles, type TestPki } from '../helpers/pki.js';
import { BASTION_MAIN, connectMqtt, endQuietly, Inbox, nextEvent, run } from './support.js';
import { clientTls, RecordingLogger, tryMqttConnect } from './tls-support.js';

const ALICE = 'alice has a long password';
const WRONG = 'not the password at all';
const ATTACKER = '127.0.0.5';
const DEVICE_ADDR = '127.0.0.6';
const ALICE_ADDR = '127.0.0.7';

let dir: string;
let pki: TestPki;
let operator: TestClientFiles;
let dev1: TestClientFiles;
let server: BastionServer;
let logger: RecordingLogger;
const events = new Inbox<SecurityEvent>();

const port = (name: 'pw' | 'mtls'): number => server.listeners[name === 'pw' ? 0 : 1]!.port;
const api = (call: AdminCall): Promise<AdminAnswer> => adminRequest(pki, server.admin!.port, { client: operator, ...call });
/** TLS options with a source address: MQTT.js hands its options to tls.connect, which binds the socket there. */
const from = <T extends IClientOptions>(localAddress: string, opts: T): T => ({ ...opts, localAddress }) as T;
const deviceOpts = (): IClientOptions & { clientId: string } => from(DEVICE_ADDR, { clientId: 'dev1', protocolVersion: 5, servername: 'localhost', ...clientTls(pki, dev1) });
const aliceOpts = (clientId: string): IClientOptions & { clientId: string } =>
  from(ALICE_ADDR, { clientId, protocolVersion: 5, servername: 'localhost', ca: readFileSync(pki.caCert), username: 'alice', password: ALICE });

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'bastion-bans-aimed-'));
  pki = await makeTestPki(join(dir, 'pki'), []);
  operator = await issueClient(pki, 'op-bans', { organizationalUnit: 'operators' });
  dev1 = await issueClient(pki, 'dev1');
  const tls = (clientCerts: string) => ({ cert: pki.serverCert, key: pki.serverKey, ca: pki.caCert, clientCerts });
  const dataDir = join(dir, 'data');
  const { config, baseDir } = parseConfig(
    {
      dataDir,
      listeners: [
        { name: 'pw', protocol: 'mqtts', host: '127.0.0.1', port: 0, tls: tls('none'), auth: { providers: ['password'] } },
        { name: 'mtls', protocol: 'mqtts', host: '127.0.0.1', port: 0, tls: tls('required') },
      ],
      persistence: { enabled: false },
      log: { level: 'silent' },
      authz: { policy: 'allow-all-INSECURE' },
      // The secure defaults: 10 failures within 60 s start a 60 s ban.
      admin: { port: 0, tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.caCert } },
    },
    dir,
  );
  const added = await run('node', [BASTION_MAIN, 'user', 'add', 'alice', '--password-stdin', '--data-dir', dataDir], { input: `${ALICE}\n` });
  assert.equal(added.code, 0, added.stderr);
  logger = new RecordingLogger();
  server = await startServer({ config, baseDir, logger });
  server.broker.events.on((e) => events.push(e));
});

after(async () => {
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('automatic bans key on the attacker, not on a client id', () => {
  test('12 wrong passwords under client id dev1 from 127.0.0.5: the certificate device dev1 from 127.0.0.6 still connects', async () => {
    const ca = readFileSync(pki.caCert);
    for (let i = 0; i < 12; i++) {
      const r = await tryMqttConnect(port('pw'), from(ATTACKER, { clientId: 'dev1', protocolVersion: 5, ca, username: 'alice', password: WRONG }));
      assert.notDeepEqual(r, { connack: 0 });
    }
    await events.waitFor((es) => es.some((e) => e.type === 'ban.added' && e.kind === 'ip' && e.value === ATTACKER), 5000, 'the address ban');
    const bans = events.items.filter((e): e is Extract<SecurityEvent, { type: 'ban.added' }> => e.type === 'ban.added');
    assert.ok(!bans.some((b) => b.kind === 'clientId'), `no automatic client-id ban: ${JSON.stringify(bans)}`);
    assert.deepEqual(await tryMqttConnect(port('mtls'), deviceOpts()), { connack: 0 }, 'the device with its certificate is not locked out');
  });

  test("the attacker's address is banned: cut at accept, even with the right password", async () => {
    const refused = await tryMqttConnect(port('pw'), from(ATTACKER, { clientId: 'attacker-right', protocolVersion: 5, ca: readFileSync(pki.caCert), username: 'alice', password: ALICE }));
    assert.ok('closed' in refused, `expected no CONNACK, got ${JSON.stringify(refused)}`);
    await events.waitFor((es) => es.some((e) => e.type === 'connection.refused' && e.stage === 'accept' && e.remoteAddress === ATTACKER && /banned/.test(e.reason)), 5000, 'refusal at accept');
    const line = await logger.waitFor('automatic ban', { kind: 'ip', value: ATTACKER, createdBy: 'auto:brute-force' });
    assert.equal(line.level, 'warn');
    assert.equal(line.obj.seconds, 60);
    assert.match(String(line.obj.reason), /^10 authentication failures within 60s from this address/);
  });

  test('a certificate device behind the banned address still connects where certificates are required', async () => {
    await events.waitFor((es) => es.some((e) => e.type === 'ban.added' && e.kind === 'ip' && e.value === ATTACKER), 5000, 'the address ban');
    assert.deepEqual(await tryMqttConnect(port('mtls'), from(ATTACKER, { ...deviceOpts(), localAddress: ATTACKER, clientId: 'dev1-nat' })), { connack: 0 });
  });

  test('the user name tried is banned: alice with the right password from a clean address gets 0x8A, the certificate device is fine', async () => {
    const line = await logger.waitFor('automatic ban', { kind: 'username', value: 'alice' });
    assert.equal(line.level, 'warn');
    assert.equal(line.obj.seconds, 60);
    assert.match(String(line.obj.reason), /for this user name/);
    assert.deepEqual(await tryMqttConnect(port('pw'), aliceOpts('alice-phone')), { connack: 0x8a });
    assert.deepEqual(await tryMqttConnect(port('mtls'), deviceOpts()), { connack: 0 });
  });

  test("an operator's client-id ban still closes and refuses the certificate device", async () => {
    const live = await connectMqtt(`mqtts://127.0.0.1:${port('mtls')}`, deviceOpts());
    try {
      const gone = nextEvent<{ reasonCode?: number }>(live, 'disconnect', 5000);
      const r = await api({ method: 'POST', path: '/api/v1/bans', body: { kind: 'clientId', value: 'dev1', reason: 'decommissioned' } });
      assert.equal(r.status, 201, r.text);
      assert.deepEqual(r.json.disconnected, ['dev1']);
      assert.equal((await gone).reasonCode, 0x98);
      assert.deepEqual(await tryMqttConnect(port('mtls'), deviceOpts()), { connack: 0x8a });
    } finally {
      await endQuietly(live);
    }
  });
});
