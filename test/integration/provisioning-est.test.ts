/**
 * EST (RFC 7030 subset, docs/PROVISIONING.md §4) on the admin HTTPS listener, driven as a
 * device would drive it: `curl` and `openssl` as child processes, against a real broker
 * with the built-in PKI. cacerts gives the issuing chain as certs-only PKCS#7; simpleenroll
 * with a claim certificate or `-u '$provision:<token>'` turns a base64 DER CSR into the
 * template's identity (not the CSR's subject), and the device then connects over MQTT with
 * it; simplereenroll with that certificate gives a new one. Refusals are a status and one
 * line of text/plain; device credentials open no operator route, and operator
 * authentication does not apply to EST.
 *
 * No sleeps: every wait is on a process, an HTTP answer or an MQTT packet, with a timeout.
 * The broker runs in this process, so every child process is awaited asynchronously.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { PROVISIONING_DB_FILE, SqliteProvisioningStore } from '../../src/provisioning/sqlite-provisioning-store.js';
import { startProvisioningBroker, SENSOR_TEMPLATE, type ProvisioningBroker } from '../helpers/provisioning-broker.js';
import { startTestBroker, type TestBroker } from '../helpers/broker.js';
import { withTimeout } from './support.js';

interface Run {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

/** Runs `cmd` (no shell) with `input` on stdin; never throws for a non-zero exit. */
function run(cmd: string, args: string[], input?: Buffer | string): Promise<Run> {
  const done = new Promise<Run>((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8') }));
    child.stdin.end(input);
  });
  return withTimeout(done, 20_000, `${cmd} ${args.slice(0, 2).join(' ')}`);
}

interface HttpAnswer {
  status: number;
  contentType: string;
  headers: string;
  body: Buffer;
  text: string;
}

let seq = 0;

/** One curl request to `https://localhost:<port><path>` (resolved to 127.0.0.1), trusting `caFile`. */
async function curl(work: string, caFile: string, port: number, path: string, args: string[] = []): Promise<HttpAnswer> {
  const n = seq++;
  const bodyFile = join(work, `answer-${n}.body`);
  const headerFile = join(work, `answer-${n}.headers`);
  const r = await run('curl', ['-sS', '--max-time', '15', '--cacert', caFile, '--resolve', `localhost:${port}:127.0.0.1`, '-o', bodyFile, '-D', headerFile, '-w', '%{http_code}', ...args, `https://localhost:${port}${path}`]);
  assert.equal(r.code, 0, `curl failed: ${r.stderr}`);
  const headers = readFileSync(headerFile, 'utf8').toLowerCase();
  const body = readFileSync(bodyFile);
  return { status: Number(r.stdout.toString('utf8')), contentType: /^content-type:\s*(.+?)\s*$/m.exec(headers)?.[1] ?? '', headers, body, text: body.toString('utf8') };
}

/** `base64 -d | openssl pkcs7 -inform DER -print_certs`: the certificates of a certs-only answer, in order. */
async function certsOf(body: Buffer): Promise<X509Certificate[]> {
  const der = await run('base64', ['-d'], body);
  assert.equal(der.code, 0, der.stderr);
  const printed = await run('openssl', ['pkcs7', '-inform', 'DER', '-print_certs'], der.stdout);
  assert.equal(printed.code, 0, printed.stderr);
  const blocks = printed.stdout.toString('utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((pem) => new X509Certificate(pem));
}

/** A new P-256 key and `openssl req … -outform DER | base64` (76-column lines, as a device would send it). */
async function newCsr(work: string, name: string): Promise<{ keyFile: string; csrFile: string }> {
  const keyFile = join(work, `${name}.key`);
  const derFile = join(work, `${name}.csr.der`);
  const csrFile = join(work, `${name}.csr.b64`);
  const req = await run('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyFile, '-subj', '/CN=ignored', '-outform', 'DER', '-out', derFile]);
  assert.equal(req.code, 0, req.stderr);
  const b64 = await run('base64', [derFile]);
  assert.equal(b64.code, 0, b64.stderr);
  writeFileSync(csrFile, b64.stdout);
  return { keyFile, csrFile };
}

const PKCS10 = ['-H', 'Content-Type: application/pkcs10'];

describe('EST on the admin listener (curl and openssl as the device)', () => {
  let b: ProvisioningBroker;
  let work: string;
  let caFile: string;
  let port: number;
  let claim: { certFile: string; keyFile: string };
  const open: MqttClient[] = [];
  const est = (path: string, args: string[] = []): Promise<HttpAnswer> => curl(work, caFile, port, path, args);
  const withClaim = (): string[] => ['--cert', claim.certFile, '--key', claim.keyFile];

  before(async () => {
    b = await startProvisioningBroker({
      admin: {},
      templates: { sensor: SENSOR_TEMPLATE, other: { ...SENSOR_TEMPLATE, commonName: 'other-${serialNumber}' } },
      provisioning: { renewal: { maxPerDay: 1 } },
    });
    assert.ok(b.adminPort !== null);
    port = b.adminPort;
    work = mkdtempSync(join(tmpdir(), 'bastion-est-'));
    caFile = join(work, 'ca-chain.pem');
    writeFileSync(caFile, b.caPem);
    const c = await b.claim('sensor');
    claim = { certFile: join(work, 'claim.crt'), keyFile: join(work, 'claim.key') };
    writeFileSync(claim.certFile, c.cert);
    writeFileSync(claim.keyFile, c.key, { mode: 0o600 });
  });

  after(async () => {
    for (const c of open) c.end(true);
    await b.stop();
    rmSync(work, { recursive: true, force: true });
  });

  test('cacerts: the issuing CA chain as base64 certs-only PKCS#7, without authentication', async () => {
    const a = await est('/.well-known/est/cacerts');
    assert.equal(a.status, 200, a.text);
    assert.equal(a.contentType, 'application/pkcs7-mime');
    const certs = await certsOf(a.body);
    const chain = (b.caPem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? []).map((p) => new X509Certificate(p));
    assert.ok(chain.length >= 2, 'the test PKI has an issuing CA under its root');
    assert.deepEqual(certs.map((c) => c.fingerprint256), chain.map((c) => c.fingerprint256));
    assert.match(certs[0]!.subject, /CN=Provisioning Test Issuing CA/);
  });

  test('simpleenroll with a claim certificate: the template identity, then MQTT as that device, then simplereenroll', async () => {
    const { keyFile, csrFile } = await newCsr(work, 'dev1');
    const a = await est('/.well-known/est/simpleenroll?template=sensor&serialNumber=EST0001', [...withClaim(), ...PKCS10, '--data-binary', `@${csrFile}`]);
    assert.equal(a.status, 200, a.text);
    assert.equal(a.contentType, 'application/pkcs7-mime; smime-type=certs-only');
    const certs = await certsOf(a.body);
    const leaf = certs[0]!;
    assert.match(leaf.subject, /CN=sensor-EST0001/);
    assert.doesNotMatch(leaf.subject, /ignored/);
    assert.match(leaf.subject, /OU=sensors/);
    assert.match(leaf.subjectAltName ?? '', /URI:urn:bastion:sensor:EST0001/);
    assert.match(certs[1]!.subject, /CN=Provisioning Test Issuing CA/, 'the chain follows the leaf');
    const keyPem = readFileSync(keyFile, 'utf8');
    assert.equal(leaf.checkPrivateKey(createPrivateKey(keyPem)), true, 'the certificate is for the CSR\'s key');

    // The device connects with its new certificate and reaches its own topic.
    const certPem = certs.map((c) => c.toString()).join('');
    const device = await b.connect({ clientId: 'sensor-EST0001', cert: certPem, key: keyPem });
    open.push(device);
    await device.subscribeAsync('devices/sensor-EST0001/t', { qos: 1 });
    const got = new Promise<string>((resolve) => device.once('message', (_t, p: Buffer) => resolve(p.toString('utf8'))));
    await device.publishAsync('devices/sensor-EST0001/t', 'hello over EST', { qos: 1 });
    assert.equal(await withTimeout(got, 5000, 'the device\'s own message'), 'hello over EST');
    device.end(true);

    // The same serial number again: already provisioned.
    const again = await newCsr(work, 'dev1-again');
    const dup = await est('/.well-known/est/simpleenroll?template=sensor&serialNumber=EST0001', [...withClaim(), ...PKCS10, '--data-binary', `@${again.csrFile}`]);
    assert.equal(dup.status, 409, dup.text);

    // simplereenroll: the device's current certificate, a new key.
    const deviceCert = join(work, 'dev1.crt');
    writeFileSync(deviceCert, certPem);
    const renewCsr = await newCsr(work, 'dev1-renew');
    const r = await est('/.well-known/est/simplereenroll', ['--cert', deviceCert, '--key', keyFile, ...PKCS10, '-H', 'Content-Transfer-Encoding: base64', '--data-binary', `@${renewCsr.csrFile}`]);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.contentType, 'application/pkcs7-mime; smime-type=certs-only');
    const renewed = await certsOf(r.body);
    assert.match(renewed[0]!.subject, /CN=sensor-EST0001/);
    assert.notEqual(renewed[0]!.serialNumber, leaf.serialNumber);
    const newKeyPem = readFileSync(renewCsr.keyFile, 'utf8');
    const again2 = await b.connect({ clientId: 'sensor-EST0001', cert: renewed.map((c) => c.toString()).join(''), key: newKeyPem });
    open.push(again2);
    again2.end(true);

    // The new certificate renews no more today (renewal.maxPerDay 1 here): 429.
    const newCert = join(work, 'dev1-renewed.crt');
    writeFileSync(newCert, renewed.map((c) => c.toString()).join(''));
    const third = await newCsr(work, 'dev1-third');
    const throttled = await est('/.well-known/est/simplereenroll', ['--cert', newCert, '--key', renewCsr.keyFile, ...PKCS10, '--data-binary', `@${third.csrFile}`]);
    assert.equal(throttled.status, 429, throttled.text);
    assert.match(throttled.contentType, /^text\/plain/);
    // The replaced certificate may not renew: the service refuses it (only the current one
    // may, 403), or TLS does once its first-use revocation reached the listener's CRL (401).
    const stale = await est('/.well-known/est/simplereenroll', ['--cert', deviceCert, '--key', keyFile, ...PKCS10, '--data-binary', `@${third.csrFile}`]);
    assert.ok(stale.status === 403 || stale.status === 401, `the replaced certificate renews no more: ${stale.status} ${stale.text}`);
  });

  test('simpleenroll with a one-time token (HTTP Basic $provision): works once', async () => {
    const token = b.token('sensor');
    const { keyFile, csrFile } = await newCsr(work, 'tok1');
    const a = await est('/.well-known/est/simpleenroll?template=sensor&serialNumber=TOK0001', ['-u', `$provision:${token}`, ...PKCS10, '--data-binary', `@${csrFile}`]);
    assert.equal(a.status, 200, a.text);
    const certs = await certsOf(a.body);
    assert.match(certs[0]!.subject, /CN=sensor-TOK0001/);
    const device = await b.connect({ clientId: 'sensor-TOK0001', cert: certs.map((c) => c.toString()).join(''), key: readFileSync(keyFile, 'utf8') });
    open.push(device);
    await device.publishAsync('devices/sensor-TOK0001/t', 'x', { qos: 1 });
    device.end(true);

    const second = await newCsr(work, 'tok2');
    const reused = await est('/.well-known/est/simpleenroll?template=sensor&serialNumber=TOK0002', ['-u', `$provision:${token}`, ...PKCS10, '--data-binary', `@${second.csrFile}`]);
    assert.ok(reused.status === 401 || reused.status === 403, `a spent token is refused: ${reused.status} ${reused.text}`);
    assert.match(reused.contentType, /^text\/plain/);
  });

  test('refusals: a status and one line of text/plain', async () => {
    const { csrFile } = await newCsr(work, 'refused');
    const enroll = '/.well-known/est/simpleenroll?template=sensor&serialNumber=REF0001';

    const none = await est(enroll, [...PKCS10, '--data-binary', `@${csrFile}`]);
    assert.equal(none.status, 401, none.text);
    assert.match(none.headers, /^www-authenticate: basic/m);
    assert.match(none.contentType, /^text\/plain/);
    assert.equal(none.text.trim().split('\n').length, 1);

    const badToken = await est(enroll, ['-u', '$provision:bpt_nope_nope', ...PKCS10, '--data-binary', `@${csrFile}`]);
    assert.equal(badToken.status, 401, badToken.text);
    const bearer = await est(enroll, ['-H', 'Authorization: Bearer x', ...PKCS10, '--data-binary', `@${csrFile}`]);
    assert.equal(bearer.status, 401, bearer.text);

    const json = await est(enroll, [...withClaim(), '-H', 'Content-Type: application/json', '--data-binary', `@${csrFile}`]);
    assert.equal(json.status, 415, json.text);
    const binary = await est(enroll, [...withClaim(), ...PKCS10, '-H', 'Content-Transfer-Encoding: binary', '--data-binary', `@${csrFile}`]);
    assert.equal(binary.status, 415, binary.text);

    const garbage = await est(enroll, [...withClaim(), ...PKCS10, '--data-binary', 'not a CSR at all!']);
    assert.equal(garbage.status, 400, garbage.text);
    assert.match(garbage.text, /InvalidCsr/);
    // Base64 of a DER SEQUENCE that is no certificate request: the service's CSR check.
    const notCsr = await est(enroll, [...withClaim(), ...PKCS10, '--data-binary', Buffer.from([0x30, 0x03, 0x02, 0x01, 0x01]).toString('base64')]);
    assert.equal(notCsr.status, 400, notCsr.text);

    const noTemplate = await est('/.well-known/est/simpleenroll?serialNumber=REF0001', [...withClaim(), ...PKCS10, '--data-binary', `@${csrFile}`]);
    assert.equal(noTemplate.status, 400, noTemplate.text);
    const badParam = await est('/.well-known/est/simpleenroll?template=sensor&serialNumber=lower', [...withClaim(), ...PKCS10, '--data-binary', `@${csrFile}`]);
    assert.equal(badParam.status, 400, badParam.text);
    assert.match(badParam.text, /InvalidParameters/);
    const unknownParam = await est(`${enroll}&colour=red`, [...withClaim(), ...PKCS10, '--data-binary', `@${csrFile}`]);
    assert.equal(unknownParam.status, 400, unknownParam.text);
    const twice = await est(`${enroll}&serialNumber=REF0002`, [...withClaim(), ...PKCS10, '--data-binary', `@${csrFile}`]);
    assert.equal(twice.status, 400, twice.text);

    const unknown = await est('/.well-known/est/simpleenroll?template=nope&serialNumber=REF0001', [...withClaim(), ...PKCS10, '--data-binary', `@${csrFile}`]);
    assert.equal(unknown.status, 404, unknown.text);
    const wrong = await est('/.well-known/est/simpleenroll?template=other&serialNumber=REF0001', [...withClaim(), ...PKCS10, '--data-binary', `@${csrFile}`]);
    assert.equal(wrong.status, 403, wrong.text);
    assert.match(wrong.text, /WrongTemplate/);

    const big = join(work, 'big.b64');
    writeFileSync(big, 'A'.repeat(70 * 1024));
    const tooLarge = await est(enroll, [...withClaim(), ...PKCS10, '--data-binary', `@${big}`]);
    assert.equal(tooLarge.status, 413, tooLarge.text);

    const get = await est('/.well-known/est/simpleenroll', withClaim());
    assert.equal(get.status, 405, get.text);
    assert.match(get.headers, /^allow: post/m);
    const unsupported = await est('/.well-known/est/serverkeygen', withClaim());
    assert.equal(unsupported.status, 404, unsupported.text);

    // simplereenroll takes the device's certificate only: nothing, a token or a claim is refused.
    const renewNone = await est('/.well-known/est/simplereenroll', [...PKCS10, '--data-binary', `@${csrFile}`]);
    assert.equal(renewNone.status, 401, renewNone.text);
    const renewToken = await est('/.well-known/est/simplereenroll', ['-u', `$provision:${b.token('sensor')}`, ...PKCS10, '--data-binary', `@${csrFile}`]);
    assert.equal(renewToken.status, 401, renewToken.text);
    const renewClaim = await est('/.well-known/est/simplereenroll', [...withClaim(), ...PKCS10, '--data-binary', `@${csrFile}`]);
    assert.equal(renewClaim.status, 403, renewClaim.text);

    // None of these provisioned anything.
    const store = SqliteProvisioningStore.open(join(b.dataDir, PROVISIONING_DB_FILE));
    try {
      assert.equal(store.device('sensor-REF0001'), null);
      assert.equal(store.device('other-REF0001'), null);
    } finally {
      store.close();
    }
  });

  test('device credentials open no operator route, and EST paths do not take operator routes', async () => {
    const claimOnApi = await est('/api/v1/clients', withClaim());
    assert.equal(claimOnApi.status, 403, `claim certificate on the operator API: ${claimOnApi.text}`);
    assert.match(claimOnApi.text, /not an operator/);
    const tokenOnApi = await est('/api/v1/clients', ['-u', `$provision:${b.token('sensor')}`]);
    assert.equal(tokenOnApi.status, 401, tokenOnApi.text);
    // A path that leaves the EST prefix is an operator path (normalised), not an EST one.
    const traversal = await est('/.well-known/est/../../api/v1/clients', ['--path-as-is', ...withClaim()]);
    assert.ok(traversal.status === 401 || traversal.status === 403, `traversal: ${traversal.status}`);
    assert.match(traversal.contentType, /^application\/json/);
    const metrics = await est('/.well-known/est/../../metrics', ['--path-as-is', ...withClaim()]);
    assert.ok(metrics.status === 401 || metrics.status === 403 || metrics.status === 404, `metrics: ${metrics.status}`);
  });
});

describe('EST when provisioning is off', () => {
  let b: TestBroker;
  before(async () => {
    b = await startTestBroker({ clients: [], admin: {} });
  });
  after(async () => {
    await b.stop();
  });

  test('every EST path answers 404, without authentication', async () => {
    const work = mkdtempSync(join(tmpdir(), 'bastion-est-off-'));
    try {
      const port = b.server.admin!.port;
      const cacerts = await curl(work, b.pki.caCert, port, '/.well-known/est/cacerts');
      assert.equal(cacerts.status, 404, cacerts.text);
      assert.match(cacerts.contentType, /^text\/plain/);
      const enroll = await curl(work, b.pki.caCert, port, '/.well-known/est/simpleenroll?template=sensor', [...PKCS10, '--data-binary', 'AAAA']);
      assert.equal(enroll.status, 404, enroll.text);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
});
