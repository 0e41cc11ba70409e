/**
 * Tests for src/pki issuance against real tools: createRootCa and issueCertificate for each
 * key algorithm, checked by OpenSSL (chains, extensions, validity). Using the certificates
 * (mutual TLS, the development PKI, the test helper) is in pki-tls.test.ts.
 */
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import {
  PkiError,
  createRootCa,
  issueCertificate,
  type CertificateWithKey,
  type KeyAlgorithm,
  type PkiErrorCode,
} from '../../src/pki/index.js';
import { testCa } from '../helpers/pki.js';
import { openssl, tempDirs, x509Text } from './pki-test-support.js';

const newDir = tempDirs('bastion-pki-test-');

/** The lines of `openssl x509 -text` that follow an extension's heading, up to the next extension. */
function extensionBlock(text: string, heading: string): string {
  const start = text.indexOf(heading);
  assert.notEqual(start, -1, `no ${heading} in:\n${text}`);
  const rest = text.slice(start + heading.length);
  const end = rest.search(/\n\s+(X509v3 |Authority Information|Signature Algorithm)/);
  return heading + (end === -1 ? rest : rest.slice(0, end));
}

async function assertPkiError(promise: Promise<unknown>, code: PkiErrorCode): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof PkiError, `expected PkiError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return true;
  });
}

describe('createRootCa and issueCertificate', () => {
  for (const keyAlgorithm of ['ec-p256', 'rsa-2048'] as const satisfies readonly KeyAlgorithm[]) {
    describe(keyAlgorithm, () => {
      let dir: string;
      let ca: CertificateWithKey;
      let server: CertificateWithKey;
      let client: CertificateWithKey;
      const issuedAt = new Date();
      const files = { ca: '', server: '', serverKey: '', client: '', clientKey: '' };

      before(async () => {
        dir = await newDir(keyAlgorithm);
        ca = await createRootCa({ commonName: `Test CA ${keyAlgorithm}`, keyAlgorithm });
        server = await issueCertificate({
          ca,
          profile: 'server',
          commonName: 'localhost',
          keyAlgorithm,
          sans: [
            { type: 'dns', value: 'localhost' },
            { type: 'ip', value: '127.0.0.1' },
            { type: 'ip', value: '::1' },
          ],
          now: issuedAt,
        });
        client = await issueCertificate({ ca, profile: 'client', commonName: 'device-42', organizationalUnit: 'sensors', keyAlgorithm });
        for (const [name, pem] of [
          ['ca', ca.certPem],
          ['server', server.certPem],
          ['serverKey', server.keyPem],
          ['client', client.certPem],
          ['clientKey', client.keyPem],
        ] as const) {
          files[name] = join(dir, `${name}.pem`);
          await writeFile(files[name], pem);
        }
      });

      it('openssl verify accepts the server and client certificates for their purposes', async () => {
        const s = await openssl('verify', '-CAfile', files.ca, '-purpose', 'sslserver', files.server);
        assert.ok(s.ok, s.out);
        assert.match(s.out, /: OK/);
        const c = await openssl('verify', '-CAfile', files.ca, '-purpose', 'sslclient', files.client);
        assert.ok(c.ok, c.out);
        assert.match(c.out, /: OK/);
      });

      it('openssl verify refuses each certificate for the other purpose (EKU is enforced)', async () => {
        const s = await openssl('verify', '-CAfile', files.ca, '-purpose', 'sslclient', files.server);
        assert.equal(s.ok, false, s.out);
        assert.match(s.out, /unsuitable certificate purpose/);
        const c = await openssl('verify', '-CAfile', files.ca, '-purpose', 'sslserver', files.client);
        assert.equal(c.ok, false, c.out);
        assert.match(c.out, /unsuitable certificate purpose/);
      });

      it('the CA has critical basicConstraints CA:TRUE, keyCertSign + cRLSign and key identifiers', async () => {
        const text = await x509Text(files.ca);
        assert.match(extensionBlock(text, 'X509v3 Basic Constraints'), /critical\s+CA:TRUE/);
        assert.match(extensionBlock(text, 'X509v3 Key Usage'), /critical\s+Certificate Sign, CRL Sign\s*$/);
        assert.match(text, /X509v3 Subject Key Identifier/);
        assert.doesNotMatch(text, /Extended Key Usage/);
      });

      it('the server certificate has EKU serverAuth, SANs, CA:FALSE and the right keyUsage', async () => {
        const text = await x509Text(files.server);
        const eku = extensionBlock(text, 'X509v3 Extended Key Usage');
        assert.match(eku, /TLS Web Server Authentication/);
        assert.doesNotMatch(eku, /Client/);
        assert.match(extensionBlock(text, 'X509v3 Basic Constraints'), /critical\s+CA:FALSE/);
        const usage = keyAlgorithm === 'rsa-2048' ? 'Digital Signature, Key Encipherment' : 'Digital Signature';
        assert.match(extensionBlock(text, 'X509v3 Key Usage'), new RegExp(`critical\\s+${usage}\\s*$`));
        assert.match(extensionBlock(text, 'X509v3 Subject Alternative Name'), /DNS:localhost, IP Address:127\.0\.0\.1, IP Address:0:0:0:0:0:0:0:1\s*$/);
        assert.match(text, /X509v3 Subject Key Identifier/);
        assert.match(text, /X509v3 Authority Key Identifier/);
      });

      it('the client certificate has EKU clientAuth, the OU and CN, and an AKI equal to the CA SKI', async () => {
        const text = await x509Text(files.client);
        const eku = extensionBlock(text, 'X509v3 Extended Key Usage');
        assert.match(eku, /TLS Web Client Authentication/);
        assert.doesNotMatch(eku, /Server/);
        assert.match(text, /Subject: OU = sensors, CN = device-42/);
        const caSki = (await openssl('x509', '-in', files.ca, '-noout', '-ext', 'subjectKeyIdentifier')).out.split('\n')[1]?.trim();
        const aki = (await openssl('x509', '-in', files.client, '-noout', '-ext', 'authorityKeyIdentifier')).out.split('\n')[1]?.trim();
        assert.ok(caSki);
        assert.equal(aki?.replace(/^keyid:/, ''), caSki);
      });

      it('private keys are PKCS#8 PEM that OpenSSL reads and that match their certificates', async () => {
        for (const [cert, key] of [
          [server.certPem, server.keyPem],
          [client.certPem, client.keyPem],
          [ca.certPem, ca.keyPem],
        ] as const) {
          assert.match(key, /^-----BEGIN PRIVATE KEY-----\n[A-Za-z0-9+/=\n]+-----END PRIVATE KEY-----\n$/);
          assert.ok(new X509Certificate(cert).checkPrivateKey(createPrivateKey(key)));
        }
        const r = await openssl('pkey', '-in', files.serverKey, '-noout');
        assert.ok(r.ok, r.out);
        const type = keyAlgorithm === 'rsa-2048' ? 'rsa' : 'ec';
        assert.equal(createPrivateKey(server.keyPem).asymmetricKeyType, type);
      });

      it('serials are random positive 16-byte values; serial and fingerprint match Node and OpenSSL', async () => {
        for (const c of [ca, server, client]) {
          const node = new X509Certificate(c.certPem);
          assert.match(c.serialNumber, /^[4-7][0-9A-F]{31}$/);
          assert.equal(c.serialNumber, node.serialNumber);
          assert.equal(c.fingerprint256, node.fingerprint256);
        }
        assert.equal(new Set([ca.serialNumber, server.serialNumber, client.serialNumber]).size, 3);
        const serial = await openssl('x509', '-in', files.server, '-noout', '-serial');
        assert.equal(serial.out.trim(), `serial=${server.serialNumber}`);
      });

      it('notBefore is one minute before issuance', () => {
        const node = new X509Certificate(server.certPem);
        const notBefore = new Date(node.validFrom).getTime();
        const expected = issuedAt.getTime() - 60_000;
        assert.ok(Math.abs(notBefore - expected) <= 1_000, `notBefore ${node.validFrom}, issued at ${issuedAt.toISOString()}`);
        const notAfter = new Date(node.validTo).getTime();
        assert.ok(Math.abs(notAfter - (issuedAt.getTime() + 365 * 86_400_000)) <= 1_000, node.validTo);
      });
    });
  }

  it('supports ec-p384 and rsa-3072 (RSA CA signing an EC leaf and the reverse)', async () => {
    const dir = await newDir('mixed');
    const p384Ca = await createRootCa({ commonName: 'P-384 CA', keyAlgorithm: 'ec-p384' });
    const rsaLeaf = await issueCertificate({ ca: p384Ca, profile: 'server', commonName: 'broker.example', keyAlgorithm: 'rsa-3072' });
    const rsaCa = await createRootCa({ commonName: 'RSA CA', keyAlgorithm: 'rsa-2048' });
    const ecLeaf = await issueCertificate({ ca: rsaCa, profile: 'client', commonName: 'dev', keyAlgorithm: 'ec-p384' });
    assert.equal(createPrivateKey(rsaLeaf.keyPem).asymmetricKeyDetails?.modulusLength, 3072);
    assert.equal(createPrivateKey(ecLeaf.keyPem).asymmetricKeyDetails?.namedCurve, 'secp384r1');
    for (const [caPem, leafPem, name] of [
      [p384Ca.certPem, rsaLeaf.certPem, 'a'],
      [rsaCa.certPem, ecLeaf.certPem, 'b'],
    ] as const) {
      await writeFile(join(dir, `${name}-ca.pem`), caPem);
      await writeFile(join(dir, `${name}-leaf.pem`), leafPem);
      const r = await openssl('verify', '-CAfile', join(dir, `${name}-ca.pem`), join(dir, `${name}-leaf.pem`));
      assert.ok(r.ok, r.out);
    }
    // A P-384 CA signs with SHA-384; the server profile defaults its SAN to the CN.
    const text = await x509Text(join(dir, 'a-leaf.pem'));
    assert.match(text, /Signature Algorithm: ecdsa-with-SHA384/);
    assert.match(text, /DNS:broker\.example/);
    assert.match(text, /Digital Signature, Key Encipherment/);
  });

  it('rejects bad input with ERR_PKI_INVALID_INPUT', async () => {
    const ca = await testCa();
    const bad: Array<Parameters<typeof issueCertificate>[0]> = [
      { ca, profile: 'server', commonName: 'x', sans: [{ type: 'ip', value: '1.2.3' }] },
      { ca, profile: 'server', commonName: 'x', sans: [{ type: 'ip', value: '::1%eth0' }] },
      { ca, profile: 'server', commonName: 'x', sans: [{ type: 'dns', value: 'bad_name.example' }] },
      { ca, profile: 'server', commonName: 'x', sans: [{ type: 'email', value: 'no-at-sign' }] },
      { ca, profile: 'server', commonName: 'x', sans: [{ type: 'uri', value: 'not a uri' }] },
      { ca, profile: 'client', commonName: 'evil\nCN=admin' },
      { ca, profile: 'client', commonName: '' },
      { ca, profile: 'client', commonName: 'x'.repeat(65) },
      { ca, profile: 'client', commonName: 'x', days: 0 },
      { ca, profile: 'client', commonName: 'x', days: 1.5 },
      { ca, profile: 'client', commonName: 'x', keyAlgorithm: 'dsa-1024' as KeyAlgorithm },
      { ca, profile: 'admin' as 'client', commonName: 'x' },
    ];
    for (const options of bad) await assertPkiError(issueCertificate(options), 'ERR_PKI_INVALID_INPUT');
    await assertPkiError(createRootCa({ commonName: 'CA', days: -1 }), 'ERR_PKI_INVALID_INPUT');
  });

  it('refuses to sign with something that is not a usable CA (ERR_PKI_INVALID_CA)', async () => {
    const ca = await testCa();
    const other = await createRootCa({ commonName: 'Other CA' });
    const leaf = await issueCertificate({ ca, profile: 'client', commonName: 'leaf' });
    // A leaf is not a CA.
    await assertPkiError(issueCertificate({ ca: leaf, profile: 'client', commonName: 'x' }), 'ERR_PKI_INVALID_CA');
    // The key does not belong to the certificate.
    await assertPkiError(issueCertificate({ ca: { certPem: ca.certPem, keyPem: other.keyPem }, profile: 'client', commonName: 'x' }), 'ERR_PKI_INVALID_CA');
    // Garbage.
    await assertPkiError(issueCertificate({ ca: { certPem: 'nope', keyPem: ca.keyPem }, profile: 'client', commonName: 'x' }), 'ERR_PKI_INVALID_CA');
    await assertPkiError(issueCertificate({ ca: { certPem: ca.certPem, keyPem: 'nope' }, profile: 'client', commonName: 'x' }), 'ERR_PKI_INVALID_CA');
    // Expired CA.
    const old = await createRootCa({ commonName: 'Old CA', days: 1, now: new Date(Date.now() - 3 * 86_400_000) });
    await assertPkiError(issueCertificate({ ca: old, profile: 'client', commonName: 'x' }), 'ERR_PKI_INVALID_CA');
  });

  it('never issues a certificate that outlives its CA', async () => {
    const ca = await createRootCa({ commonName: 'Short CA', days: 10 });
    const leaf = await issueCertificate({ ca, profile: 'client', commonName: 'x', days: 365 });
    assert.equal(new X509Certificate(leaf.certPem).validTo, new X509Certificate(ca.certPem).validTo);
  });
});
