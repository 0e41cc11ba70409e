/**
 * Bans with real clients against a real broker (port 0, our PKI, SQLite admin.db, the
 * HTTPS admin API): brute force by address (mosquitto_pub with wrong passwords; the next
 * connection is cut at accept, another address still logs in; the second ban of the same
 * address lasts twice as long), brute force on one user name from two addresses (that user
 * name gets 0x8A, its live session stays, no client id is banned), flapping (an MQTT.js client in a
 * connect loop is banned), and operator entries: CIDR deny, an allow list, a certificate
 * fingerprint ban against an mTLS client, and a ban that lifts itself when it expires.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import net from 'node:net';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { SecurityEvent } from '../../src/core/security-events.js';
import { parseConfig } from '../../src/server/load-config.js';
import { startServer, type BastionServer } from '../../src/server/server.js';
import { adminRequest, type AdminAnswer, type AdminCall } from '../helpers/admin.js';
import { issueClient, makeTestPki, type TestClientFiles, type TestPki } from '../helpers/pki.js';
import { BASTION_MAIN, connectMqtt, endQuietly, Inbox, nextEvent, run, withTimeout, type ProcResult } from './support.js';
import { clientTls, tryMqttConnect, type ConnectOutcome } from './tls-support.js';

const ALICE = 'alice has a long password';
const WRONG = 'not the password at all';

let dir: string;
let pki: TestPki;
let operator: TestClientFiles;

interface BansBroker {
  server: BastionServer;
  port(name: 'plain' | 'pw' | 'mtls' | 'dual'): number;
  dataDir: string;
  events: Inbox<SecurityEvent>;
  api(call: AdminCall): Promise<AdminAnswer>;
  stop(): Promise<void>;
}

let brokers = 0;
async function startBansBroker(limits: Record<string, unknown>, dualStack = false): Promise<BansBroker> {
  const dataDir = join(dir, `data-${++brokers}`);
  const tls = (clientCerts: string) => ({ cert: pki.serverCert, key: pki.serverKey, ca: pki.caCert, clientCerts });
  const { config, baseDir } = parseConfig(
    {
      dataDir,
      listeners: [
        { name: 'plain', protocol: 'mqtt', host: '127.0.0.1', port: 0, insecure: true, allowAnonymous: true },
        { name: 'pw', protocol: 'mqtts', host: '127.0.0.1', port: 0, tls: tls('none'), auth: { providers: ['password'] } },
        { name: 'mtls', protocol: 'mqtts', host: '127.0.0.1', port: 0, tls: tls('required') },
        // IPv6 and IPv4 on one socket: IPv4 clients show up as ::ffff:a.b.c.d.
        ...(dualStack ? [{ name: 'dual', protocol: 'mqtt', host: '::', port: 0, insecure: true, allowAnonymous: true }] : []),
      ],
      persistence: { enabled: false },
      log: { level: 'silent' },
      authz: { policy: 'allow-all-INSECURE' },
      limits,
      admin: { port: 0, tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.caCert } },
    },
    dir,
  );
  const server = await startServer({ config, baseDir });
  const events = new Inbox<SecurityEvent>();
  server.broker.events.on((e) => events.push(e));
  const names = ['plain', 'pw', 'mtls', 'dual'];
  return {
    server,
    port: (name) => server.listeners[names.indexOf(name)]!.port,
    dataDir,
    events,
    api: (call) => adminRequest(pki, server.admin!.port, { client: operator, ...call }),
    stop: () => server.stop(),
  };
}

/** mosquitto_pub (MQTT 3.1.1) as `user` (alice) over TLS on the password listener, from `bind` when given. */
function mosquittoPub(port: number, clientId: string, password: string, bind?: string, user = 'alice'): Promise<ProcResult> {
  return run(
    'mosquitto_pub',
    ['-h', '127.0.0.1', '-p', String(port), '--cafile', pki.caCert, '-u', user, '-P', password, '-i', clientId, '-t', 'bans/t', '-m', 'x', ...(bind !== undefined ? ['-A', bind] : [])],
    { timeoutMs: 10_000 },
  );
}

/** An MQTT.js v5 client on the plaintext listener, its socket bound to `localAddress` (MQTT.js's own TCP builder ignores that option). */
function plainClient(port: number, opts: IClientOptions & { localAddress?: string; host?: string }): MqttClient {
  const { localAddress, host, ...rest } = opts;
  const target = host ?? '127.0.0.1';
  return new mqtt.MqttClient(() => net.connect({ host: target, port, localAddress: localAddress ?? target }), { reconnectPeriod: 0, connectTimeout: 5000, protocolVersion: 5, ...rest });
}

/** A connected plaintext client (CONNACK 0), or a rejection. */
async function connectPlain(port: number, opts: IClientOptions & { localAddress?: string }, setup?: (c: MqttClient) => void): Promise<MqttClient> {
  const client = plainClient(port, opts);
  setup?.(client);
  try {
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        client.once('connect', () => resolve());
        client.once('error', reject);
        client.once('close', () => reject(new Error('closed before CONNACK')));
      }),
      6000,
      'CONNACK',
    );
  } catch (err) {
    client.end(true);
    throw err;
  }
  return client;
}

/** One plaintext MQTT.js v5 connection attempt: its CONNACK code, or how it closed without one. */
async function tryPlain(port: number, opts: IClientOptions & { clientId: string; localAddress?: string; host?: string }): Promise<ConnectOutcome> {
  const client = plainClient(port, opts);
  try {
    return await withTimeout(
      new Promise<ConnectOutcome>((resolve) => {
        client.once('connect', () => resolve({ connack: 0 }));
        client.once('error', (err: Error & { code?: unknown }) => resolve(typeof err.code === 'number' ? { connack: err.code } : { closed: err.message }));
        client.once('close', () => resolve({ closed: 'closed before CONNACK' }));
      }),
      6000,
      'MQTT connect outcome',
    );
  } finally {
    await endQuietly(client);
  }
}

/** TLS options with a source address: MQTT.js hands its options to tls.connect, which binds the socket there. */
function from<T extends IClientOptions>(localAddress: string, opts: T): T {
  return { ...opts, localAddress } as T;
}

type BanJson = { id: number; kind: string; value: string; list: string; createdBy: string; createdAt: string; expiresAt: string | null; reason: string };

async function listBans(b: BansBroker, query = ''): Promise<BanJson[]> {
  const r = await b.api({ path: `/api/v1/bans${query}` });
  assert.equal(r.status, 200, r.text);
  return r.json.bans as BanJson[];
}

const lengthMs = (ban: BanJson): number => Date.parse(ban.expiresAt!) - Date.parse(ban.createdAt);
const isEvent = <T extends SecurityEvent['type']>(type: T) => (e: SecurityEvent): e is Extract<SecurityEvent, { type: T }> => e.type === type;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'bastion-bans-'));
  pki = await makeTestPki(join(dir, 'pki'), ['client1', 'client2']);
  operator = await issueClient(pki, 'op-bans', { organizationalUnit: 'operators' });
});

after(() => rmSync(dir, { recursive: true, force: true }));

describe('brute force', () => {
  let b: BansBroker;
  before(async () => {
    b = await startBansBroker({ authFailures: { maxFailures: 3, windowSeconds: 60, banSeconds: 10, maxBanSeconds: 3600 } });
    const added = await run('node', [BASTION_MAIN, 'user', 'add', 'alice', '--password-stdin', '--data-dir', b.dataDir], { input: `${ALICE}\n` });
    assert.equal(added.code, 0, added.stderr);
  });
  after(() => b.stop());

  test('wrong passwords from one address end in an address ban, enforced at accept; another address still logs in; the next ban is twice as long', async () => {
    const pw = b.port('pw');
    const ca = readFileSync(pki.caCert);
    // A different user name each time: only the address adds up here.
    for (let i = 0; i < 3; i++) {
      const r = await mosquittoPub(pw, `bf-${i}`, WRONG, undefined, `nobody-${i}`);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /bad user name or password|not authori[sz]ed/i, r.stderr);
    }
    const [added] = (await b.events.waitFor((es) => es.some((e) => e.type === 'ban.added' && e.kind === 'ip'), 5000, 'the address ban')).filter(isEvent('ban.added'));
    assert.deepEqual([added!.value, added!.createdBy, added!.auto, added!.list], ['127.0.0.1', 'auto:brute-force', true, 'deny']);

    // Even the right password: the connection is cut at accept, before TLS and before authentication.
    const failuresBefore = b.events.items.filter(isEvent('auth.failure')).length;
    const refused = await tryMqttConnect(pw, { clientId: 'bf-right', protocolVersion: 5, ca, username: 'alice', password: ALICE });
    assert.ok('closed' in refused, `expected no CONNACK, got ${JSON.stringify(refused)}`);
    await b.events.waitFor((es) => es.some((e) => e.type === 'connection.refused' && e.stage === 'accept' && e.remoteAddress === '127.0.0.1' && /banned/.test(e.reason)), 5000, 'refusal at accept');
    assert.equal(b.events.items.filter(isEvent('auth.failure')).length, failuresBefore, 'refused before authentication: no new failures counted');

    const first = (await listBans(b, '?kind=ip')).find((x) => x.value === '127.0.0.1')!;
    assert.equal(first.createdBy, 'auto:brute-force');
    assert.match(first.reason, /^3 authentication failures within 60s from this address/);
    assert.equal(lengthMs(first), 10_000);

    // Another source address with the right password is not affected.
    assert.deepEqual(await tryMqttConnect(pw, from('127.0.0.2', { clientId: 'bf-other-ip', protocolVersion: 5, ca, username: 'alice', password: ALICE })), { connack: 0 });

    // The ban ends by itself (announced as removed by expiry); three more failures: twice as long.
    await b.events.waitFor((es) => es.some((e) => e.type === 'ban.removed' && e.kind === 'ip' && e.value === '127.0.0.1' && e.removedBy === 'expiry'), 20_000, 'the ban to expire');
    for (let i = 0; i < 3; i++) assert.notEqual((await mosquittoPub(pw, `bf2-${i}`, WRONG, undefined, `nobody2-${i}`)).code, 0);
    await b.events.waitFor((es) => es.filter((e) => e.type === 'ban.added' && e.kind === 'ip' && e.value === '127.0.0.1').length === 2, 5000, 'the second address ban');
    const second = (await listBans(b, '?kind=ip')).find((x) => x.value === '127.0.0.1')!;
    assert.notEqual(second.id, first.id);
    assert.equal(lengthMs(second), 20_000, 'the second ban of the same address lasts twice as long');
    assert.match(second.reason, /automatic ban 2, 20s/);
    // `bastion bans list` shows the automatic ban too.
    const token = await run('node', [BASTION_MAIN, 'admin', 'token', 'create', '--name', 'bans-test', '--data-dir', b.dataDir]);
    assert.equal(token.code, 0, token.stderr);
    const cli = await run('node', [BASTION_MAIN, 'bans', 'list', '--deny', '--kind', 'ip', '--admin-url', `https://127.0.0.1:${b.server.admin!.port}`, '--cafile', pki.caCert], {
      env: { ...process.env, BASTION_ADMIN_TOKEN: token.stdout.trim() },
    });
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, new RegExp(`^${second.id}\\tdeny\\tip\\t127\\.0\\.0\\.1\\tuntil \\S+\\tby auto:brute-force\\t3 authentication failures`, 'm'));
  });

  test('failures for one user name from several addresses ban that user name (0x8A) without closing its live session; nothing is banned by client id', async () => {
    const pw = b.port('pw');
    const ca = readFileSync(pki.caCert);
    const live = await connectMqtt(`mqtts://127.0.0.1:${pw}`, from('127.0.0.6', { clientId: 'victim', protocolVersion: 5, ca, servername: 'localhost', username: 'alice', password: ALICE }));
    try {
      // Each attempt under its own client id: the user name tried is what adds up.
      for (const [i, addr] of ['127.0.0.3', '127.0.0.4', '127.0.0.3'].entries()) assert.notEqual((await mosquittoPub(pw, `guess-${i}`, WRONG, addr)).code, 0);
      await b.events.waitFor((es) => es.some((e) => e.type === 'ban.added' && e.kind === 'username' && e.value === 'alice'), 5000, 'the user-name ban');
      const bans = await listBans(b);
      assert.ok(!bans.some((x) => x.kind === 'ip' && (x.value === '127.0.0.3' || x.value === '127.0.0.4')), 'neither address reached the limit');
      assert.ok(!bans.some((x) => x.kind === 'clientId'), 'no client id is banned automatically');
      const userBan = bans.find((x) => x.kind === 'username' && x.value === 'alice')!;
      assert.equal(userBan.createdBy, 'auto:brute-force');
      assert.equal(lengthMs(userBan), 10_000, 'temporary');
      // The right password, from a clean address: refused at admission as banned.
      assert.deepEqual(await tryMqttConnect(pw, from('127.0.0.5', { clientId: 'victim-2', protocolVersion: 5, ca, username: 'alice', password: ALICE })), { connack: 0x8a });
      // The session that proved the credentials is still there and working.
      assert.equal(live.connected, true);
      await live.publishAsync('bans/still-here', 'x', { qos: 1 });
    } finally {
      await endQuietly(live);
    }
  });
});

describe('flapping', () => {
  let b: BansBroker;
  before(async () => {
    b = await startBansBroker({ flapping: { maxConnects: 3, windowSeconds: 60, banSeconds: 60 } });
  });
  after(() => b.stop());

  test('a client id connecting in a loop past maxConnects is disconnected and then refused with 0x8A; another id is unaffected', async () => {
    const plain = b.port('plain');
    for (let i = 0; i < 3; i++) {
      const c = await connectPlain(plain, { clientId: 'flappy' });
      await c.endAsync();
    }
    // The fourth session opens, crosses the line, and is closed by the broker (0x98).
    const disconnects = new Inbox<number | undefined>();
    const fourth = await connectPlain(plain, { clientId: 'flappy' }, (c) => c.on('disconnect', (p) => disconnects.push(p.reasonCode)));
    await disconnects.waitForCount(1, 5000, 'DISCONNECT of the flapping client');
    assert.equal(disconnects.items[0], 0x98);
    await endQuietly(fourth);
    const ban = b.events.items.filter(isEvent('ban.added')).find((e) => e.value === 'flappy');
    assert.equal(ban?.createdBy, 'auto:flapping');
    assert.equal(ban?.kind, 'clientId');
    assert.deepEqual(await tryPlain(b.port('plain'), { clientId: 'flappy' }), { connack: 0x8a });
    assert.deepEqual(await tryPlain(b.port('plain'), { clientId: 'steady' }), { connack: 0 });
    const listed = (await listBans(b, '?list=deny&kind=clientId')).find((x) => x.value === 'flappy')!;
    assert.equal(lengthMs(listed), 60_000);
  });
});

describe('operator entries', () => {
  let b: BansBroker;
  const open: MqttClient[] = [];
  before(async () => {
    b = await startBansBroker({}, true);
  });
  after(async () => {
    await Promise.all(open.map(endQuietly));
    await b.stop();
  });

  test('a CIDR ban refuses 127.0.0.2 at accept while 127.0.0.1 connects; removing it lets 127.0.0.2 in', async () => {
    const plain = b.port('plain');
    const r = await b.api({ method: 'POST', path: '/api/v1/bans', body: { kind: 'cidr', value: '127.0.0.2/32', reason: 'test range' } });
    assert.equal(r.status, 201, r.text);
    const ban = r.json.ban as BanJson;
    assert.deepEqual([ban.kind, ban.value, ban.list], ['cidr', '127.0.0.2/32', 'deny']);
    const refused = await tryPlain(plain, { clientId: 'from-2', localAddress: '127.0.0.2' });
    assert.ok('closed' in refused, JSON.stringify(refused));
    await b.events.waitFor((es) => es.some((e) => e.type === 'connection.refused' && e.stage === 'accept' && e.remoteAddress === '127.0.0.2'), 5000, 'refusal at accept');
    assert.deepEqual(await tryPlain(plain, { clientId: 'from-1', localAddress: '127.0.0.1' }), { connack: 0 });
    assert.equal((await b.api({ method: 'DELETE', path: `/api/v1/bans/${ban.id}` })).status, 200);
    assert.deepEqual(await tryPlain(plain, { clientId: 'from-2', localAddress: '127.0.0.2' }), { connack: 0 });
  });

  test('IPv6 and dual-stack: a v6 range refuses ::1 at accept; an IPv4 range catches IPv4 clients seen as ::ffff:a.b.c.d', async () => {
    const dual = b.port('dual');
    const v6 = await b.api({ method: 'POST', path: '/api/v1/bans', body: { kind: 'cidr', value: '0:0:0:0:0:0:0:0/127' } });
    assert.equal(v6.status, 201, v6.text);
    assert.equal((v6.json.ban as BanJson).value, '::/127', 'canonical IPv6 text');
    const refused = await tryPlain(dual, { clientId: 'v6-client', host: '::1' });
    assert.ok('closed' in refused, JSON.stringify(refused));
    await b.events.waitFor((es) => es.some((e) => e.type === 'connection.refused' && e.stage === 'accept' && e.remoteAddress === '::1'), 5000, 'the IPv6 refusal at accept');
    assert.deepEqual(await tryPlain(dual, { clientId: 'v4-on-dual', host: '127.0.0.1' }), { connack: 0 }, 'an IPv4 client on the same socket is not in the v6 range');
    const v4 = await b.api({ method: 'POST', path: '/api/v1/bans', body: { kind: 'cidr', value: '127.0.0.0/30' } });
    assert.equal(v4.status, 201, v4.text);
    const mapped = await tryPlain(dual, { clientId: 'v4-on-dual-2', host: '127.0.0.1' });
    assert.ok('closed' in mapped, `the IPv4 range catches ::ffff:127.0.0.1: ${JSON.stringify(mapped)}`);
    assert.deepEqual(await tryPlain(dual, { clientId: 'v4-outside', host: '127.0.0.1', localAddress: '127.0.0.9' }), { connack: 0 });
    for (const x of await listBans(b)) assert.equal((await b.api({ method: 'DELETE', path: `/api/v1/bans/${x.id}` })).status, 200);
  });

  test('an allow list admits only its addresses: live clients outside are closed, new ones cut at accept', async () => {
    const plain = b.port('plain');
    const outside = await connectPlain(plain, { clientId: 'outside', localAddress: '127.0.0.3' });
    open.push(outside);
    const gone = nextEvent<{ reasonCode?: number }>(outside, 'disconnect', 5000);
    const r = await b.api({ method: 'POST', path: '/api/v1/bans', body: { kind: 'cidr', value: '127.0.0.1/32', list: 'allow' } });
    assert.equal(r.status, 201, r.text);
    assert.deepEqual(r.json.disconnected, ['outside']);
    assert.equal((await gone).reasonCode, 0x98);
    const refused = await tryPlain(plain, { clientId: 'outside-again', localAddress: '127.0.0.3' });
    assert.ok('closed' in refused, JSON.stringify(refused));
    assert.deepEqual(await tryPlain(plain, { clientId: 'inside', localAddress: '127.0.0.1' }), { connack: 0 });
    assert.deepEqual((await listBans(b, '?list=allow')).map((x) => [x.kind, x.value]), [['cidr', '127.0.0.1/32']]);
    // A deny entry beats the allow entry.
    const deny = await b.api({ method: 'POST', path: '/api/v1/bans', body: { kind: 'ip', value: '::ffff:127.0.0.1', ttlSeconds: 60 } });
    assert.equal((deny.json.ban as BanJson).value, '127.0.0.1', 'stored in canonical form');
    assert.ok('closed' in (await tryPlain(plain, { clientId: 'inside-2', localAddress: '127.0.0.1' })));
    for (const x of await listBans(b)) assert.equal((await b.api({ method: 'DELETE', path: `/api/v1/bans/${x.id}` })).status, 200);
    assert.deepEqual(await tryPlain(plain, { clientId: 'outside-again', localAddress: '127.0.0.3' }), { connack: 0 });
  });

  test('a certificate-fingerprint ban (any spelling) closes the mTLS client and refuses it with 0x8A; another certificate connects', async () => {
    const mtls = b.port('mtls');
    const files = pki.clients['client1']!;
    const url = `mqtts://127.0.0.1:${mtls}`;
    const live = await connectMqtt(url, { clientId: 'fp-dev', protocolVersion: 5, servername: 'localhost', ...clientTls(pki, files) });
    open.push(live);
    const gone = nextEvent<{ reasonCode?: number }>(live, 'disconnect', 5000);
    const fingerprint = new X509Certificate(readFileSync(files.cert)).fingerprint256;
    const bad = await b.api({ method: 'POST', path: '/api/v1/bans', body: { kind: 'certFingerprint', value: fingerprint.slice(3) } });
    assert.equal(bad.status, 400);
    assert.match(bad.json.error ?? '', /^body\.value: certFingerprint is not a SHA-256 fingerprint/);
    const r = await b.api({ method: 'POST', path: '/api/v1/bans', body: { kind: 'certFingerprint', value: fingerprint.replace(/:/g, '').toLowerCase(), reason: 'stolen device' } });
    assert.equal(r.status, 201, r.text);
    assert.equal((r.json.ban as BanJson).value, fingerprint, 'stored as upper-case colon pairs');
    assert.deepEqual(r.json.disconnected, ['fp-dev']);
    assert.equal((await gone).reasonCode, 0x98);
    assert.deepEqual(await tryMqttConnect(mtls, { clientId: 'fp-dev-2', protocolVersion: 5, ...clientTls(pki, files) }), { connack: 0x8a });
    assert.deepEqual(await tryMqttConnect(mtls, { clientId: 'fp-other', protocolVersion: 5, ...clientTls(pki, pki.clients['client2']!) }), { connack: 0 });
    await b.api({ method: 'DELETE', path: `/api/v1/bans/${(r.json.ban as BanJson).id}` });
  });

  test('a ban with a short ttl lifts itself: refused while in force, announced as removed by expiry, then admitted', async () => {
    const plain = b.port('plain');
    const r = await b.api({ method: 'POST', path: '/api/v1/bans', body: { kind: 'clientId', value: 'short-lived', ttlSeconds: 3 } });
    assert.equal(r.status, 201, r.text);
    // 3 s, not 1: the refusal below must land while the ban is in force on a loaded 2-core CI machine.
    assert.deepEqual(await tryPlain(plain, { clientId: 'short-lived' }), { connack: 0x8a });
    await b.events.waitFor((es) => es.some((e) => e.type === 'ban.removed' && e.value === 'short-lived' && e.removedBy === 'expiry'), 10_000, 'the ban to expire');
    assert.deepEqual(await tryPlain(plain, { clientId: 'short-lived' }), { connack: 0 });
    assert.equal((await listBans(b)).length, 0);
  });
});
