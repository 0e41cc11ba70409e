/**
 * OCSP stapling: the listener fetches a real OCSP response for its own certificate from
 * the responder named in the certificate (Bastion's OCSP responder, signing with our CA),
 * and `openssl s_client -status` sees it stapled; with no responder, nothing is stapled
 * and that is logged; a certificate without an OCSP URL turns stapling off, logged.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startOcspResponder } from '../../src/admin/ocsp-responder.js';
import { silentLogger } from '../../src/core/logger.js';
import { createOcspResponse, issueCertificate, LOCAL_SERVER_SANS, parseOcspRequest, type OcspStatus } from '../../src/pki/index.js';
import { makeTestPki, testCa, type TestPki } from '../helpers/pki.js';
import { sClient, startTlsBroker, type TlsBroker } from './tls-support.js';

/**
 * Bastion's OCSP responder (src/admin) with an authority that signs with the test CA and
 * answers `status` for every serial; counts the requests.
 */
async function startResponder(status: OcspStatus = { status: 'good' }): Promise<{ url: string; requests: number; close(): Promise<void> }> {
  const ca = await testCa();
  const state = { requests: 0 };
  const responder = await startOcspResponder({
    host: '127.0.0.1',
    port: 0,
    logger: silentLogger,
    authority: {
      respond: async (der) => {
        state.requests++;
        const request = parseOcspRequest(der);
        return createOcspResponse({ ca, certIds: request.certIds, statusOf: () => status, ...(request.nonce !== undefined ? { nonce: request.nonce } : {}) });
      },
    },
  });
  return {
    url: `http://127.0.0.1:${responder.port}/`,
    get requests() {
      return state.requests;
    },
    close: () => responder.close(),
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

  test('a revoked status is stapled as it is (the client decides) and logged as an error', async () => {
    const responder = await startResponder({ status: 'revoked', revokedAt: new Date(Date.now() - 60_000) });
    const b = await brokerWithServerCert(dir, pki, responder.url);
    try {
      await b.logger.waitFor('OCSP says our own server certificate is not good', { listener: 'mqtts', status: 'revoked' });
      const r = await sClient(b.port, statusArgs(pki));
      assert.match(r.stdout, /Cert Status: revoked/, r.stdout);
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
