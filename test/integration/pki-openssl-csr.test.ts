/**
 * CSRs made by real `openssl req`: signed certificates verify with `openssl verify`, carry
 * the profile's extensions (never the requested ones) and the requested SANs; tampered,
 * weak-key and nameless CSRs are refused with stable codes.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createIntermediateCa, createRootCa, describeCertificate, parseCsr, signCsr, type CaMaterial } from '../../src/pki/index.js';
import { expectPkiError, opensslOk, scratchDir, writeFiles } from './pki-openssl-support.js';

let dir: string;
let cleanup: () => Promise<void>;
let root: CaMaterial;
let ca: CaMaterial;
before(async () => {
  ({ dir, cleanup } = await scratchDir('pki-csr'));
  root = await createRootCa({ commonName: 'CSR Root', pathLength: 1 });
  ca = await createIntermediateCa({ root, commonName: 'CSR Issuing' });
  await writeFiles(dir, { 'root.crt': root.certPem, 'ca.crt': ca.certPem });
});
after(async () => cleanup());

/** Runs `openssl req -new` for a fresh key and returns the CSR PEM. */
async function opensslCsr(name: string, newkey: string[], subj: string, extra: string[] = []): Promise<string> {
  await opensslOk(dir, 'req', '-new', ...newkey, '-nodes', '-keyout', `${name}.key`, '-subj', subj, ...extra, '-out', `${name}.csr`);
  return readFile(join(dir, `${name}.csr`), 'utf8');
}

const P256 = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];

function der(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
}

function pem(bytes: Buffer): string {
  return `-----BEGIN CERTIFICATE REQUEST-----\n${bytes.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
}

describe('signCsr with CSRs from openssl req', () => {
  it('a P-256 CSR is signed; the certificate verifies and carries the requested SANs', async () => {
    const csrPem = await opensslCsr('dev1', P256, '/OU=ops/CN=dev1', ['-addext', 'subjectAltName=URI:spiffe://x/y,DNS:d1']);
    assert.deepEqual(parseCsr(csrPem), {
      commonName: 'dev1',
      organizationalUnits: ['ops'],
      sans: [
        { type: 'uri', value: 'spiffe://x/y' },
        { type: 'dns', value: 'd1' },
      ],
      keyAlgorithm: 'ec-p256',
    });
    const signed = await signCsr({ ca, csrPem, profile: 'client', days: 30 });
    await writeFiles(dir, { 'dev1.crt': signed.certPem });
    assert.match(await opensslOk(dir, 'verify', '-CAfile', 'root.crt', '-untrusted', 'ca.crt', '-purpose', 'sslclient', 'dev1.crt'), /dev1\.crt: OK/);
    const text = await opensslOk(dir, 'x509', '-in', 'dev1.crt', '-noout', '-text');
    assert.match(text, /Subject Alternative Name:\s+URI:spiffe:\/\/x\/y, DNS:d1/);
    assert.match(text, /Extended Key Usage:\s+TLS Web Client Authentication/);
    // The certificate is for the requester's key: its public key equals the CSR's.
    const certKey = await opensslOk(dir, 'x509', '-in', 'dev1.crt', '-noout', '-pubkey');
    const csrKey = await opensslOk(dir, 'req', '-in', 'dev1.csr', '-noout', '-pubkey');
    assert.equal(certKey, csrKey);
    const info = describeCertificate(signed.certPem);
    assert.equal(info.subject, 'CN=dev1, OU=ops');
    assert.equal(info.serialNumber, signed.serialNumber);
    assert.equal(info.fingerprint256, signed.fingerprint256);
  });

  it('requested extensions other than SANs are ignored: the profile decides', async () => {
    const csrPem = await opensslCsr('greedy', P256, '/CN=greedy', [
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
      '-addext',
      'extendedKeyUsage=codeSigning',
    ]);
    const signed = await signCsr({ ca, csrPem, profile: 'server' });
    await writeFiles(dir, { 'greedy.crt': signed.certPem });
    const text = await opensslOk(dir, 'x509', '-in', 'greedy.crt', '-noout', '-text');
    assert.match(text, /Basic Constraints: critical\s+CA:FALSE/);
    assert.match(text, /Key Usage: critical\s+Digital Signature\n/);
    assert.match(text, /Extended Key Usage:\s+TLS Web Server Authentication\n/);
    // A server certificate without requested SANs gets its CN as a DNS name.
    assert.match(text, /Subject Alternative Name:\s+DNS:greedy/);
  });

  it('an RSA-2048 server CSR gets keyEncipherment, a P-384 CSR is accepted', async () => {
    const rsa = await opensslCsr('rsa', ['-newkey', 'rsa:2048'], '/CN=rsa.example');
    assert.equal(parseCsr(rsa).keyAlgorithm, 'rsa-2048');
    await writeFiles(dir, { 'rsa.crt': (await signCsr({ ca, csrPem: rsa, profile: 'server' })).certPem });
    assert.match(await opensslOk(dir, 'x509', '-in', 'rsa.crt', '-noout', '-text'), /Key Usage: critical\s+Digital Signature, Key Encipherment/);
    const p384 = await opensslCsr('p384', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384'], '/CN=p384');
    assert.equal(parseCsr(p384).keyAlgorithm, 'ec-p384');
  });

  it('a CSR with a flipped signature byte is refused', async () => {
    const csrPem = await opensslCsr('tamper', P256, '/CN=tamper');
    const bytes = der(csrPem);
    bytes[bytes.length - 2] = bytes[bytes.length - 2]! ^ 0x01;
    assert.match(await expectPkiError(() => parseCsr(pem(bytes)), 'ERR_PKI_BAD_CSR'), /CSR signature does not verify/);
    await expectPkiError(() => signCsr({ ca, csrPem: pem(bytes), profile: 'client' }), 'ERR_PKI_BAD_CSR');
    // Changing the signed content (the CN) breaks the signature the same way.
    const renamed = Buffer.from(der(csrPem).toString('latin1').replace('tamper', 'tampes'), 'latin1');
    assert.match(await expectPkiError(() => parseCsr(pem(renamed)), 'ERR_PKI_BAD_CSR'), /does not verify/);
  });

  it('weak keys are refused, naming the key: RSA-1024, secp256k1, P-192', async () => {
    const cases: Array<[string, string[], RegExp]> = [
      ['rsa1024', ['-newkey', 'rsa:1024'], /rsa-1024/],
      ['k1', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:secp256k1'], /secp256k1/],
      ['p192', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-192'], /p192/],
    ];
    for (const [name, newkey, keyName] of cases) {
      const csrPem = await opensslCsr(name, newkey, `/CN=${name}`);
      assert.match(await expectPkiError(() => parseCsr(csrPem), 'ERR_PKI_WEAK_KEY'), keyName);
      await expectPkiError(() => signCsr({ ca, csrPem, profile: 'client' }), 'ERR_PKI_WEAK_KEY');
    }
  });

  it('CSRs without a commonName, with two, with SHA-1 signatures or with odd SANs are refused', async () => {
    assert.match(await expectPkiError(async () => parseCsr(await opensslCsr('nocn', P256, '/O=Acme')), 'ERR_PKI_BAD_CSR'), /no commonName/);
    assert.match(await expectPkiError(async () => parseCsr(await opensslCsr('twocn', P256, '/CN=a/CN=b')), 'ERR_PKI_BAD_CSR'), /more than one commonName/);
    assert.match(await expectPkiError(async () => parseCsr(await opensslCsr('sha1', [...P256, '-sha1'], '/CN=sha1')), 'ERR_PKI_BAD_CSR'), /signature algorithm/);
    assert.match(
      await expectPkiError(async () => parseCsr(await opensslCsr('dirname', P256, '/CN=d', ['-addext', 'subjectAltName=otherName:1.2.3.4;UTF8:x'])), 'ERR_PKI_BAD_CSR'),
      /subjectAltName/,
    );
    await expectPkiError(async () => parseCsr(await opensslCsr('badsan', P256, '/CN=d', ['-addext', 'subjectAltName=DNS:-bad-.example'])), 'ERR_PKI_INVALID_INPUT');
  });

  it('garbage is ERR_PKI_BAD_CSR, never a crash', async () => {
    const csrPem = await opensslCsr('fuzz', P256, '/CN=fuzz');
    const good = der(csrPem);
    await expectPkiError(() => parseCsr('no pem here'), 'ERR_PKI_BAD_CSR');
    await expectPkiError(() => parseCsr(pem(Buffer.from('garbage'))), 'ERR_PKI_BAD_CSR');
    await expectPkiError(() => parseCsr(42 as unknown as string), 'ERR_PKI_BAD_CSR');
    for (let cut = 1; cut < good.length; cut += 7) {
      await expectPkiError(() => parseCsr(pem(good.subarray(0, cut))), 'ERR_PKI_BAD_CSR');
    }
  });
});
