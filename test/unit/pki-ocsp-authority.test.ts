/**
 * The OCSP authority over a real PKI directory keeps its CA material between requests
 * but reloads it when a CA file changes: an intermediate created after the first request
 * answers for its certificates, and a root key moved away stops root-signed answers.
 */
import assert from 'node:assert/strict';
import { readFile, unlink } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { BastionError } from '../../src/core/errors.js';
import { buildOcspRequest, parseOcspResponse } from '../../src/pki/index.js';
import { pkiOcspAuthority } from '../../src/server/pki-ocsp.js';
import { PkiService } from '../../src/server/pki-service.js';
import { tempDirs } from './pki-test-support.js';

const newDir = tempDirs('bastion-pki-ocsp-authority-');

describe('pkiOcspAuthority', () => {
  it('sees a new intermediate and a removed root key on the next request', async () => {
    const pki = await PkiService.init(await newDir('pki'), { commonName: 'Authority Root' });
    try {
      const authority = pkiOcspAuthority(pki.layout, pki.inventory, {});
      const statusOf = async (certPath: string, issuerPath: string): Promise<string | undefined> => {
        const certPem = (await readFile(certPath, 'utf8')).split(/(?<=-----END CERTIFICATE-----)/)[0]!;
        const der = buildOcspRequest({ certPem, issuerPem: await readFile(issuerPath, 'utf8') });
        return parseOcspResponse(await authority.respond(der)).responses[0]?.status;
      };

      const byRoot = await pki.issue({ profile: 'client', commonName: 'by-root' });
      assert.equal(await statusOf(byRoot.certPath, pki.layout.rootCert), 'good');

      // Without a reload the root alone would answer, and call this certificate unknown.
      await pki.createIntermediate({ commonName: 'Authority Issuing' });
      const byIntermediate = await pki.issue({ profile: 'client', commonName: 'by-intermediate' });
      assert.equal(await statusOf(byIntermediate.certPath, pki.layout.intermediateCert), 'good');

      // Without a reload the root key already loaded would still sign.
      await unlink(pki.layout.rootKey);
      await assert.rejects(statusOf(byRoot.certPath, pki.layout.rootCert), (err: unknown) => err instanceof BastionError && err.code === 'ERR_OCSP_UNAUTHORIZED');
      assert.equal(await statusOf(byIntermediate.certPath, pki.layout.intermediateCert), 'good');
    } finally {
      pki.close();
    }
  });
});
