/**
 * OCSP stapling: the listener fetches a real OCSP response for its own certificate from
 * the responder named in the certificate (an in-test HTTP responder signing with our CA),
 * and `openssl s_client -status` sees it stapled; with no responder, nothing is stapled
 * and that is logged; a certificate without an OCSP URL turns stapling off, logged.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createOcspResponse, issueCertificate, LOCAL_SERVER_SANS, parseOcspRequest } from '../../src/pki/index.js';
import { makeTestPki, testCa, type TestPki } from '../helpers/pki.js';
import { sClient, startTlsBroker, type TlsBroker } from './tls-support.js';

/** A minimal OCSP responder: answers every POST with a response signed by the test CA. */
async function startResponder(): Promise<{ url: string; requests: number; close(): Promise<void> }> {
  const ca = await testCa();
  const state = { requests: 0 };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      state.requests++;
      const request = parseOcspRequest(Buffer.concat(chunks));
      void createOcspResponse({ ca, certIds: request.certIds, statusOf: () => ({ status: 'good' }), ...(request.nonce !== undefined ? { nonce: request.nonce } : {}) }).then((der) => {
        res.writeHead(200, { 'content-type': 'application/ocsp-response' });
        res.end(der);
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    get requests() {
      return state.requests;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

async function brokerWithServerCert(dir: string, pki: TestPki, ocspUrl: string | undefined): Promise<TlsBroker> {
  const issued = await issueCertificate({ ca: await testCa(), profile: 'server', commonName: 'localhost', sans: [...LOCAL_SERVER_SANS], ...(ocspUrl !== undefined ? { ocspUrl } : {}) });
  const cert = join(dir, 'stapled.crt');
  const key = join(dir, 'stapled.key');
  writeFileSync(cert, issued.certPem);
  writeFileSync(key, issued.keyPem, { mode: 0o600 });
  return startTlsBroker({ dir, pki, tls: { cert, key, ocspStapling: true } });
}

function statusArgs(pki: TestPki): string[] {
  const c = pki.clients.client1!;
  return ['-status', '-cert', c.cert, '-key', c.key, '-CAfile', pki.caCert];
}

describe('OCSP stapling', () => {
  let dir: string;
  let pki: TestPki;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'bastion-tls-ocsp-'));
    pki = await makeTestPki(join(dir, 'pki'), ['client1']);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('a response from the certificate\'s responder is stapled', async () => {
    const responder = await startResponder();
    const b = await brokerWithServerCert(dir, pki, responder.url);
    try {
      await b.logger.waitFor('OCSP response fetched for stapling', { listener: 'mqtts', status: 'good' });
      const r = await sClient(b.port, statusArgs(pki));
      assert.match(r.stdout, /OCSP Response Status: successful/, r.stdout);
      assert.match(r.stdout, /Cert Status: good/);
      assert.equal(responder.requests, 1, 'fetched once, then served from the cache');
      await sClient(b.port, statusArgs(pki));
      assert.equal(responder.requests, 1);
    } finally {
      await b.stop();
      await responder.close();
    }
  });

  test('with the responder down, nothing is stapled and that is logged', async () => {
    const responder = await startResponder();
    const url = responder.url;
    await responder.close();
    const b = await brokerWithServerCert(dir, pki, url);
    try {
      await b.logger.waitFor('OCSP fetch failed; retrying', { listener: 'mqtts' });
      const r = await sClient(b.port, statusArgs(pki));
      assert.match(r.stdout, /OCSP response: no response sent/, r.stdout);
      await b.logger.waitFor('no current OCSP response; stapling nothing', { listener: 'mqtts' });
    } finally {
      await b.stop();
    }
  });

  test('a certificate without an OCSP URL turns stapling off, logged', async () => {
    const b = await brokerWithServerCert(dir, pki, undefined);
    try {
      await b.logger.waitFor('OCSP stapling off', { reason: 'the certificate names no OCSP responder' });
    } finally {
      await b.stop();
    }
  });
});
