/**
 * The password provider with real clients over TLS: users added and deleted by the
 * `bastion user` CLI while the broker runs (seen on the next CONNECT), wrong password and
 * unknown user refused alike (MQTT.js v5 0x86, paho v3.1.1 return code 4, mosquitto_pub),
 * one scrypt per failed login whether or not the user exists, certificate + password
 * required together, and passwords on a plaintext listener only with the second opt-in.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { ClientIdentity } from '../../src/broker/ports.js';
import { PasswordHasher, realScrypt } from '../../src/security/authn/password-hash.js';
import { startAuthBroker, tlsFor, type AuthBroker } from '../helpers/authn-broker.js';
import { BASTION_MAIN, freePort, run, withTimeout } from './support.js';
import { clientTls, recordIdentities, tryMqttConnect } from './tls-support.js';

const ALICE_PASSWORD = 'alice has a long password';

function pahoV3(port: number, caFile: string, username: string, password: string): ReturnType<typeof run> {
  const script = [
    'import sys, ssl, paho.mqtt.client as mqtt',
    'c = mqtt.Client(client_id="paho-authn", protocol=mqtt.MQTTv311)',
    'c.tls_set(ca_certs=sys.argv[2], cert_reqs=ssl.CERT_REQUIRED)',
    'c.username_pw_set(sys.argv[3], sys.argv[4])',
    'c.on_connect = lambda cl, u, f, rc: (print("rc=%d" % rc), cl.disconnect())',
    'c.connect("localhost", int(sys.argv[1]), 30)',
    'c.loop_forever()',
  ].join('\n');
  return run('/usr/bin/python3', ['-c', script, String(port), caFile, username, password], { timeoutMs: 10_000 });
}

describe('password provider over TLS', () => {
  let b: AuthBroker;
  let scryptCalls = 0;
  let identities: ClientIdentity[];
  before(async () => {
    const hasher = new PasswordHasher((pw, salt, params) => {
      scryptCalls++;
      return realScrypt(pw, salt, params);
    });
    b = await startAuthBroker({
      listeners: (pki) => [
        { name: 'pw', protocol: 'mqtts', host: '127.0.0.1', port: 0, tls: tlsFor(pki, 'none'), auth: { providers: ['password'] } },
        { name: 'both', protocol: 'mqtts', host: '127.0.0.1', port: 0, tls: tlsFor(pki, 'optional'), auth: { providers: ['password'], requireCertificate: true } },
      ],
      passwordHasher: hasher,
    });
    identities = recordIdentities(b.server);
    // Added while the broker runs: the next CONNECT must see it.
    const r = await b.addUser('alice', ALICE_PASSWORD);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'added user alice\n');
  });
  after(() => b.stop());

  const ca = (): Buffer => clientTls(b.pki, b.pki.clients['device1']!).ca;
  const connect = (listener: string, clientId: string, extra: Record<string, unknown>) =>
    tryMqttConnect(b.port(listener), { clientId, protocolVersion: 5, ca: ca(), ...extra });

  test('a user added by the CLI logs in on the next CONNECT; identity carries the user name', async () => {
    assert.deepEqual(await connect('pw', 'c-alice', { username: 'alice', password: ALICE_PASSWORD }), { connack: 0 });
    const id = identities.at(-1)!;
    assert.deepEqual([id.principal, id.method, id.username, id.certificate], ['alice', 'password', 'alice', undefined]);
  });

  test('wrong password and unknown user are both 0x86 and both cost exactly one scrypt', async () => {
    let before = scryptCalls;
    assert.deepEqual(await connect('pw', 'c-wrong', { username: 'alice', password: 'not the password' }), { connack: 0x86 });
    assert.equal(scryptCalls - before, 1);
    before = scryptCalls;
    assert.deepEqual(await connect('pw', 'c-unknown', { username: 'mallory', password: 'not the password' }), { connack: 0x86 });
    assert.equal(scryptCalls - before, 1, 'an unknown user still runs one scrypt (against the dummy hash)');
    const refused = await b.logger.waitFor('connection refused', { clientId: 'c-unknown' });
    assert.equal(refused.obj['reason'], 'bad user name or password');
  });

  test('no credentials on a password-only listener: 0x87', async () => {
    assert.deepEqual(await connect('pw', 'c-none', {}), { connack: 0x87 });
  });

  test('mosquitto_pub: right password publishes, wrong password is refused', async () => {
    const args = ['-h', 'localhost', '-p', String(b.port('pw')), '--cafile', b.pki.caCert, '-i', 'mosq-authn', '-t', 'a/b', '-m', 'x', '-u', 'alice'];
    const ok = await run('mosquitto_pub', [...args, '-P', ALICE_PASSWORD], { timeoutMs: 10_000 });
    assert.equal(ok.code, 0, ok.stderr);
    const bad = await run('mosquitto_pub', [...args, '-P', 'wrong password'], { timeoutMs: 10_000 });
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /bad user name or password/i);
  });

  test('paho (MQTT 3.1.1): unknown user gets return code 4, alice gets 0', async () => {
    const unknown = await pahoV3(b.port('pw'), b.pki.caCert, 'nobody', 'whatever password');
    assert.match(unknown.stdout, /rc=4/, unknown.stderr);
    const ok = await pahoV3(b.port('pw'), b.pki.caCert, 'alice', ALICE_PASSWORD);
    assert.match(ok.stdout, /rc=0/, ok.stderr);
  });

  test('requireCertificate: certificate alone 0x86, password alone 0x87, both admitted with the certificate kept', async () => {
    const device = clientTls(b.pki, b.pki.clients['device1']!);
    assert.deepEqual(await connect('both', 'c-cert-only', { cert: device.cert, key: device.key }), { connack: 0x86 });
    assert.deepEqual(await connect('both', 'c-pw-only', { username: 'alice', password: ALICE_PASSWORD }), { connack: 0x87 });
    assert.deepEqual(await connect('both', 'c-both', { cert: device.cert, key: device.key, username: 'alice', password: ALICE_PASSWORD }), { connack: 0 });
    const id = identities.at(-1)!;
    assert.deepEqual([id.principal, id.method, id.username, id.certificate?.commonName], ['alice', 'password', 'alice', 'device1']);
  });

  test('a password changed or a user deleted by the CLI applies to the next CONNECT', async () => {
    const added = await b.addUser('bob', 'bob has an old password');
    assert.equal(added.stdout, 'added user bob\n', added.stderr);
    const changed = await b.addUser('bob', 'bob has a long password');
    assert.equal(changed.stdout, 'password changed for user bob\n', changed.stderr);
    assert.deepEqual(await connect('pw', 'c-bob0', { username: 'bob', password: 'bob has an old password' }), { connack: 0x86 });
    assert.deepEqual(await connect('pw', 'c-bob', { username: 'bob', password: 'bob has a long password' }), { connack: 0 });
    const del = await run('node', [BASTION_MAIN, 'user', 'del', 'bob', '--data-dir', b.dataDir]);
    assert.equal(del.code, 0, del.stderr);
    assert.deepEqual(await connect('pw', 'c-bob2', { username: 'bob', password: 'bob has a long password' }), { connack: 0x86 });
    const list = await run('node', [BASTION_MAIN, 'user', 'list', '--json', '--data-dir', b.dataDir]);
    assert.deepEqual((JSON.parse(list.stdout) as Array<{ name: string }>).map((u) => u.name), ['alice']);
  });
});

describe('bastion user CLI and plaintext listeners', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'bastion-authn-cli-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('refuses short and empty passwords, a missing password and bad names, in one stderr line', async () => {
    const dataDir = join(dir, 'data');
    const cases: Array<[string[], string, RegExp]> = [
      [['user', 'add', 'carol', '--password-stdin'], 'short\n', /^bastion: the password is shorter than 10 characters\n$/],
      [['user', 'add', 'carol', '--password-stdin'], '\n', /^bastion: the password is empty\n$/],
      [['user', 'add', 'carol'], '', /^bastion: no password: use --password-stdin \(stdin is not a terminal\)\n$/],
      [['user', 'add', 'car/ol', '--password-stdin'], 'long enough password\n', /^bastion: user name "car\/ol" is not valid/],
      [['user', 'del', 'nobody'], '', /^bastion: no user nobody\n$/],
    ];
    for (const [args, input, err] of cases) {
      const r = await run('node', [BASTION_MAIN, ...args, '--data-dir', dataDir], { input });
      assert.equal(r.code, 1, args.join(' '));
      assert.match(r.stderr, err);
    }
  });

  test('on a terminal, user add prompts twice and does not echo the password', async () => {
    const dataDir = join(dir, 'tty-data');
    const secret = 'typed on a terminal';
    // `script` gives the command a pseudo-terminal; we answer each prompt once it shows.
    const child = spawn('script', ['-qec', `node ${BASTION_MAIN} user add tina --data-dir ${dataDir}`, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let answered = 0;
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString('utf8');
      const prompts = (out.match(/Password( \(again\))?: /g) ?? []).length;
      while (answered < prompts) {
        answered++;
        child.stdin.write(`${secret}\r`);
      }
    });
    const code = await withTimeout(new Promise<number | null>((r) => child.once('exit', r)), 20_000, 'user add on a pty');
    assert.equal(code, 0, out);
    assert.equal(answered, 2);
    assert.match(out, /added user tina/);
    assert.ok(!out.includes(secret), 'the password was not echoed');
    const list = await run('node', [BASTION_MAIN, 'user', 'list', '--json', '--data-dir', dataDir]);
    assert.deepEqual((JSON.parse(list.stdout) as Array<{ name: string }>).map((u) => u.name), ['tina']);
  });

  test('an unreadable JWT key file stops bastion serve with one line', async () => {
    const port = await freePort();
    const cfg = join(dir, 'jwt.yaml');
    writeFileSync(
      cfg,
      [
        `dataDir: ${JSON.stringify(join(dir, 'data-jwt'))}`,
        'listeners:',
        '  - { name: plain, protocol: mqtt, host: 127.0.0.1, port: ' + String(port) + ', insecure: true, passwordsInCleartext: true, auth: { providers: [jwt] } }',
        'authn:',
        '  jwt: { issuer: i, audience: a, publicKeyFile: missing.pem }',
        '',
      ].join('\n'),
    );
    const r = await run('node', [BASTION_MAIN, 'serve', '--config', cfg], { timeoutMs: 10_000 });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^bastion: cannot read the JWT key file .*missing\.pem: ENOENT\n$/);
  });

  test('password on a plaintext listener: config error without passwordsInCleartext; mosquitto_pub logs in with it', async () => {
    const port = await freePort();
    const listener = ['listeners:', '  - name: plain', '    protocol: mqtt', '    host: 127.0.0.1', `    port: ${port}`, '    insecure: true', '    auth:', '      providers: [password]'];
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, [`dataDir: ${JSON.stringify(join(dir, 'data'))}`, ...listener, ''].join('\n'));
    const refused = await run('node', [BASTION_MAIN, 'serve', '--config', bad], { timeoutMs: 10_000 });
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /^bastion: config error at listeners\[0\]\.auth\.providers: password on a plaintext \(protocol: mqtt\) listener sends secrets in the clear; say passwordsInCleartext: true to accept that\n$/);

    const b = await startAuthBroker({ listeners: () => [{ name: 'plain', protocol: 'mqtt', host: '127.0.0.1', port: 0, insecure: true, passwordsInCleartext: true, auth: { providers: ['password'] } }] });
    try {
      assert.equal((await b.addUser('dave', 'dave has a long password')).code, 0);
      const base = ['-h', '127.0.0.1', '-p', String(b.port('plain')), '-t', 'a/b', '-m', 'x', '-u', 'dave'];
      assert.equal((await run('mosquitto_pub', [...base, '-P', 'dave has a long password'])).code, 0);
      const wrong = await run('mosquitto_pub', [...base, '-P', 'dave has a wrong password']);
      assert.match(wrong.stderr, /bad user name or password/i);
    } finally {
      await b.stop();
    }
  });
});
