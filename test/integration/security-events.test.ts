/**
 * The security events the broker emits, seen by a recorder subscribed to
 * `server.broker.events` while real clients (MQTT.js, mosquitto_pub, paho) connect:
 * connection.accepted over mutual TLS with the negotiated TLS version, cipher and the
 * certificate summary; auth.failure naming the password provider (MQTT.js v5 and paho
 * v3.1.1); connection.refused for a client id that does not match the certificate and for
 * a banned client; authz.denied for a publish and a subscribe under the default device
 * policy; client.disconnected and admin.change for an operator's kick and ban.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import type { MqttClient, Packet } from 'mqtt';
import type { SecurityEvent, SecurityEvents, SecurityEventType } from '../../src/core/security-events.js';
import { ReasonCode } from '../../src/protocol/reason-codes.js';
import { adminRequest } from '../helpers/admin.js';
import { startAuthBroker, tlsFor, type AuthBroker } from '../helpers/authn-broker.js';
import { startTestBroker, type TestBroker } from '../helpers/broker.js';
import { issueClient, type TestClientFiles } from '../helpers/pki.js';
import { connectMqtt, endQuietly, Inbox, nextEvent, run, withTimeout } from './support.js';
import { clientTls, startTlsBroker, tryMqttConnect, type TlsBroker } from './tls-support.js';

const WAIT = 5000;

type EventOf<T extends SecurityEventType> = Extract<SecurityEvent, { type: T }>;

/** Every event the broker emits from now on, waitable by type and content. */
class EventRecorder {
  readonly inbox = new Inbox<SecurityEvent>();
  readonly stop: () => void;

  constructor(events: SecurityEvents) {
    this.stop = events.on((e) => this.inbox.push(e));
  }

  async waitFor<T extends SecurityEventType>(type: T, match: (e: EventOf<T>) => boolean): Promise<EventOf<T>> {
    const pick = (items: SecurityEvent[]): EventOf<T> | undefined => items.find((e): e is EventOf<T> => e.type === type && match(e as EventOf<T>));
    const items = await this.inbox.waitFor((all) => pick(all) !== undefined, WAIT, `a ${type} event`);
    return pick(items)!;
  }

  of<T extends SecurityEventType>(type: T, match: (e: EventOf<T>) => boolean = () => true): EventOf<T>[] {
    return this.inbox.items.filter((e): e is EventOf<T> => e.type === type && match(e as EventOf<T>));
  }
}

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
    b = await startTestBroker({ clients: ['client1', 'client2'], authz: null, admin: {} });
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
    const ack = new Promise<number>((resolve) => {
      const on = (p: Packet): void => {
        if (p.cmd !== 'puback') return;
        c.off('packetreceive', on);
        resolve(p.reasonCode ?? 0);
      };
      c.on('packetreceive', on);
    });
    c.publish('devices/client2/cmd', 'x', { qos: 1 }, () => undefined);
    assert.equal(await withTimeout(ack, WAIT, 'PUBACK'), ReasonCode.NotAuthorized);
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
