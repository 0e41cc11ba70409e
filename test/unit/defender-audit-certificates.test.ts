/**
 * Defender audit, certificate checks: each builds the bad state with real certificates
 * (our PKI, or @peculiar/x509 for keys our PKI refuses) and sees its finding.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { runAudit } from '../../src/defender/audit/index.js';
import { debianBlacklistEntry, hasRocaFingerprint, keyFacts, ROCA_PRIME_PRODUCT } from '../../src/defender/audit/weak-keys.js';
import { createIntermediateCa, createRootCa, issueCertificate } from '../../src/pki/index.js';
import { cleanConfig, DAY, input, NOW, pkiWith, recordOf, rsaCertificate, rsaPublicKey } from './defender-audit-support.js';

const root = await createRootCa({ commonName: 'Audit Test Root', pathLength: 1, now: new Date(NOW.getTime() - 1000 * DAY) });
const inter = await createIntermediateCa({ root, commonName: 'Audit Test Intermediate', now: new Date(NOW.getTime() - 900 * DAY) });
const rootRec = recordOf(root.certPem, 'root', null);
const interRec = recordOf(inter.certPem, 'intermediate', root.serialNumber);

async function device(cn: string, issuedDaysAgo: number, days: number): Promise<ReturnType<typeof recordOf>> {
  const c = await issueCertificate({ ca: inter, profile: 'client', commonName: cn, days, now: new Date(NOW.getTime() - issuedDaysAgo * DAY) });
  return recordOf(c.certPem, 'client', inter.serialNumber);
}

const checksOf = (i: Parameters<typeof runAudit>[0]): string[] => runAudit(i).map((f) => `${f.check}:${f.severity}:${f.subject}`);

test('a healthy PKI (fresh root, intermediate, device) has no certificate finding', async () => {
  const d = await device('dev-ok', 1, 365);
  assert.deepEqual(checksOf(input({ pki: pkiWith(rootRec, interRec, d) })), []);
});

test('a device certificate expiring within 30 days is medium; an expired one too; a revoked one is not reported', async () => {
  const soon = await device('dev-soon', 355, 365);
  const gone = await device('dev-gone', 40, 30);
  const revoked = { ...(await device('dev-revoked', 355, 365)), status: 'revoked' as const };
  const findings = runAudit(input({ pki: pkiWith(rootRec, interRec, soon, gone, revoked) }));
  const expiring = findings.filter((f) => f.check === 'device-certificate-expiring');
  assert.deepEqual(expiring.map((f) => f.subject).sort(), [soon.serialNumber, gone.serialNumber].sort());
  assert.ok(expiring.every((f) => f.severity === 'medium'));
  assert.match(expiring.find((f) => f.subject === gone.serialNumber)!.message, /expired 10 day\(s\) ago/);
  assert.match(expiring.find((f) => f.subject === soon.serialNumber)!.message, /expires in 10 day\(s\)/);
});

test('a CA or server certificate expiring soon is high (the whole fleet depends on it)', async () => {
  const oldRoot = await createRootCa({ commonName: 'Old Root', days: 20, now: NOW });
  const server = await issueCertificate({ ca: inter, profile: 'server', commonName: 'broker.local', days: 5, now: NOW });
  const findings = runAudit(input({ pki: pkiWith(recordOf(oldRoot.certPem, 'root', null), recordOf(server.certPem, 'server', inter.serialNumber)) }));
  assert.deepEqual(findings.map((f) => `${f.check}:${f.severity}`).sort(), ['ca-certificate-expiring:high', 'server-certificate-expiring:high']);
});

test("an operator's (admin API) certificate expiring soon is high: the OU of the config's admin.operatorOu marks it", async () => {
  const op = await issueCertificate({ ca: inter, profile: 'client', commonName: 'alice', organizationalUnit: 'operators', days: 20, now: NOW });
  const rec = recordOf(op.certPem, 'client', inter.serialNumber);
  assert.equal(rec.subject, 'CN=alice, OU=operators');
  assert.deepEqual(checksOf(input({ pki: pkiWith(rootRec, interRec, rec) })), [`admin-certificate-expiring:high:${rec.serialNumber}`]);
  // With another operator OU configured, it is an ordinary device certificate.
  const config = cleanConfig({ admin: { port: 0, tls: { cert: 'a', key: 'b', ca: 'c', clientCerts: 'required' }, tokens: false, operatorOu: 'ops' } });
  assert.deepEqual(checksOf(input({ config, pki: pkiWith(rootRec, interRec, rec) })), [`device-certificate-expiring:medium:${rec.serialNumber}`]);
});

test('a device certificate older than the age threshold is low; the threshold is a setting', async () => {
  const old = await device('dev-old', 400, 800);
  const i = input({ pki: pkiWith(rootRec, interRec, old) });
  assert.deepEqual(checksOf(i), [`certificate-age:low:${old.serialNumber}`]);
  assert.deepEqual(checksOf({ ...i, thresholds: { ...i.thresholds, maxAgeDays: 500 } }), []);
});

test('an RSA key under 2048 bits is high', async () => {
  const weak = await rsaCertificate({ bits: 1024, cn: 'dev-1024' });
  const findings = runAudit(input({ pki: pkiWith(recordOf(weak.pem, 'client', null)) }));
  assert.deepEqual(findings.map((f) => `${f.check}:${f.severity}`), ['weak-key-rsa-size:high']);
  assert.match(findings[0]!.message, /RSA key of 1024 bits/);
});

test('a SHA-1 signature is high on an issued certificate', async () => {
  const sha1 = await rsaCertificate({ hash: 'SHA-1', cn: 'dev-sha1' });
  assert.equal(keyFacts(sha1.pem)?.weakSignature, 'SHA-1 with RSA');
  assert.deepEqual(checksOf(input({ pki: pkiWith(recordOf(sha1.pem, 'client', null)) })), [`weak-signature:high:${sha1.serial}`]);
  // A root's signature over itself is never checked, so it is not reported.
  assert.deepEqual(checksOf(input({ pki: pkiWith(recordOf(sha1.pem, 'root', null)) })), []);
});

test('the ROCA fingerprint: constructed moduli carry it, real RSA keys do not', () => {
  // 65537^a mod M lies in 65537's subgroup mod every prime of M by construction.
  for (const a of [1n, 7n, 1234n]) {
    let r = 1n;
    for (let k = 0n; k < a; k++) r = (r * 65537n) % ROCA_PRIME_PRODUCT;
    assert.equal(hasRocaFingerprint(r + ROCA_PRIME_PRODUCT * 987654321987654321n), true);
  }
  for (let i = 0; i < 5; i++) {
    const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const n = BigInt(`0x${Buffer.from(publicKey.export({ format: 'jwk' }).n!, 'base64url').toString('hex')}`);
    assert.equal(hasRocaFingerprint(n), false, 'a random modulus fails the fingerprint');
  }
});

test('a certificate whose RSA modulus has the ROCA fingerprint is critical', async () => {
  // A 2048-bit modulus of the Infineon form (its factors are not needed for the public key).
  let g = 1n;
  for (let k = 0; k < 4099; k++) g = (g * 65537n) % ROCA_PRIME_PRODUCT;
  const n = g + ROCA_PRIME_PRODUCT * ((1n << 1830n) + 12345n);
  const cert = await rsaCertificate({ subjectKey: await rsaPublicKey(n), cn: 'dev-roca' });
  const findings = runAudit(input({ pki: pkiWith(recordOf(cert.pem, 'client', null)) }));
  assert.deepEqual(findings.map((f) => `${f.check}:${f.severity}`), ['weak-key-roca:critical']);
  assert.match(findings[0]!.message, /CVE-2017-15361/);
});

test("a key on Debian's weak-key list is critical when the list is present; absent list, no check", async () => {
  const cert = await rsaCertificate({ cn: 'dev-debian' });
  const facts = keyFacts(cert.pem)!;
  const rec = recordOf(cert.pem, 'client', null);
  const list = new Map([[2048, new Set([debianBlacklistEntry(facts.modulus!), '0123456789abcdef0123'])]]);
  assert.deepEqual(checksOf(input({ pki: pkiWith(rec), debianBlacklist: list })), [`weak-key-debian:critical:${cert.serial}`]);
  assert.deepEqual(checksOf(input({ pki: pkiWith(rec) })), []);
  assert.deepEqual(checksOf(input({ pki: pkiWith(rec), debianBlacklist: new Map([[2048, new Set(['0123456789abcdef0123'])]]) })), []);
});

test('an intermediate revoked while unrevoked, unexpired certificates it issued remain is critical', async () => {
  const d1 = await device('dev-a', 1, 365);
  const d2 = await device('dev-b', 1, 365);
  const revokedInter = { ...interRec, status: 'revoked' as const };
  const findings = runAudit(input({ pki: pkiWith(rootRec, revokedInter, d1, d2) }));
  assert.deepEqual(findings.map((f) => `${f.check}:${f.severity}:${f.subject}`), [`intermediate-revoked-with-active-certificates:critical:${inter.serialNumber}`]);
  assert.match(findings[0]!.message, /2 unrevoked, unexpired certificate/);
  // Once its certificates are revoked too, nothing is left to report.
  const both = [d1, d2].map((d) => ({ ...d, status: 'revoked' as const }));
  assert.deepEqual(checksOf(input({ pki: pkiWith(rootRec, revokedInter, ...both) })), []);
});

test('an inventory record whose PEM cannot be parsed is medium (not a crash)', async () => {
  const d = await device('dev-damaged', 1, 365);
  const damaged = { ...d, certPem: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n' };
  assert.deepEqual(checksOf(input({ pki: pkiWith(rootRec, interRec, damaged) })), [`certificate-unreadable:medium:${d.serialNumber}`]);
});

test('the serial a finding names is the X.509 serial of the certificate', () => {
  assert.equal(new X509Certificate(inter.certPem).serialNumber, interRec.serialNumber);
});
