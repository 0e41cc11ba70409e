/**
 * Root → intermediate → leaf chains checked by real OpenSSL: `openssl verify` with the
 * intermediate as untrusted, the extensions `openssl x509 -text` prints, RSA and P-384
 * variants, AIA / CRL distribution points, and the refusals.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  createCrl,
  createIntermediateCa,
  createRootCa,
  parseCrl,
  describeCertificate,
  issueCertificate,
  type CertificateWithKey,
  type KeyAlgorithm,
} from '../../src/pki/index.js';
import { expectPkiError, opensslOk, openssl, scratchDir, writeFiles } from './pki-openssl-support.js';

let dir: string;
let cleanup: () => Promise<void>;
before(async () => {
  ({ dir, cleanup } = await scratchDir('pki-chain'));
});
after(async () => cleanup());

async function chain(keyAlgorithm: KeyAlgorithm, prefix: string): Promise<{ root: CertificateWithKey; inter: CertificateWithKey; server: CertificateWithKey; client: CertificateWithKey }> {
  const root = await createRootCa({ commonName: `${prefix} Root`, pathLength: 1, keyAlgorithm });
  const inter = await createIntermediateCa({ root, commonName: `${prefix} Issuing`, keyAlgorithm });
  const server = await issueCertificate({ ca: inter, profile: 'server', commonName: 'broker.example', keyAlgorithm });
  const client = await issueCertificate({ ca: inter, profile: 'client', commonName: 'dev1', organizationalUnit: 'ops', keyAlgorithm });
  await writeFiles(dir, {
    [`${prefix}-root.crt`]: root.certPem,
    [`${prefix}-inter.crt`]: inter.certPem,
    [`${prefix}-server.crt`]: server.certPem,
    [`${prefix}-client.crt`]: client.certPem,
  });
  return { root, inter, server, client };
}

describe('root → intermediate → leaf, verified by openssl', () => {
  for (const alg of ['ec-p256', 'ec-p384', 'rsa-2048'] as const) {
    it(`${alg}: server and client leaves verify through the intermediate, with the right EKUs`, async () => {
      const p = alg;
      await chain(alg, p);
      for (const [leaf, purpose] of [['server', 'sslserver'], ['client', 'sslclient']] as const) {
        const out = await opensslOk(dir, 'verify', '-CAfile', `${p}-root.crt`, '-untrusted', `${p}-inter.crt`, '-purpose', purpose, `${p}-${leaf}.crt`);
        assert.match(out, /: OK/);
      }
      // Without the intermediate the leaf does not chain to the root.
      const missing = await openssl(dir, 'verify', '-CAfile', `${p}-root.crt`, `${p}-server.crt`);
      assert.equal(missing.ok, false, missing.out);

      const interText = await opensslOk(dir, 'x509', '-in', `${p}-inter.crt`, '-noout', '-text');
      assert.match(interText, /Basic Constraints: critical\s+CA:TRUE, pathlen:0/);
      assert.match(interText, /Key Usage: critical\s+Certificate Sign, CRL Sign/);
      assert.match(interText, /Subject Key Identifier/);
      assert.match(interText, /Authority Key Identifier/);
      assert.match(await opensslOk(dir, 'x509', '-in', `${p}-server.crt`, '-noout', '-text'), /Extended Key Usage:\s+TLS Web Server Authentication/);
      assert.match(await opensslOk(dir, 'x509', '-in', `${p}-client.crt`, '-noout', '-text'), /Extended Key Usage:\s+TLS Web Client Authentication/);
    });
  }

  it('describeCertificate reports the chain the way Node and openssl see it', async () => {
    const { inter, client } = await chain('ec-p384', 'describe');
    const info = describeCertificate(client.certPem);
    assert.equal(info.serialNumber, client.serialNumber);
    assert.equal(info.fingerprint256, client.fingerprint256);
    assert.equal(info.subject, 'CN=dev1, OU=ops');
    assert.equal(info.commonName, 'dev1');
    assert.deepEqual(info.organizationalUnits, ['ops']);
    assert.equal(info.issuer, 'CN=describe Issuing');
    assert.equal(info.isCa, false);
    assert.deepEqual(info.extendedKeyUsages, ['clientAuth']);
    assert.equal(info.keyAlgorithm, 'ec-p384');
    const interInfo = describeCertificate(inter.certPem);
    assert.equal(interInfo.isCa, true);
    assert.equal(interInfo.issuer, 'CN=describe Root');
    assert.ok(interInfo.notAfter > info.notAfter);
  });

  it('the intermediate lifetime defaults to 1825 days and never outlives the root', async () => {
    const now = new Date('2026-01-01T00:00:00Z');
    const root = await createRootCa({ commonName: 'Short Root', pathLength: 1, days: 30, now });
    const capped = await createIntermediateCa({ root, commonName: 'Capped', now });
    assert.equal(describeCertificate(capped.certPem).notAfter.getTime(), describeCertificate(root.certPem).notAfter.getTime());
    const longRoot = await createRootCa({ commonName: 'Long Root', pathLength: 1, now });
    const normal = await createIntermediateCa({ root: longRoot, commonName: 'Normal', now });
    assert.equal(describeCertificate(normal.certPem).notAfter.toISOString(), '2030-12-31T00:00:00.000Z');
  });

  it('a root with pathLen 0 is refused for an intermediate, with a message that says why', async () => {
    const root = await createRootCa({ commonName: 'Leaf-only Root' });
    const message = await expectPkiError(() => createIntermediateCa({ root, commonName: 'Nope' }), 'ERR_PKI_INVALID_CA');
    assert.match(message, /pathLen 0/);
  });

  it('an intermediate cannot sign another intermediate (its pathLen is 0)', async () => {
    const root = await createRootCa({ commonName: 'Deep Root', pathLength: 2 });
    const inter = await createIntermediateCa({ root, commonName: 'Level 1' });
    await expectPkiError(() => createIntermediateCa({ root: inter, commonName: 'Level 2' }), 'ERR_PKI_INVALID_CA');
  });

  it('ocspUrl and crlUrl become AIA and CRL distribution point extensions', async () => {
    const root = await createRootCa({ commonName: 'AIA Root' });
    const leaf = await issueCertificate({ ca: root, profile: 'client', commonName: 'aia', ocspUrl: 'http://127.0.0.1:8080/ocsp', crlUrl: 'https://pki.example/ca.crl' });
    await writeFiles(dir, { 'aia.crt': leaf.certPem });
    const text = await opensslOk(dir, 'x509', '-in', 'aia.crt', '-noout', '-text');
    assert.match(text, /Authority Information Access:\s+OCSP - URI:http:\/\/127\.0\.0\.1:8080\/ocsp/);
    assert.match(text, /CRL Distribution Points:\s+Full Name:\s+URI:https:\/\/pki\.example\/ca\.crl/);
    assert.match(await opensslOk(dir, 'x509', '-in', 'aia.crt', '-noout', '-ocsp_uri'), /^http:\/\/127\.0\.0\.1:8080\/ocsp$/m);
    for (const bad of ['file:///etc/passwd', 'not a url', 'http://x/ y']) {
      await expectPkiError(() => issueCertificate({ ca: root, profile: 'client', commonName: 'bad', ocspUrl: bad }), 'ERR_PKI_INVALID_INPUT');
      await expectPkiError(() => issueCertificate({ ca: root, profile: 'client', commonName: 'bad', crlUrl: bad }), 'ERR_PKI_INVALID_INPUT');
    }
  });

  it('a root made by openssl (UTF-8 O, emailAddress, SEC1 key) signs our intermediate, leaves and CRLs', async () => {
    await opensslOk(dir, 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'os-root.key', '-out', 'os-root.crt', '-days', '30', '-utf8',
      '-subj', '/C=DE/O=Bäckerei Ü/CN=OpenSSL Root/emailAddress=pki@example.org',
      '-addext', 'basicConstraints=critical,CA:TRUE,pathlen:1', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
    await opensslOk(dir, 'ec', '-in', 'os-root.key', '-out', 'os-root-sec1.key');
    const { readFile } = await import('node:fs/promises');
    const root = { certPem: await readFile(`${dir}/os-root.crt`, 'utf8'), keyPem: await readFile(`${dir}/os-root-sec1.key`, 'utf8') };
    assert.match(root.keyPem, /BEGIN EC PRIVATE KEY/);
    const inter = await createIntermediateCa({ root, commonName: 'Ours under OpenSSL' });
    const leaf = await issueCertificate({ ca: inter, profile: 'client', commonName: 'dev-os' });
    const crl = await createCrl({ ca: root, crlNumber: 1n, nextUpdate: new Date(Date.now() + 3600_000), entries: [{ serialNumber: inter.serialNumber, revokedAt: new Date(), reason: 'superseded' }] });
    await writeFiles(dir, { 'os-inter.crt': inter.certPem, 'os-leaf.crt': leaf.certPem, 'os-root.crl': crl });
    assert.match(await opensslOk(dir, 'verify', '-CAfile', 'os-root.crt', '-untrusted', 'os-inter.crt', 'os-leaf.crt'), /OK/);
    assert.match(await opensslOk(dir, 'crl', '-in', 'os-root.crl', '-CAfile', 'os-root.crt', '-noout'), /verify OK/);
    // The intermediate's issuer is the root's subject, UTF-8 and all.
    assert.equal(describeCertificate(inter.certPem).issuer, 'E=pki@example.org, CN=OpenSSL Root, O=Bäckerei Ü, C=DE');
    assert.equal(parseCrl(crl).issuer, describeCertificate(inter.certPem).issuer);
    const revoked = await openssl(dir, 'verify', '-crl_check', '-CAfile', 'os-root.crt', '-CRLfile', 'os-root.crl', 'os-inter.crt');
    assert.match(revoked.out, /certificate revoked/);
  });

  it('names with DN syntax characters are certified literally, not parsed', async () => {
    const root = await createRootCa({ commonName: 'Names Root' });
    const leaf = await issueCertificate({ ca: root, profile: 'client', commonName: 'x, "admin"', organizationalUnit: 'a\\b' });
    const info = describeCertificate(leaf.certPem);
    assert.equal(info.commonName, 'x, "admin"');
    assert.deepEqual(info.organizationalUnits, ['a\\b']);
    assert.equal(info.subject, 'CN=x\\, \\"admin\\", OU=a\\\\b');
    await writeFiles(dir, { 'names.crt': leaf.certPem });
    assert.match(await opensslOk(dir, 'x509', '-in', 'names.crt', '-noout', '-subject', '-nameopt', 'RFC2253'), /CN=x\\, \\"admin\\"/);
  });
});
