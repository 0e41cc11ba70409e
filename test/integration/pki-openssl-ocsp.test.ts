/**
 * OCSP against real `openssl ocsp`: requests it writes are parsed, requests we build are
 * read by it, responses we sign verify ("Response verify OK") with good / revoked + reason /
 * unknown, the nonce is echoed, and a live HTTP responder answers `openssl ocsp -url`.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  buildOcspRequest,
  createIntermediateCa,
  createOcspResponse,
  createRootCa,
  issueCertificate,
  ocspErrorResponse,
  parseOcspRequest,
  parseOcspResponse,
  type CaMaterial,
  type CertificateWithKey,
  type OcspStatus,
} from '../../src/pki/index.js';
import { openssl, opensslOk, scratchDir, writeFiles } from './pki-openssl-support.js';

let dir: string;
let cleanup: () => Promise<void>;
let ca: CaMaterial;
let good: CertificateWithKey;
let revoked: CertificateWithKey;
const revokedAt = new Date(Math.floor(Date.now() / 1000) * 1000 - 3600_000);

function statusOf(serial: string): OcspStatus {
  return serial === revoked.serialNumber ? { status: 'revoked', revokedAt, reason: 'keyCompromise' } : { status: 'good' };
}

before(async () => {
  ({ dir, cleanup } = await scratchDir('pki-ocsp'));
  ca = await createRootCa({ commonName: 'OCSP Test CA' });
  good = await issueCertificate({ ca, profile: 'client', commonName: 'good-device' });
  revoked = await issueCertificate({ ca, profile: 'client', commonName: 'revoked-device' });
  await writeFiles(dir, { 'ca.crt': ca.certPem, 'good.crt': good.certPem, 'revoked.crt': revoked.certPem });
});
after(async () => cleanup());

async function opensslRequest(name: string, cert: string, nonce: boolean): Promise<Buffer> {
  await opensslOk(dir, 'ocsp', '-issuer', 'ca.crt', '-cert', cert, '-reqout', name, ...(nonce ? [] : ['-no_nonce']));
  return readFile(join(dir, name));
}

describe('OCSP with openssl ocsp', () => {
  it('parses openssl requests with and without a nonce', async () => {
    const plain = parseOcspRequest(await opensslRequest('plain.req', 'good.crt', false));
    assert.equal(plain.nonce, undefined);
    assert.equal(plain.certIds.length, 1);
    assert.equal(plain.certIds[0]!.hashAlgorithm, 'sha1');
    assert.equal(plain.certIds[0]!.serialNumber, good.serialNumber);
    const withNonce = parseOcspRequest(await opensslRequest('nonce.req', 'good.crt', true));
    assert.equal(withNonce.nonce?.length, 16);
    // Our own request for the same certificate names it with the same CertID.
    const ours = parseOcspRequest(buildOcspRequest({ certPem: good.certPem, issuerPem: ca.certPem }));
    assert.deepEqual(ours.certIds, plain.certIds);
  });

  it('openssl reads the requests buildOcspRequest makes', async () => {
    const nonce = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
    await writeFiles(dir, { 'ours.req': buildOcspRequest({ certPem: revoked.certPem, issuerPem: ca.certPem, nonce }) });
    const text = await opensslOk(dir, 'ocsp', '-reqin', 'ours.req', '-req_text');
    assert.match(text, /Hash Algorithm: sha1/);
    assert.match(text, new RegExp(`Serial Number: ${revoked.serialNumber}`));
    assert.match(text, /OCSP Nonce:\s+041000112233445566778899AABBCCDDEEFF/i);
  });

  it('a good answer verifies and echoes the request nonce', async () => {
    const req = parseOcspRequest(await opensslRequest('good.req', 'good.crt', true));
    await writeFiles(dir, { 'good.resp': await createOcspResponse({ ca, certIds: req.certIds, statusOf, nonce: req.nonce }) });
    // (`-reqin` with `-respin` would add a second nonce to the loaded request, so the nonce
    // comparison itself is checked by the live responder test below.)
    const out = await opensslOk(dir, 'ocsp', '-respin', 'good.resp', '-issuer', 'ca.crt', '-cert', 'good.crt', '-CAfile', 'ca.crt', '-resp_text', '-no_nonce');
    assert.match(out, /Response verify OK/);
    assert.match(out, /good\.crt: good/);
    assert.match(out, new RegExp(`OCSP Nonce:\\s+0410${req.nonce!.toString('hex')}`, 'i'));
    assert.match(out, /Responder Id: [0-9A-F]{40}/);
  });

  it('a revoked answer carries the time and the reason', async () => {
    const req = parseOcspRequest(await opensslRequest('revoked.req', 'revoked.crt', false));
    await writeFiles(dir, { 'revoked.resp': await createOcspResponse({ ca, certIds: req.certIds, statusOf }) });
    const out = await opensslOk(dir, 'ocsp', '-respin', 'revoked.resp', '-issuer', 'ca.crt', '-cert', 'revoked.crt', '-CAfile', 'ca.crt', '-resp_text', '-no_nonce');
    assert.match(out, /Response verify OK/);
    assert.match(out, /revoked\.crt: revoked/);
    assert.match(out, /Reason: keyCompromise/);
    const parsed = parseOcspResponse(await readFile(join(dir, 'revoked.resp')));
    assert.equal(parsed.responseStatus, 'successful');
    assert.deepEqual(
      parsed.responses.map((r) => [r.serialNumber, r.status, r.revokedAt?.getTime(), r.reason]),
      [[revoked.serialNumber, 'revoked', revokedAt.getTime(), 'keyCompromise']],
    );
    assert.equal(parsed.responses[0]!.nextUpdate!.getTime() - parsed.responses[0]!.thisUpdate.getTime(), 3600_000);
  });

  it('a SHA-256 CertID (openssl ocsp -sha256) is matched and answered with the same CertID', async () => {
    await opensslOk(dir, 'ocsp', '-issuer', 'ca.crt', '-sha256', '-cert', 'revoked.crt', '-reqout', 'sha256.req', '-no_nonce');
    const req = parseOcspRequest(await readFile(join(dir, 'sha256.req')));
    assert.equal(req.certIds[0]!.hashAlgorithm, 'sha256');
    await writeFiles(dir, { 'sha256.resp': await createOcspResponse({ ca, certIds: req.certIds, statusOf }) });
    const out = await opensslOk(dir, 'ocsp', '-respin', 'sha256.resp', '-issuer', 'ca.crt', '-sha256', '-cert', 'revoked.crt', '-CAfile', 'ca.crt', '-no_nonce');
    assert.match(out, /Response verify OK/);
    assert.match(out, /revoked\.crt: revoked/);
  });

  it('a certificate from another issuer is unknown, whatever statusOf says', async () => {
    const other = await createRootCa({ commonName: 'Other CA' });
    const stranger = await issueCertificate({ ca: other, profile: 'client', commonName: 'stranger' });
    await writeFiles(dir, { 'other.crt': other.certPem, 'stranger.crt': stranger.certPem });
    await opensslOk(dir, 'ocsp', '-issuer', 'other.crt', '-cert', 'stranger.crt', '-reqout', 'stranger.req', '-no_nonce');
    const req = parseOcspRequest(await readFile(join(dir, 'stranger.req')));
    let asked = 0;
    const resp = await createOcspResponse({ ca, certIds: req.certIds, statusOf: () => ((asked += 1), { status: 'good' }) });
    assert.equal(asked, 0);
    await writeFiles(dir, { 'stranger.resp': resp });
    // The signature verifies; -no_cert_checks skips OpenSSL's rule that the signer must be
    // the issuer of every CertID, which this answer for a stranger cannot meet.
    const out = await opensslOk(dir, 'ocsp', '-respin', 'stranger.resp', '-CAfile', 'ca.crt', '-resp_text', '-no_nonce', '-no_cert_checks');
    assert.match(out, /Response verify OK/);
    assert.match(out, /Cert Status: unknown/);
    assert.deepEqual(parseOcspResponse(resp).responses.map((r) => [r.serialNumber, r.status]), [[stranger.serialNumber, 'unknown']]);
  });

  it('P-384 and RSA intermediates sign responses openssl verifies against the root', async () => {
    for (const keyAlgorithm of ['ec-p384', 'rsa-2048'] as const) {
      const root = await createRootCa({ commonName: `OCSP Root ${keyAlgorithm}`, pathLength: 1, keyAlgorithm });
      const inter = await createIntermediateCa({ root, commonName: `OCSP Issuing ${keyAlgorithm}`, keyAlgorithm });
      const leaf = await issueCertificate({ ca: inter, profile: 'server', commonName: 'srv.example', keyAlgorithm });
      const files = { root: `r-${keyAlgorithm}.crt`, inter: `i-${keyAlgorithm}.crt`, leaf: `l-${keyAlgorithm}.crt`, resp: `${keyAlgorithm}.resp` };
      await writeFiles(dir, { [files.root]: root.certPem, [files.inter]: inter.certPem, [files.leaf]: leaf.certPem });
      const req = parseOcspRequest(buildOcspRequest({ certPem: leaf.certPem, issuerPem: inter.certPem }));
      await writeFiles(dir, { [files.resp]: await createOcspResponse({ ca: inter, certIds: req.certIds, statusOf: () => ({ status: 'good' }) }) });
      const out = await opensslOk(dir, 'ocsp', '-respin', files.resp, '-issuer', files.inter, '-cert', files.leaf, '-CAfile', files.root, '-no_nonce');
      assert.match(out, /Response verify OK/, keyAlgorithm);
      assert.match(out, /: good/, keyAlgorithm);
    }
  });

  it('error responses are what openssl expects', async () => {
    await writeFiles(dir, { 'err.resp': ocspErrorResponse('malformedRequest') });
    const r = await openssl(dir, 'ocsp', '-respin', 'err.resp', '-resp_text', '-no_nonce');
    assert.equal(r.ok, false, r.out);
    assert.match(r.out, /Responder Error: malformedrequest \(1\)/);
    assert.equal(parseOcspResponse(ocspErrorResponse('unauthorized')).responseStatus, 'unauthorized');
  });
});

describe('a live responder over HTTP', () => {
  let server: Server;
  let url: string;
  before(async () => {
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        void (async () => {
          let body: Buffer;
          try {
            const parsed = parseOcspRequest(Buffer.concat(chunks));
            body = await createOcspResponse({ ca, certIds: parsed.certIds, statusOf, nonce: parsed.nonce });
          } catch {
            body = ocspErrorResponse('malformedRequest');
          }
          res.writeHead(200, { 'content-type': 'application/ocsp-response' }).end(body);
        })();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  });
  after(async () => new Promise<void>((resolve) => server.close(() => resolve())));

  it('openssl ocsp -url gets good and revoked answers with a verified nonce', async () => {
    const out = await opensslOk(dir, 'ocsp', '-url', url, '-issuer', 'ca.crt', '-cert', 'good.crt', '-cert', 'revoked.crt', '-CAfile', 'ca.crt');
    assert.match(out, /Response verify OK/);
    assert.match(out, /good\.crt: good/);
    assert.match(out, /revoked\.crt: revoked/);
    assert.doesNotMatch(out, /WARNING|nonce verify error/i);
  });
});
