/**
 * Passphrase-encrypted private keys read by real OpenSSL and Node, and the refusals.
 */
import assert from 'node:assert/strict';
import { createPrivateKey } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createRootCa, decryptPrivateKeyPem, encryptPrivateKeyPem, isEncryptedPrivateKeyPem, loadCa } from '../../src/pki/index.js';
import { expectPkiError, openssl, opensslOk, scratchDir, writeFiles } from './pki-openssl-support.js';

let dir: string;
let cleanup: () => Promise<void>;
before(async () => {
  ({ dir, cleanup } = await scratchDir('pki-keys'));
});
after(async () => cleanup());

const PASS = 'correct horse battery staple';

describe('private key encryption', () => {
  for (const keyAlgorithm of ['ec-p256', 'rsa-2048'] as const) {
    it(`${keyAlgorithm}: openssl reads the encrypted key with the passphrase, and only with it`, async () => {
      const ca = await createRootCa({ commonName: `Key ${keyAlgorithm}`, keyAlgorithm });
      const encrypted = encryptPrivateKeyPem(ca.keyPem, PASS);
      assert.match(encrypted, /^-----BEGIN ENCRYPTED PRIVATE KEY-----\n[\s\S]+-----END ENCRYPTED PRIVATE KEY-----\n$/);
      assert.equal(isEncryptedPrivateKeyPem(encrypted), true);
      assert.equal(isEncryptedPrivateKeyPem(ca.keyPem), false);
      await writeFiles(dir, { [`${keyAlgorithm}.key`]: encrypted });

      const out = await opensslOk(dir, 'pkey', '-in', `${keyAlgorithm}.key`, '-passin', `pass:${PASS}`);
      assert.equal(createPrivateKey(out).export({ type: 'pkcs8', format: 'pem' }), ca.keyPem);
      const info = await opensslOk(dir, 'asn1parse', '-in', `${keyAlgorithm}.key`);
      assert.match(info, /aes-256-cbc/);
      const wrong = await openssl(dir, 'pkey', '-in', `${keyAlgorithm}.key`, '-passin', 'pass:wrong');
      assert.equal(wrong.ok, false, wrong.out);

      const decrypted = decryptPrivateKeyPem(encrypted, PASS);
      assert.equal(decrypted, ca.keyPem);
      // The decrypted key still signs for its CA.
      await loadCa({ certPem: ca.certPem, keyPem: decrypted }, new Date());
    });
  }

  it('a key openssl encrypted is decrypted too (PKCS#8 and legacy PEM encryption)', async () => {
    await opensslOk(dir, 'genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-aes-256-cbc', '-pass', `pass:${PASS}`, '-out', 'os.key');
    await opensslOk(dir, 'ec', '-in', 'os.key', '-passin', `pass:${PASS}`, '-aes128', '-passout', `pass:${PASS}`, '-out', 'legacy.key');
    const { readFile } = await import('node:fs/promises');
    for (const name of ['os.key', 'legacy.key']) {
      const pem = await readFile(`${dir}/${name}`, 'utf8');
      assert.equal(isEncryptedPrivateKeyPem(pem), true, name);
      if (name === 'legacy.key') assert.match(pem, /^-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED/);
      assert.match(decryptPrivateKeyPem(pem, PASS), /^-----BEGIN PRIVATE KEY-----\n/);
      await expectPkiError(() => decryptPrivateKeyPem(pem, 'nope'), 'ERR_PKI_PASSPHRASE');
    }
  });

  it('wrong or missing passphrases are ERR_PKI_PASSPHRASE; unencrypted keys pass through', async () => {
    const ca = await createRootCa({ commonName: 'Pass CA' });
    const encrypted = encryptPrivateKeyPem(ca.keyPem, PASS);
    const wrong = await expectPkiError(() => decryptPrivateKeyPem(encrypted, 'wrong'), 'ERR_PKI_PASSPHRASE');
    assert.match(wrong, /wrong passphrase/);
    assert.doesNotMatch(wrong, /PRIVATE KEY/);
    assert.match(await expectPkiError(() => decryptPrivateKeyPem(encrypted), 'ERR_PKI_PASSPHRASE'), /passphrase is needed/);
    await expectPkiError(() => encryptPrivateKeyPem(ca.keyPem, ''), 'ERR_PKI_PASSPHRASE');
    await expectPkiError(() => encryptPrivateKeyPem(encrypted, PASS), 'ERR_PKI_INVALID_INPUT');
    await expectPkiError(() => encryptPrivateKeyPem('not a key', PASS), 'ERR_PKI_UNSUPPORTED_KEY');
    assert.equal(decryptPrivateKeyPem(ca.keyPem), ca.keyPem);
    assert.equal(decryptPrivateKeyPem(ca.keyPem, 'ignored'), ca.keyPem);
  });
});
