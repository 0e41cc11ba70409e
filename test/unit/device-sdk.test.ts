/**
 * The device SDK's parts that need no broker: key and CSR generation (the CSR verifies
 * with the CA side's parseCsr and checkCsrKey), the certificate-for-key check, the
 * offline queue (order across reconnects, the bound, both overflow policies), token
 * parsing, reading answers, the broker URL, and both identity stores (files, modes,
 * atomic replacement).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, chmodSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkCsrKey, createCsrWithKey, createRootCa, parseCsr, signCsr, type CertificateWithKey } from '../../src/pki/index.js';
import { checkCertificateForKey, keyAlgorithmOfPem, lifetimeUsed } from '../../src/device/certificate.js';
import { clientOptions, parseBrokerUrl } from '../../src/device/connection.js';
import { DeviceError, ProvisioningError } from '../../src/device/errors.js';
import { FileIdentityStore, MemoryIdentityStore, type DeviceIdentity } from '../../src/device/identity-store.js';
import { OfflineQueue } from '../../src/device/offline-queue.js';
import {
  jsonObjectOf,
  parseCsrAccepted,
  parseProvisioningToken,
  parseRegisterAccepted,
  parseRenewalDue,
  parseTokenList,
  registerTopic,
  rejectionOf,
  renewalDueTopic,
  renewalFromConnack,
} from '../../src/device/protocol.js';
import { renewalWorthwhile } from '../../src/device/renewal.js';
import { BastionDevice } from '../../src/device/device.js';

const TOKEN = `bpt_0123456789ab_${'A'.repeat(40)}x-_`;

let ca: CertificateWithKey;
before(async () => {
  ca = await createRootCa({ commonName: 'Device SDK Test CA' });
});

/** A device identity: a new key, its CSR signed by the test CA. */
async function identityFor(name: string, days = 30, now = new Date()): Promise<DeviceIdentity> {
  const { csrPem, keyPem } = await createCsrWithKey({ commonName: name });
  const cert = await signCsr({ ca, csrPem, profile: 'client', days, now });
  return { identity: name, certPem: `${cert.certPem}${ca.certPem}`, keyPem, certificateId: cert.serialNumber };
}

function expectDeviceError(code: string): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof DeviceError, String(err));
    assert.equal(err.code, code, err.message);
    return true;
  };
}

describe('key and CSR generation', () => {
  it('makes an EC P-256 key by default whose CSR verifies with parseCsr and checkCsrKey', async () => {
    const { csrPem, keyPem, keyAlgorithm } = await createCsrWithKey({ commonName: 'bastion-device' });
    assert.equal(keyAlgorithm, 'ec-p256');
    assert.match(csrPem, /^-----BEGIN CERTIFICATE REQUEST-----\n[\s\S]+-----END CERTIFICATE REQUEST-----\n$/);
    assert.match(keyPem, /^-----BEGIN PRIVATE KEY-----\n/);
    const info = parseCsr(csrPem);
    assert.equal(info.commonName, 'bastion-device');
    assert.equal(info.keyAlgorithm, 'ec-p256');
    assert.deepEqual(info.sans, []);
    assert.equal(checkCsrKey(csrPem).keyAlgorithm, 'ec-p256');
    assert.equal(keyAlgorithmOfPem(keyPem), 'ec-p256');
  });

  it('makes P-384 and RSA keys on request, each CSR signed with the matching hash', async () => {
    for (const alg of ['ec-p384', 'rsa-2048'] as const) {
      const { csrPem, keyPem } = await createCsrWithKey({ commonName: 'd', keyAlgorithm: alg });
      assert.equal(parseCsr(csrPem).keyAlgorithm, alg);
      assert.equal(keyAlgorithmOfPem(keyPem), alg);
    }
  });

  it('a CSR whose signed part was changed does not verify (proof of possession)', async () => {
    const { csrPem } = await createCsrWithKey({ commonName: 'device-abc' });
    const der = Buffer.from(csrPem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
    // Change one letter of the CN inside the signed CertificationRequestInfo.
    const at = der.indexOf(Buffer.from('device-abc'));
    assert.ok(at > 0);
    der[at] = 'x'.charCodeAt(0);
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE REQUEST-----\n`;
    assert.throws(() => parseCsr(tampered), /signature does not verify/);
  });

  it('a certificate is accepted only for the key it certifies', async () => {
    const a = await identityFor('dev-a');
    const b = await identityFor('dev-b');
    const facts = checkCertificateForKey(a.certPem, a.keyPem, 'ERR_DEVICE_BAD_ANSWER', 'test');
    assert.match(facts.serialNumber, /^[0-9a-f]+$/);
    assert.equal(facts.chainPem?.trim(), ca.certPem.trim());
    assert.ok(facts.notAfter.getTime() > facts.notBefore.getTime());
    assert.throws(() => checkCertificateForKey(a.certPem, b.keyPem, 'ERR_DEVICE_BAD_ANSWER', 'test'), expectDeviceError('ERR_DEVICE_BAD_ANSWER'));
    assert.throws(() => checkCertificateForKey('not a certificate', a.keyPem, 'ERR_DEVICE_BAD_ANSWER', 'test'), expectDeviceError('ERR_DEVICE_BAD_ANSWER'));
  });

  it('lifetime used and whether an automatic renewal is worth it', async () => {
    const notBefore = new Date('2026-01-01T00:00:00Z');
    const notAfter = new Date('2026-01-11T00:00:00Z');
    assert.equal(lifetimeUsed({ notBefore, notAfter }, new Date('2025-12-01T00:00:00Z')), 0);
    assert.equal(lifetimeUsed({ notBefore, notAfter }, new Date('2026-01-06T00:00:00Z')), 0.5);
    assert.equal(lifetimeUsed({ notBefore, notAfter }, new Date('2027-01-01T00:00:00Z')), 1);
    const fresh = await identityFor('dev-fresh', 10);
    assert.equal(renewalWorthwhile(fresh.certPem, fresh.keyPem, new Date(), 0.5), false, 'a certificate just issued is not renewed again');
    assert.equal(renewalWorthwhile(fresh.certPem, fresh.keyPem, new Date(Date.now() + 6 * 86_400_000), 0.5), true);
    assert.equal(renewalWorthwhile(fresh.certPem, fresh.keyPem, new Date(), 0), true);
  });
});

describe('offline queue', () => {
  const msg = (n: number): { n: number } => ({ n });
  const ns = (items: Array<{ n: number }>): number[] => items.map((m) => m.n);

  it('sends in publish order, and what was in flight when the connection dropped goes again in its place', () => {
    const q = new OfflineQueue<{ n: number }>({ limit: 10 });
    const m = [1, 2, 3, 4, 5].map(msg);
    m.forEach((x) => q.add(x));
    assert.deepEqual(ns(q.take(3)), [1, 2, 3]);
    assert.equal(q.inFlight, 3);
    q.done(m[1]!); // 2 acknowledged; 1 and 3 were not when the connection dropped
    q.requeueInFlight();
    assert.equal(q.inFlight, 0);
    q.add(msg(6));
    assert.deepEqual(ns(q.take(100)), [1, 3, 4, 5, 6]);
    assert.deepEqual(ns(q.take(100)), [], 'nothing is sent twice on one connection');
    for (const x of [m[0]!, m[2]!, m[3]!]) assert.equal(q.done(x), true);
    assert.equal(q.done(m[0]!), false, 'done twice is a no-op');
    assert.equal(q.size, 2);
  });

  it('take respects the window it is given', () => {
    const q = new OfflineQueue<{ n: number }>();
    for (let i = 0; i < 5; i++) q.add(msg(i));
    assert.deepEqual(ns(q.take(2)), [0, 1]);
    assert.deepEqual(ns(q.take(0)), []);
    assert.deepEqual(ns(q.take(-1)), []);
    assert.equal(q.waiting, 3);
  });

  it('reject: at the bound a new message is refused, queued and in-flight messages counting together', () => {
    const q = new OfflineQueue<{ n: number }>({ limit: 3 });
    q.add(msg(1));
    q.add(msg(2));
    q.take(1);
    q.add(msg(3));
    assert.throws(() => q.add(msg(4)), expectDeviceError('ERR_DEVICE_QUEUE_FULL'));
    assert.equal(q.size, 3);
  });

  it('drop-oldest: the oldest message not yet sent makes room; in-flight ones are kept', () => {
    const q = new OfflineQueue<{ n: number }>({ limit: 3, overflow: 'drop-oldest' });
    [1, 2, 3].forEach((n) => q.add(msg(n)));
    q.take(1); // 1 is in flight
    assert.equal(q.add(msg(4))?.n, 2);
    assert.equal(q.add(msg(5))?.n, 3);
    q.requeueInFlight();
    assert.deepEqual(ns(q.take(10)), [1, 4, 5]);
    assert.throws(() => q.add(msg(6)), expectDeviceError('ERR_DEVICE_QUEUE_FULL'), 'all in flight: nothing to drop');
  });

  it('refuses a limit that is not a positive integer; clear returns everything in order', () => {
    assert.throws(() => new OfflineQueue({ limit: 0 }), expectDeviceError('ERR_DEVICE_INVALID_INPUT'));
    assert.throws(() => new OfflineQueue({ limit: 1.5 }), expectDeviceError('ERR_DEVICE_INVALID_INPUT'));
    const q = new OfflineQueue<{ n: number }>();
    [1, 2, 3].forEach((n) => q.add(msg(n)));
    q.take(2);
    assert.deepEqual(ns(q.clear()), [1, 2, 3]);
    assert.equal(q.size, 0);
    assert.equal(q.inFlight, 0);
  });
});

describe('tokens', () => {
  it('parseProvisioningToken accepts bpt_<id>_<secret>, trimmed, and nothing else', () => {
    assert.equal(parseProvisioningToken(`  ${TOKEN}\n`), TOKEN);
    for (const bad of ['', 'bpt_', 'bpt_0123456789ab', `BPT_0123456789ab_${'A'.repeat(43)}`, `bpt_0123456789AB_${'A'.repeat(43)}`, `bpt_0123456789ab_${'A'.repeat(42)}`, `bpt_0123456789ab_${'A'.repeat(44)}`, `bpt_0123456789ab_${'A'.repeat(42)}=`]) {
      assert.throws(() => parseProvisioningToken(bad), expectDeviceError('ERR_DEVICE_INVALID_INPUT'), bad);
    }
    // SECURITY: the message does not repeat what was given (it may be a secret with a typo).
    assert.throws(() => parseProvisioningToken('bpt_secret-value'), (err: Error) => !err.message.includes('secret-value'));
  });

  it('parseTokenList reads one per line, the --json output, skips comments and repeats', () => {
    const other = `bpt_ba9876543210_${'z'.repeat(43)}`;
    assert.deepEqual(parseTokenList(`${TOKEN}\n\n# ${other}\n${TOKEN}\r\n${other}\n`), [TOKEN, other]);
    const json = JSON.stringify({ template: 't', expiresAt: 'x', tokens: [{ id: '0123456789ab', token: TOKEN }, { id: 'ba9876543210', token: other }] }, null, 2);
    assert.deepEqual(parseTokenList(json), [TOKEN, other]);
    assert.deepEqual(parseTokenList(`${TOKEN}extra`), [], 'a longer word is not a token');
    assert.deepEqual(parseTokenList(''), []);
  });
});

describe('protocol', () => {
  it('topics: a template name and an identity must be one level without wildcards', () => {
    assert.equal(registerTopic('sensor_v2'), '$bastion/provision/templates/sensor_v2/provision/json');
    assert.equal(renewalDueTopic('sensor-ABC'), '$bastion/certs/sensor-ABC/renewal-due');
    for (const t of ['', 'a/b', 'a+', '#', 'x'.repeat(65)]) assert.throws(() => registerTopic(t), expectDeviceError('ERR_DEVICE_INVALID_INPUT'), t);
    for (const id of ['', 'a/b', 'a+b', 'a#', 'a\nb']) assert.throws(() => renewalDueTopic(id), expectDeviceError('ERR_DEVICE_INVALID_INPUT'), id);
  });

  it('answers are checked field by field', () => {
    const pem = '-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n';
    const step1 = parseCsrAccepted({ certificateId: 'ab', certificatePem: pem, certificateOwnershipToken: 'tok', expiresAt: '2026-01-01T00:00:00Z', clientToken: 'c' });
    assert.equal(step1.expiresAt.toISOString(), '2026-01-01T00:00:00.000Z');
    assert.throws(() => parseCsrAccepted({ certificateId: 'ab', certificatePem: 'junk', certificateOwnershipToken: 'tok', expiresAt: '2026-01-01T00:00:00Z' }), expectDeviceError('ERR_DEVICE_BAD_ANSWER'));
    assert.throws(() => parseCsrAccepted({ certificateId: 'ab', certificatePem: pem, expiresAt: '2026-01-01T00:00:00Z' }), expectDeviceError('ERR_DEVICE_BAD_ANSWER'));
    const ok = { identity: 'sensor-1', certificateId: 'cd', certificatePem: pem, roles: ['sensor'], notAfter: '2026-02-01T00:00:00Z', deviceConfiguration: { interval: 30, unit: 'C', on: true } };
    assert.deepEqual(parseRegisterAccepted(ok).deviceConfiguration, { interval: 30, unit: 'C', on: true });
    assert.throws(() => parseRegisterAccepted({ ...ok, identity: 'sensor/#' }), expectDeviceError('ERR_DEVICE_BAD_ANSWER'));
    assert.throws(() => parseRegisterAccepted({ ...ok, roles: [1] }), expectDeviceError('ERR_DEVICE_BAD_ANSWER'));
    assert.throws(() => parseRegisterAccepted({ ...ok, deviceConfiguration: { nested: {} } }), expectDeviceError('ERR_DEVICE_BAD_ANSWER'));
    assert.throws(() => parseRegisterAccepted({ ...ok, notAfter: 'soon' }), expectDeviceError('ERR_DEVICE_BAD_ANSWER'));
  });

  it('a rejection becomes a ProvisioningError with the broker status, code and message (one line)', () => {
    const err = rejectionOf('register', { statusCode: 403, errorCode: 'NotAllowListed', errorMessage: 'serial\nSIM-9 is\tnot listed', clientToken: 'c' });
    assert.ok(err instanceof ProvisioningError);
    assert.equal(err.code, 'ERR_DEVICE_REJECTED');
    assert.deepEqual([err.step, err.statusCode, err.errorCode, err.errorMessage], ['register', 403, 'NotAllowListed', 'serial SIM-9 is not listed']);
    const odd = rejectionOf('renew', {});
    assert.deepEqual([odd.statusCode, odd.errorCode], [500, 'Unknown']);
  });

  it('renewal notices: the CONNACK user property and the renewal-due payload', () => {
    assert.equal(renewalFromConnack(undefined), null);
    assert.equal(renewalFromConnack({ other: 'x' }), null);
    assert.equal(renewalFromConnack({ 'bastion-cert-renew': '2026-03-01T00:00:00.000Z' })?.notAfter?.toISOString(), '2026-03-01T00:00:00.000Z');
    assert.equal(renewalFromConnack({ 'bastion-cert-renew': ['2026-03-01T00:00:00Z', 'x'] })?.notAfter?.getUTCMonth(), 2);
    assert.deepEqual(renewalFromConnack({ 'bastion-cert-renew': 'garbage' }), { notAfter: null });
    const notice = parseRenewalDue(jsonObjectOf(Buffer.from(JSON.stringify({ identity: 'd1', certificateId: 'ab', notAfter: '2026-03-01T00:00:00Z', renewAfter: '2026-02-22T00:00:00Z' })))!);
    assert.equal(notice?.identity, 'd1');
    assert.equal(notice?.renewAfter?.toISOString(), '2026-02-22T00:00:00.000Z');
    assert.equal(parseRenewalDue({ identity: 'd1' }), null);
    assert.equal(jsonObjectOf(Buffer.from('[1]')), null);
    assert.equal(jsonObjectOf(Buffer.from('{')), null);
  });

  it('the broker URL must be mqtts://, and the broker is always verified', () => {
    assert.deepEqual(parseBrokerUrl('mqtts://127.0.0.1:8884'), { host: '127.0.0.1', port: 8884 });
    assert.deepEqual(parseBrokerUrl('mqtts://broker.example'), { host: 'broker.example', port: 8883 });
    assert.deepEqual(parseBrokerUrl('mqtts://[::1]:9000'), { host: '::1', port: 9000 });
    for (const bad of ['mqtt://127.0.0.1:1883', 'ws://x', 'not a url', 'mqtts://u:p@host']) assert.throws(() => parseBrokerUrl(bad), expectDeviceError('ERR_DEVICE_INVALID_INPUT'), bad);
    const o = clientOptions({ url: 'mqtts://127.0.0.1:1', ca: 'CA', clientId: 'c', credentials: { kind: 'password', username: '$provision', password: TOKEN } });
    assert.equal(o.rejectUnauthorized, true);
    assert.equal(o.minVersion, 'TLSv1.2');
    assert.equal(o.reconnectPeriod, 0);
    assert.equal(o.protocolVersion, 5);
    assert.equal(o.cert, undefined);
  });
});

describe('identity stores', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'bastion-device-store-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('FileIdentityStore: nothing stored is null; save then load round-trips; the key is 0600, the folder 0700', async () => {
    const store = new FileIdentityStore(join(dir, 'one', 'identity'));
    assert.equal(await store.load(), null);
    assert.equal(await store.paths(), null);
    const id: DeviceIdentity = { ...(await identityFor('sensor-1')), caPem: ca.certPem, notAfter: new Date('2026-05-01T00:00:00Z'), roles: ['sensor'], deviceConfiguration: { interval: 10 } };
    await store.save(id);
    const loaded = await store.load();
    assert.deepEqual(loaded, id);
    const paths = (await store.paths())!;
    assert.equal(statSync(paths.key).mode & 0o777, 0o600);
    assert.equal(statSync(store.dir).mode & 0o777, 0o700);
    assert.equal(readFileSync(paths.cert, 'utf8'), id.certPem);
    assert.equal(readFileSync(paths.ca!, 'utf8'), ca.certPem);
    assert.doesNotMatch(readFileSync(join(store.dir, 'identity.json'), 'utf8'), /PRIVATE KEY/);
  });

  it('FileIdentityStore: a new identity replaces the old as a whole, and the old files go', async () => {
    const store = new FileIdentityStore(join(dir, 'two'));
    const first = await identityFor('sensor-2');
    await store.save(first);
    const before = readdirSync(store.dir).sort();
    const second = await identityFor('sensor-2');
    await store.save(second);
    const after = readdirSync(store.dir).sort();
    assert.equal(after.length, before.length);
    assert.equal(after.filter((f) => before.includes(f) && f !== 'identity.json').length, 0, `old files left: ${after.join(' ')}`);
    assert.equal((await store.load())!.keyPem, second.keyPem);
    // Saves racing each other end with one of them whole.
    const [a, b] = [await identityFor('sensor-2'), await identityFor('sensor-2')];
    await Promise.all([store.save(a), store.save(b)]);
    const last = (await store.load())!;
    assert.ok(last.keyPem === b.keyPem && last.certPem === b.certPem);
    assert.equal(readdirSync(store.dir).length, 3);
  });

  it('FileIdentityStore refuses a certificate for another key, and a key file others can read', async () => {
    const store = new FileIdentityStore(join(dir, 'three'));
    const a = await identityFor('sensor-3');
    const b = await identityFor('sensor-3');
    await assert.rejects(store.save({ ...a, keyPem: b.keyPem }), expectDeviceError('ERR_DEVICE_STORE'));
    assert.equal(await store.load(), null, 'nothing was stored');
    await store.save(a);
    const { key } = (await store.paths())!;
    chmodSync(key, 0o644);
    await assert.rejects(store.load(), (err: Error) => expectDeviceError('ERR_DEVICE_STORE')(err) && /readable by others/.test(err.message));
    chmodSync(key, 0o600);
    writeFileSync(join(store.dir, 'identity.json'), '{"version":1,"identity":"x","certFile":"../../etc/passwd","keyFile":"device-0000000000000000.key"}');
    await assert.rejects(store.load(), expectDeviceError('ERR_DEVICE_STORE'));
  });

  it('MemoryIdentityStore keeps a copy, checks what it is given', async () => {
    const a = await identityFor('sensor-4');
    const store = new MemoryIdentityStore();
    assert.equal(await store.load(), null);
    await store.save({ ...a, roles: ['r'] });
    const loaded = (await store.load())!;
    loaded.roles!.push('changed');
    assert.deepEqual((await store.load())!.roles, ['r']);
    const b = await identityFor('sensor-4');
    await assert.rejects(store.save({ ...a, certPem: b.certPem }), expectDeviceError('ERR_DEVICE_STORE'));
    await assert.rejects(store.save({ ...a, identity: 'a/b' }), expectDeviceError('ERR_DEVICE_STORE'));
  });
});

describe('BastionDevice before it is connected', () => {
  it('holds publishes in the bounded queue; close() rejects them; nothing after close', async () => {
    const d = new BastionDevice({ url: 'mqtts://127.0.0.1:1', ca: ca.certPem, store: new MemoryIdentityStore(), queue: { limit: 2 } });
    const first = d.publish('devices/x/telemetry', 'a');
    const second = d.publish('devices/x/telemetry', Buffer.from('b'), { qos: 0 });
    await assert.rejects(d.publish('devices/x/telemetry', 'c'), expectDeviceError('ERR_DEVICE_QUEUE_FULL'));
    assert.equal(d.queued, 2);
    await assert.rejects(d.publish('devices/+/telemetry', 'x'), expectDeviceError('ERR_DEVICE_INVALID_INPUT'));
    await assert.rejects(d.publish('t', 'x', { qos: 2 as 1 }), expectDeviceError('ERR_DEVICE_INVALID_INPUT'));
    await assert.rejects(d.connect(), expectDeviceError('ERR_DEVICE_STORE'), 'no identity stored');
    await d.close();
    await assert.rejects(first, expectDeviceError('ERR_DEVICE_CLOSED'));
    await assert.rejects(second, expectDeviceError('ERR_DEVICE_CLOSED'));
    await assert.rejects(d.publish('t', 'x'), expectDeviceError('ERR_DEVICE_CLOSED'));
    await assert.rejects(d.connect(), expectDeviceError('ERR_DEVICE_CLOSED'));
  });

  it('drop-oldest: a full queue drops its oldest message for the new one', async () => {
    const d = new BastionDevice({ url: 'mqtts://127.0.0.1:1', ca: ca.certPem, store: new MemoryIdentityStore(), queue: { limit: 2, overflow: 'drop-oldest' } });
    const first = d.publish('t', '1');
    const second = d.publish('t', '2');
    const third = d.publish('t', '3');
    await assert.rejects(first, expectDeviceError('ERR_DEVICE_QUEUE_FULL'));
    assert.equal(d.queued, 2);
    await d.close();
    await Promise.all([assert.rejects(second, expectDeviceError('ERR_DEVICE_CLOSED')), assert.rejects(third, expectDeviceError('ERR_DEVICE_CLOSED'))]);
  });
});
