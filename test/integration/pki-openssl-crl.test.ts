/**
 * CRLs checked by real OpenSSL and Node's tls: `openssl crl -text` verifies the signature
 * and shows serials, reasons and the CRL number; `openssl verify -crl_check` rejects a
 * revoked certificate and accepts a good one; tls.createSecureContext({ crl }) loads it.
 */
import assert from 'node:assert/strict';
import { createSecureContext } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import {
  REVOCATION_REASONS,
  createCrl,
  createIntermediateCa,
  createRootCa,
  issueCertificate,
  parseCrl,
  parseCrls,
  verifyCrlSignature,
  type CaMaterial,
  type CertificateWithKey,
} from '../../src/pki/index.js';
import { expectPkiError, openssl, opensslOk, scratchDir, writeFiles } from './pki-openssl-support.js';

let dir: string;
let cleanup: () => Promise<void>;
let ca: CaMaterial;
let revoked: CertificateWithKey;
let good: CertificateWithKey;
// After the CA's notBefore (one minute before its creation): a CRL is issued while its CA is valid.
const thisUpdate = new Date(Date.now() - 30_000);
const nextUpdate = new Date(Date.now() + 24 * 3600_000);

before(async () => {
  ({ dir, cleanup } = await scratchDir('pki-crl'));
  ca = await createRootCa({ commonName: 'CRL Test CA', keyAlgorithm: 'ec-p384' });
  revoked = await issueCertificate({ ca, profile: 'client', commonName: 'revoked-device' });
  good = await issueCertificate({ ca, profile: 'client', commonName: 'good-device' });
  await writeFiles(dir, { 'ca.crt': ca.certPem, 'revoked.crt': revoked.certPem, 'good.crt': good.certPem });
});
after(async () => cleanup());

describe('createCrl, checked by openssl and Node', () => {
  it('openssl verifies the CRL and prints serials, reasons and the CRL number', async () => {
    const revokedAt = new Date(Math.floor(Date.now() / 1000) * 1000 - 3600_000);
    const pem = await createCrl({
      ca,
      crlNumber: 42n,
      thisUpdate,
      nextUpdate,
      entries: [
        { serialNumber: revoked.serialNumber, revokedAt, reason: 'keyCompromise' },
        { serialNumber: '0A1B', revokedAt, reason: 'superseded' },
        { serialNumber: 'ff:01', revokedAt },
      ],
    });
    assert.match(pem, /^-----BEGIN X509 CRL-----\n[\s\S]+\n-----END X509 CRL-----\n$/);
    await writeFiles(dir, { 'crl.pem': pem });
    const text = await opensslOk(dir, 'crl', '-in', 'crl.pem', '-CAfile', 'ca.crt', '-noout', '-text');
    assert.match(text, /verify OK/);
    assert.match(text, /Version 2/);
    assert.match(text, /X509v3 CRL Number:\s+42/);
    assert.match(text, /X509v3 Authority Key Identifier/);
    assert.match(text, new RegExp(`Serial Number: ${revoked.serialNumber}\\s+Revocation Date: .+\\s+CRL entry extensions:\\s+X509v3 CRL Reason Code:\\s+Key Compromise`));
    assert.match(text, /Serial Number: 0A1B[\s\S]+Superseded/);
    assert.match(text, /Serial Number: FF01/);

    const info = parseCrl(pem);
    assert.equal(info.issuer, 'CN=CRL Test CA');
    assert.equal(info.crlNumber, 42n);
    assert.equal(info.thisUpdate.getTime(), Math.floor(thisUpdate.getTime() / 1000) * 1000);
    assert.equal(info.nextUpdate?.getTime(), Math.floor(nextUpdate.getTime() / 1000) * 1000);
    assert.deepEqual(info.revoked.get(revoked.serialNumber), { revokedAt, reason: 'keyCompromise' });
    assert.deepEqual(info.revoked.get('0A1B'), { revokedAt, reason: 'superseded' });
    assert.deepEqual(info.revoked.get('FF01'), { revokedAt });
    assert.equal(await verifyCrlSignature(pem, ca.certPem), true);
  });

  it('openssl verify -crl_check rejects the revoked certificate and accepts the good one', async () => {
    const pem = await createCrl({ ca, crlNumber: 1n, nextUpdate, entries: [{ serialNumber: revoked.serialNumber, revokedAt: new Date(), reason: 'cessationOfOperation' }] });
    await writeFiles(dir, { 'check.crl': pem });
    const bad = await openssl(dir, 'verify', '-crl_check', '-CAfile', 'ca.crt', '-CRLfile', 'check.crl', 'revoked.crt');
    assert.equal(bad.ok, false, bad.out);
    assert.match(bad.out, /certificate revoked/);
    assert.match(await opensslOk(dir, 'verify', '-crl_check', '-CAfile', 'ca.crt', '-CRLfile', 'check.crl', 'good.crt'), /good\.crt: OK/);
  });

  it('an empty CRL is valid (no empty revokedCertificates sequence) and Node tls loads it', async () => {
    const pem = await createCrl({ ca, crlNumber: 7n, nextUpdate, entries: [] });
    await writeFiles(dir, { 'empty.crl': pem });
    const text = await opensslOk(dir, 'crl', '-in', 'empty.crl', '-CAfile', 'ca.crt', '-noout', '-text');
    assert.match(text, /No Revoked Certificates/);
    assert.equal(parseCrl(pem).revoked.size, 0);
    assert.doesNotThrow(() => createSecureContext({ ca: ca.certPem, crl: pem }));
    assert.match(await opensslOk(dir, 'verify', '-crl_check', '-CAfile', 'ca.crt', '-CRLfile', 'empty.crl', 'revoked.crt'), /OK/);
  });

  it('Node tls.createSecureContext accepts a CRL with entries of every reason', async () => {
    const entries = REVOCATION_REASONS.map((reason, i) => ({ serialNumber: `7${i}`, revokedAt: new Date(), reason }));
    const pem = await createCrl({ ca, crlNumber: 9n, nextUpdate, entries });
    assert.doesNotThrow(() => createSecureContext({ ca: ca.certPem, crl: pem }));
    const info = parseCrl(pem);
    // 'unspecified' is written without a reason code (RFC 5280 §5.3.1), so it reads back as none.
    assert.deepEqual(
      REVOCATION_REASONS.map((_, i) => info.revoked.get(`7${i}`)?.reason),
      REVOCATION_REASONS.map((r) => (r === 'unspecified' ? undefined : r)),
    );
  });

  it('a CRL with 20,000 entries is written, verified by openssl and read back', async () => {
    const revokedAt = new Date(Math.floor(Date.now() / 1000) * 1000);
    const entries = Array.from({ length: 20_000 }, (_, i) => ({ serialNumber: (0x40000000 + i).toString(16).toUpperCase(), revokedAt, reason: 'superseded' as const }));
    entries.push({ serialNumber: revoked.serialNumber, revokedAt, reason: 'superseded' });
    const pem = await createCrl({ ca, crlNumber: 20_000n, nextUpdate, entries });
    await writeFiles(dir, { 'big.crl': pem });
    assert.match(await opensslOk(dir, 'crl', '-in', 'big.crl', '-CAfile', 'ca.crt', '-noout'), /verify OK/);
    const bad = await openssl(dir, 'verify', '-crl_check', '-CAfile', 'ca.crt', '-CRLfile', 'big.crl', 'revoked.crt');
    assert.match(bad.out, /certificate revoked/);
    const info = parseCrl(pem);
    assert.equal(info.revoked.size, 20_001);
    assert.deepEqual(info.revoked.get('40004E1F'), { revokedAt, reason: 'superseded' });
    assert.equal(await verifyCrlSignature(pem, ca.certPem), true);
  });

  it('an intermediate signs CRLs that chain to the root', async () => {
    const root = await createRootCa({ commonName: 'CRL Root', pathLength: 1, keyAlgorithm: 'rsa-2048' });
    const inter = await createIntermediateCa({ root, commonName: 'CRL Issuing', keyAlgorithm: 'rsa-2048' });
    const leaf = await issueCertificate({ ca: inter, profile: 'server', commonName: 'srv.example', keyAlgorithm: 'rsa-2048' });
    const pem = await createCrl({ ca: inter, crlNumber: 2n, nextUpdate, entries: [{ serialNumber: leaf.serialNumber, revokedAt: new Date(), reason: 'affiliationChanged' }] });
    await writeFiles(dir, { 'r.crt': root.certPem, 'i.crt': inter.certPem, 'l.crt': leaf.certPem, 'i.crl': pem });
    assert.match(await opensslOk(dir, 'crl', '-in', 'i.crl', '-CAfile', 'i.crt', '-noout'), /verify OK/);
    const r = await openssl(dir, 'verify', '-crl_check', '-CAfile', 'r.crt', '-untrusted', 'i.crt', '-CRLfile', 'i.crl', 'l.crt');
    assert.match(r.out, /certificate revoked/);
    assert.equal(await verifyCrlSignature(pem, inter.certPem), true);
    assert.equal(await verifyCrlSignature(pem, root.certPem), false);
  });
});

describe('parseCrls and verifyCrlSignature', () => {
  it('reads several concatenated CRLs and the legacy `CRL` label', async () => {
    const a = await createCrl({ ca, crlNumber: 1n, nextUpdate, entries: [] });
    const other = await createRootCa({ commonName: 'Other CA' });
    const b = await createCrl({ ca: other, crlNumber: 5n, nextUpdate, entries: [{ serialNumber: 'AB', revokedAt: new Date() }] });
    const legacy = b.replace(/X509 CRL/g, 'CRL');
    const list = parseCrls(`${a}\n${legacy}`);
    assert.deepEqual(list.map((c) => [c.issuer, c.crlNumber, c.revoked.size]), [['CN=CRL Test CA', 1n, 0], ['CN=Other CA', 5n, 1]]);
  });

  it('a CRL with a flipped signature byte does not verify; a foreign CA does not verify', async () => {
    const pem = await createCrl({ ca, crlNumber: 3n, nextUpdate, entries: [] });
    const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    der[der.length - 3] = der[der.length - 3]! ^ 0x01;
    const tampered = `-----BEGIN X509 CRL-----\n${der.toString('base64')}\n-----END X509 CRL-----\n`;
    assert.equal(await verifyCrlSignature(tampered, ca.certPem), false);
    const other = await createRootCa({ commonName: 'CRL Test CA' }); // same name, different key
    assert.equal(await verifyCrlSignature(pem, other.certPem), false);
  });

  it('garbage is ERR_PKI_BAD_CRL, bad options are ERR_PKI_INVALID_INPUT', async () => {
    await expectPkiError(() => parseCrl('hello'), 'ERR_PKI_BAD_CRL');
    await expectPkiError(() => parseCrl('-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n'), 'ERR_PKI_BAD_CRL');
    await expectPkiError(() => parseCrls('-----BEGIN X509 CRL-----\n!!\n-----END X509 CRL-----\n'), 'ERR_PKI_BAD_CRL');
    await expectPkiError(() => createCrl({ ca, crlNumber: -1n, nextUpdate, entries: [] }), 'ERR_PKI_INVALID_INPUT');
    await expectPkiError(() => createCrl({ ca, crlNumber: 1n, nextUpdate: new Date(0), entries: [] }), 'ERR_PKI_INVALID_INPUT');
    await expectPkiError(() => createCrl({ ca, crlNumber: 1n, nextUpdate, entries: [{ serialNumber: 'xyz', revokedAt: new Date() }] }), 'ERR_PKI_INVALID_INPUT');
    await expectPkiError(() => createCrl({ ca, crlNumber: 1n, nextUpdate, entries: [{ serialNumber: 'AB', revokedAt: new Date() }, { serialNumber: 'ab', revokedAt: new Date() }] }), 'ERR_PKI_INVALID_INPUT');
    await expectPkiError(
      () => createCrl({ ca, crlNumber: 1n, nextUpdate, entries: [{ serialNumber: 'AB', revokedAt: new Date(), reason: 'removeFromCRL' as never }] }),
      'ERR_PKI_INVALID_INPUT',
    );
    const leaf = await issueCertificate({ ca, profile: 'client', commonName: 'not-a-ca' });
    await expectPkiError(() => createCrl({ ca: { certPem: leaf.certPem, keyPem: leaf.keyPem }, crlNumber: 1n, nextUpdate, entries: [] }), 'ERR_PKI_INVALID_CA');
  });
});
