/**
 * The security events the broker emits, seen by a recorder subscribed to
 * `server.broker.events` while real clients (MQTT.js, mosquitto_pub, paho) connect:
 * connection.accepted over mutual TLS with the negotiated TLS version, cipher and the
 * certificate summary; auth.failure naming the password provider (MQTT.js v5 and paho
 * v3.1.1); connection.refused for a client id that does not match the certificate and for
 * a banned client; authz.denied for a publish and a subscribe under the default device
 * policy and for a delivery refused at the re-check; auth.failure naming scram for a wrong
 * SCRAM proof; client.disconnected for an operator's kick, a ban, a revocation and a
 * protocol violation; admin.change; revocation.applied.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import mqtt, { type MqttClient } from 'mqtt';
import { EventRecorder } from '../helpers/event-recorder.js';
import { ReasonCode } from '../../src/protocol/reason-codes.js';
import { adminRequest } from '../helpers/admin.js';
import { startAuthBroker, tlsFor, type AuthBroker } from '../helpers/authn-broker.js';
import { startTestBroker, type TestBroker } from '../helpers/broker.js';
import { issueClient, type TestClientFiles } from '../helpers/pki.js';
import { connectRaw, RawClient } from '../helpers/raw-client.js';
import { ScramClient } from '../helpers/scram-client.js';
import { makeTestPki, testCa } from '../helpers/pki.js';
import { createCrl } from '../../src/pki/index.js';
import { connectMqtt, endQuietly, inboxOf, nextEvent, pubackCode, run } from './support.js';
import { clientTls, startTlsBroker, tryMqttConnect, type TlsBroker } from './tls-support.js';

const WAIT = 5000;

function certFacts(files: TestClientFiles): X509Certificate {
  return new X509Certificate(readFileSync(files.cert));
}

describe('mutual TLS broker with the default device policy and the admin API', () => {
  let b: TestBroker;
  let rec: EventRecorder;
  let operator: TestClientFiles;
  let withSans: TestClientFiles;
  const open: MqttClient[] = [];

  async function device(files: TestClientFiles, clientId: string): Promise<MqttClient> {
    const c = await connectMqtt(`mqtts://127.0.0.1:${b.tlsPort}`, { clientId, protocolVersion: 5, servername: 'localhost', ...clientTls(b.pki, files) });
    open.push(c);
    return c;
  }

  before(async () => {
    b = await startTestBroker({ clients: ['client1', 'client2'], authz: null, admin: {}, webSocket: true });
    rec = new EventRecorder(b.server.broker.events);
    operator = await issueClient(b.pki, 'op1', { organizationalUnit: 'operators' });
    withSans = await issueClient(b.pki, 'sensor7', {
      sans: [
        { type: 'dns', value: 'sensor7.devices.test' },
        { type: 'uri', value: 'spiffe://bastion.test/device/7' },
      ],
    });
  });
  after(async () => {
    await Promise.all(open.map((c) => endQuietly(c)));
    rec.stop();
    await b.stop();
  });

  test('connection.accepted over mTLS: listener, address, principal, TLS 1.3, cipher, certificate serial, fingerprint and SANs', async () => {
    await device(withSans, 'sensor7');
    const e = await rec.waitFor('connection.accepted', (x) => x.clientId === 'sensor7');
    const x509 = certFacts(withSans);
    assert.equal(e.listener, 'mqtts');
    assert.match(e.remoteAddress, /127\.0\.0\.1$/);
    assert.equal(e.principal, 'sensor7');
    assert.equal(e.method, 'certificate');
    assert.equal(e.protocolVersion, 5);
    assert.equal(e.username, undefined);
    assert.ok(e.tls !== undefined, 'a TLS connection carries its TLS summary');
    assert.equal(e.tls.version, 'TLSv1.3');
    assert.match(e.tls.cipher, /^TLS_(AES_\d+_GCM_SHA\d+|CHACHA20_POLY1305_SHA256)$/);
    assert.equal(e.tls.resumed, false);
    assert.ok(e.certificate !== undefined);
    assert.equal(e.certificate.serialNumber, x509.serialNumber);
    assert.equal(e.certificate.fingerprint256, x509.fingerprint256);
    assert.equal(e.certificate.commonName, 'sensor7');
    assert.match(e.certificate.subject, /CN=sensor7/);
    assert.match(e.certificate.issuer, /CN=/);
    assert.deepEqual(e.certificate.sans, { dns: ['sensor7.devices.test'], uri: ['spiffe://bastion.test/device/7'], ip: [], email: [] });
  });

  test('over wss the TLS summary and certificate come from the TLS socket under the WebSocket', async () => {
    const c = await connectMqtt(`wss://127.0.0.1:${b.wssPort}/mqtt`, { clientId: 'client1-wss', protocolVersion: 5, rejectUnauthorized: true, ...clientTls(b.pki, b.pki.clients.client1!) });
    open.push(c);
    const e = await rec.waitFor('connection.accepted', (x) => x.clientId === 'client1-wss');
    assert.deepEqual([e.listener, e.principal, e.tls?.version, e.certificate?.commonName], ['wss', 'client1', 'TLSv1.3', 'client1']);
    assert.match(e.tls?.cipher ?? '', /^TLS_/);
  });

  test('a plaintext connection is accepted without a TLS summary or certificate', async () => {
    const c = await connectMqtt(`mqtt://127.0.0.1:${b.plainPort}`, { clientId: 'plain-anon', protocolVersion: 4 });
    open.push(c);
    const e = await rec.waitFor('connection.accepted', (x) => x.clientId === 'plain-anon');
    assert.equal(e.listener, 'plain');
    assert.equal(e.protocolVersion, 4);
    assert.equal(e.method, 'anonymous');
    assert.equal(e.principal, null);
    assert.equal('tls' in e, false);
    assert.equal('certificate' in e, false);
  });

  test('authz.denied for a publish and for each denied subscribe filter, with principal and topic', async () => {
    const c = await device(b.pki.clients.client1!, 'client1');
    assert.equal(await pubackCode(c, 'devices/client2/cmd', WAIT), ReasonCode.NotAuthorized);
    const pub = await rec.waitFor('authz.denied', (x) => x.action === 'publish' && x.clientId === 'client1');
    assert.equal(pub.topic, 'devices/client2/cmd');
    assert.equal(pub.principal, 'client1');
    assert.match(pub.remoteAddress, /127\.0\.0\.1$/);
    assert.ok(pub.reason.length > 0);

    const granted = await c.subscribeAsync({ 'devices/client1/#': { qos: 1 }, 'devices/client2/#': { qos: 1 } }).catch((err: { granted?: unknown }) => err);
    assert.ok(granted !== undefined);
    const sub = await rec.waitFor('authz.denied', (x) => x.action === 'subscribe' && x.clientId === 'client1');
    assert.equal(sub.topic, 'devices/client2/#');
    assert.equal(sub.principal, 'client1');
    // The allowed filter and the allowed own-topic traffic produce no denial.
    assert.deepEqual(rec.of('authz.denied', (x) => x.clientId === 'client1').map((x) => `${x.action} ${x.topic}`), ['publish devices/client2/cmd', 'subscribe devices/client2/#']);
  });

  test('a will on a topic the client may not publish to: authz.denied (will) and connection.refused at the connect stage', async () => {
    const out = await tryMqttConnect(b.tlsPort, { ...clientTls(b.pki, b.pki.clients.client1!), clientId: 'client1-will', protocolVersion: 5, will: { topic: 'devices/client2/status', payload: Buffer.from('gone'), qos: 0, retain: false } });
    assert.deepEqual(out, { connack: ReasonCode.NotAuthorized });
    const denied = await rec.waitFor('authz.denied', (x) => x.action === 'will' && x.clientId === 'client1-will');
    assert.equal(denied.topic, 'devices/client2/status');
    assert.equal(denied.principal, 'client1');
    const refused = await rec.waitFor('connection.refused', (x) => x.clientId === 'client1-will');
    assert.equal(refused.stage, 'connect');
    assert.equal(refused.reasonCode, ReasonCode.NotAuthorized);
    assert.match(refused.reason, /will topic not authorized/);
    assert.equal(rec.of('connection.accepted', (x) => x.clientId === 'client1-will').length, 0);
  });

  test('an operator kick: client.disconnected (0x98) and admin.change naming the operator and the target', async () => {
    const c = await device(b.pki.clients.client2!, 'client2');
    const closed = nextEvent<{ reasonCode?: number }>(c, 'disconnect', WAIT);
    const r = await adminRequest(b.pki, b.server.admin!.port, { method: 'DELETE', path: '/api/v1/clients/client2', client: operator });
    assert.equal(r.status, 200, r.text);
    assert.equal((await closed).reasonCode, ReasonCode.AdministrativeAction);
    const gone = await rec.waitFor('client.disconnected', (x) => x.clientId === 'client2');
    assert.equal(gone.reasonCode, ReasonCode.AdministrativeAction);
    assert.equal(gone.listener, 'mqtts');
    assert.match(gone.reason, /operator op1/);
    const change = await rec.waitFor('admin.change', (x) => x.action === 'client.kick');
    assert.deepEqual({ actor: change.actor, target: change.target, outcome: change.outcome }, { actor: 'certificate:op1', target: 'client2', outcome: 'ok' });
    assert.match(change.remoteAddress, /127\.0\.0\.1$/);
  });

  test('a ban: the live session is closed (client.disconnected), the next CONNECT is refused at admission (connection.refused)', async () => {
    const banned = await issueClient(b.pki, 'rogue');
    const c = await device(banned, 'rogue');
    const closed = nextEvent(c, 'close', WAIT);
    const r = await adminRequest(b.pki, b.server.admin!.port, { method: 'POST', path: '/api/v1/bans', client: operator, body: { kind: 'clientId', value: 'rogue', reason: 'test ban' } });
    assert.equal(r.status, 201, r.text);
    await closed;
    const gone = await rec.waitFor('client.disconnected', (x) => x.clientId === 'rogue');
    assert.match(gone.reason, /bann/i);
    const change = await rec.waitFor('admin.change', (x) => x.action === 'ban.add');
    assert.equal(change.target, 'clientId:rogue');
    assert.equal(change.actor, 'certificate:op1');

    const again = await tryMqttConnect(b.tlsPort, { ...clientTls(b.pki, banned), clientId: 'rogue', protocolVersion: 5 });
    assert.ok('connack' in again && again.connack !== 0, `a banned client was admitted: ${JSON.stringify(again)}`);
    const refused = await rec.waitFor('connection.refused', (x) => x.clientId === 'rogue');
    assert.equal(refused.stage, 'admission');
    assert.equal(refused.listener, 'mqtts');
    assert.equal(refused.reasonCode, again.connack);
    assert.equal(refused.certificate?.serialNumber, certFacts(banned).serialNumber);
    assert.equal(refused.tls?.version, 'TLSv1.3');
    // A refused client is not reported as accepted.
    assert.equal(rec.of('connection.accepted', (x) => x.clientId === 'rogue').length, 1);
  });
});

describe('protocol violations and deliveries refused at the re-check', () => {
  let b: TestBroker;
  let rec: EventRecorder;
  before(async () => {
    b = await startTestBroker({
      clients: ['dev1', 'dev2'],
      authz: {
        roles: {
          plant: { rules: [{ effect: 'allow', action: 'all', topic: 'plant/#' }] },
          guard: { rules: [{ effect: 'deny', action: 'subscribe', topic: 'plant/secret/#' }] },
        },
        bindings: [
          { role: 'plant', attribute: 'clientId', value: '*' },
          { role: 'guard', attribute: 'clientId', value: '*' },
        ],
      },
    });
    rec = new EventRecorder(b.server.broker.events);
  });
  after(async () => {
    rec.stop();
    await b.stop();
  });

  test('a connected client sending a malformed PUBLISH: client.disconnected with 0x81', async () => {
    const { client, connack } = await connectRaw(b.plainPort, 5, 'violator');
    assert.equal(connack.reasonCode, 0);
    // PUBLISH, QoS 0 with DUP set, topic "t", no properties: malformed [MQTT-3.3.1-2].
    client.sendBytes([0x38, 0x04, 0x00, 0x01, 0x74, 0x00]);
    const seen = await client.expectClose();
    assert.equal(seen.find((p) => p.cmd === 'disconnect')?.reasonCode, ReasonCode.MalformedPacket);
    const e = await rec.waitFor('client.disconnected', (x) => x.clientId === 'violator');
    assert.equal(e.reasonCode, ReasonCode.MalformedPacket);
    assert.equal(e.listener, 'plain');
    assert.match(e.reason, /DUP/);
  });

  test('no usable CONNECT: connection.refused at the connect stage without a reason code (first packet not CONNECT, HTTP bytes)', async () => {
    const ping = await RawClient.connect(b.plainPort, 4);
    ping.send({ cmd: 'pingreq' });
    await ping.expectClose();
    const first = await rec.waitFor('connection.refused', (x) => /first packet was pingreq/.test(x.reason));
    assert.deepEqual([first.stage, first.listener, first.reasonCode, first.clientId], ['connect', 'plain', undefined, undefined]);
    const http = await RawClient.connect(b.plainPort, 4);
    // "G" is a PUBACK header with reserved flags set, "E" a remaining length of 69: padded to a whole frame.
    http.sendBytes(Buffer.from(`GET / HTTP/1.1\r\nHost: x\r\n${'x'.repeat(80)}`));
    await http.expectClose();
    const notMqtt = await rec.waitFor('connection.refused', (x) => /no valid CONNECT/.test(x.reason));
    assert.equal(notMqtt.stage, 'connect');
    assert.match(notMqtt.remoteAddress, /127\.0\.0\.1$/);
  });

  test('a delivery refused by authorization: authz.denied with action receive (the allowed one is delivered, and not reported)', async () => {
    const url = `mqtts://127.0.0.1:${b.tlsPort}`;
    const sub = await connectMqtt(url, { clientId: 'dev2', protocolVersion: 5, servername: 'localhost', ...clientTls(b.pki, b.pki.clients.dev2!) });
    const pub = await connectMqtt(url, { clientId: 'dev1', protocolVersion: 5, servername: 'localhost', ...clientTls(b.pki, b.pki.clients.dev1!) });
    try {
      const inbox = inboxOf(sub);
      await sub.subscribeAsync('plant/#', { qos: 1 });
      await pub.publishAsync('plant/secret/valve', 'hidden', { qos: 1 });
      await pub.publishAsync('plant/open/valve', 'visible', { qos: 1 });
      await inbox.waitFor((m) => m.some((x) => x.topic === 'plant/open/valve'), WAIT, 'the allowed message');
      assert.deepEqual(inbox.items.map((m) => m.topic), ['plant/open/valve']);
      const e = await rec.waitFor('authz.denied', (x) => x.action === 'receive');
      assert.deepEqual({ clientId: e.clientId, principal: e.principal, topic: e.topic }, { clientId: 'dev2', principal: 'dev2', topic: 'plant/secret/valve' });
      assert.match(e.remoteAddress, /127\.0\.0\.1$/);
      assert.equal(rec.of('authz.denied').length, 1);
    } finally {
      await endQuietly(pub);
      await endQuietly(sub);
    }
  });
});

describe('revocation: a CRL that revokes a connected device', () => {
  test('revocation.applied names the disconnected client, which also gets client.disconnected', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bastion-events-crl-'));
    const pki = await makeTestPki(join(dir, 'pki'), ['doomed', 'bystander']);
    const crlPath = join(dir, 'pki', 'crl.pem');
    const publishCrl = async (serials: string[], crlNumber: bigint): Promise<void> => {
      const now = new Date();
      const pem = await createCrl({ ca: await testCa(), entries: serials.map((serialNumber) => ({ serialNumber, revokedAt: now, reason: 'keyCompromise' as const })), crlNumber, nextUpdate: new Date(now.getTime() + 7 * 86400_000) });
      writeFileSync(`${crlPath}.tmp`, pem);
      renameSync(`${crlPath}.tmp`, crlPath);
    };
    await publishCrl([], 1n);
    const b = await startTlsBroker({ dir, pki, tls: { crl: crlPath } });
    const rec = new EventRecorder(b.server.broker.events);
    const url = `mqtts://127.0.0.1:${b.port}`;
    const doomed = await connectMqtt(url, { clientId: 'doomed', protocolVersion: 5, servername: 'localhost', ...clientTls(pki, pki.clients.doomed!) });
    const bystander = await connectMqtt(url, { clientId: 'bystander', protocolVersion: 5, servername: 'localhost', ...clientTls(pki, pki.clients.bystander!) });
    try {
      await publishCrl([certFacts(pki.clients.doomed!).serialNumber], 2n);
      const applied = await rec.waitFor('revocation.applied', (x) => x.disconnected.length > 0);
      assert.deepEqual(applied, { type: 'revocation.applied', listener: 'mqtts', disconnected: ['doomed'] });
      const gone = await rec.waitFor('client.disconnected', (x) => x.clientId === 'doomed');
      assert.equal(gone.reasonCode, ReasonCode.AdministrativeAction);
      assert.match(gone.reason, /revoked/);
      assert.equal(rec.of('client.disconnected', (x) => x.clientId === 'bystander').length, 0);
    } finally {
      rec.stop();
      await endQuietly(doomed);
      await endQuietly(bystander);
      await b.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('clientIdMustMatch: mosquitto_pub with another client id', () => {
  let b: TlsBroker;
  let rec: EventRecorder;
  before(async () => {
    b = await startTlsBroker({ listener: { clientIdMustMatch: true } });
    rec = new EventRecorder(b.server.broker.events);
  });
  after(async () => {
    rec.stop();
    await b.stop();
  });

  test('connection.refused at the connect stage, 0x85, with the certificate that was presented', async () => {
    const files = b.pki.clients.client1!;
    const r = await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(b.port), '--cafile', b.pki.caCert, '--cert', files.cert, '--key', files.key, '-V', 'mqttv5', '-i', 'not-client1', '-t', 't', '-m', 'x'], { timeoutMs: 10_000 });
    assert.notEqual(r.code, 0, r.stdout);
    const e = await rec.waitFor('connection.refused', (x) => x.clientId === 'not-client1');
    assert.equal(e.stage, 'connect');
    assert.equal(e.reasonCode, ReasonCode.ClientIdentifierNotValid);
    assert.match(e.reason, /client id must match/);
    assert.equal(e.listener, 'mqtts');
    assert.equal(e.certificate?.commonName, 'client1');
    assert.equal(e.certificate?.fingerprint256, certFacts(files).fingerprint256);
    assert.equal(e.tls?.version, 'TLSv1.3');
    assert.equal(rec.of('auth.failure').length, 0, 'not an authentication failure');
  });
});

describe('password listener: auth.failure names the provider', () => {
  let b: AuthBroker;
  let rec: EventRecorder;
  before(async () => {
    b = await startAuthBroker({ listeners: (pki) => [{ name: 'pw', protocol: 'mqtts', host: '127.0.0.1', port: 0, tls: tlsFor(pki, 'none'), auth: { providers: ['password'] } }] });
    rec = new EventRecorder(b.server.broker.events);
    const r = await b.addUser('alice', 'alice has a long password');
    assert.equal(r.code, 0, r.stderr);
  });
  after(async () => {
    rec.stop();
    await b.stop();
  });

  test('MQTT.js v5 with a wrong password: auth.failure, provider password, 0x86, user name and address', async () => {
    const out = await tryMqttConnect(b.port('pw'), { ca: readFileSync(b.pki.caCert), clientId: 'mqttjs-pw', protocolVersion: 5, username: 'alice', password: 'wrong password' });
    assert.deepEqual(out, { connack: ReasonCode.BadUserNameOrPassword });
    const e = await rec.waitFor('auth.failure', (x) => x.clientId === 'mqttjs-pw');
    assert.equal(e.provider, 'password');
    assert.equal(e.username, 'alice');
    assert.equal(e.reasonCode, ReasonCode.BadUserNameOrPassword);
    assert.equal(e.listener, 'pw');
    assert.match(e.remoteAddress, /127\.0\.0\.1$/);
    assert.ok(e.reason.length > 0);
    assert.equal(rec.of('connection.refused').length, 0, 'an authentication failure is not also a connection.refused');
  });

  test('paho (MQTT 3.1.1) with an unknown user: return code 4 and auth.failure from the password provider', async () => {
    const script = [
      'import sys, ssl, paho.mqtt.client as mqtt',
      'c = mqtt.Client(client_id="paho-events", protocol=mqtt.MQTTv311)',
      'c.tls_set(ca_certs=sys.argv[2], cert_reqs=ssl.CERT_REQUIRED)',
      'c.username_pw_set("mallory", "not a real password")',
      'c.on_connect = lambda cl, u, f, rc: (print("rc=%d" % rc), cl.disconnect())',
      'c.connect("localhost", int(sys.argv[1]), 30)',
      'c.loop_forever()',
    ].join('\n');
    const r = await run('/usr/bin/python3', ['-c', script, String(b.port('pw')), b.pki.caCert], { timeoutMs: 10_000 });
    assert.match(r.stdout, /rc=4/, r.stderr);
    const e = await rec.waitFor('auth.failure', (x) => x.clientId === 'paho-events');
    assert.equal(e.provider, 'password');
    assert.equal(e.username, 'mallory');
    assert.equal(e.reasonCode, ReasonCode.BadUserNameOrPassword);
  });

  test('the right password: connection.accepted with method and user name', async () => {
    const out = await tryMqttConnect(b.port('pw'), { ca: readFileSync(b.pki.caCert), clientId: 'alice-1', protocolVersion: 5, username: 'alice', password: 'alice has a long password' });
    assert.deepEqual(out, { connack: 0 });
    const e = await rec.waitFor('connection.accepted', (x) => x.clientId === 'alice-1');
    assert.equal(e.method, 'password');
    assert.equal(e.username, 'alice');
    assert.equal(e.principal, 'alice');
    assert.equal(e.tls?.version, 'TLSv1.3');
    assert.equal(e.certificate, undefined);
  });
});

describe('SCRAM (MQTT 5 enhanced authentication): auth.failure names the scram provider', () => {
  let b: AuthBroker;
  let rec: EventRecorder;
  before(async () => {
    b = await startAuthBroker({ listeners: (pki) => [{ name: 'scram', protocol: 'mqtts', host: '127.0.0.1', port: 0, tls: tlsFor(pki, 'none'), auth: { providers: ['scram'] } }] });
    rec = new EventRecorder(b.server.broker.events);
    assert.equal((await b.addUser('erin', 'erin has a long password')).code, 0);
  });
  after(async () => {
    rec.stop();
    await b.stop();
  });

  test('a wrong SCRAM proof: 0x86 and auth.failure with provider scram', async () => {
    const scram = new ScramClient('erin', 'not erin password');
    const client = mqtt.connect(`mqtts://127.0.0.1:${b.port('scram')}`, {
      clientId: 'scram-wrong',
      protocolVersion: 5,
      ca: readFileSync(b.pki.caCert),
      servername: 'localhost',
      reconnectPeriod: 0,
      properties: { authenticationMethod: 'SCRAM-SHA-256', authenticationData: Buffer.from(scram.clientFirst()) },
    });
    client.handleAuth = (packet, callback) => {
      const serverFirst = packet.properties?.authenticationData?.toString('utf8') ?? '';
      callback(undefined, { cmd: 'auth', reasonCode: 0x18, properties: { authenticationMethod: 'SCRAM-SHA-256', authenticationData: Buffer.from(scram.clientFinal(serverFirst)) } });
    };
    try {
      const err = await nextEvent<Error & { code?: number }>(client, 'error', WAIT);
      assert.equal(err.code, ReasonCode.BadUserNameOrPassword);
    } finally {
      await endQuietly(client);
    }
    const e = await rec.waitFor('auth.failure', (x) => x.clientId === 'scram-wrong');
    assert.equal(e.provider, 'scram');
    assert.equal(e.reasonCode, ReasonCode.BadUserNameOrPassword);
    assert.equal(e.listener, 'scram');
  });
});
