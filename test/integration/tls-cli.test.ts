/**
 * `bastion serve` with bad TLS settings stops with one readable line on stderr and a
 * non-zero exit: a file that is not a certificate, a key that does not match, a weak
 * cipher, a short PSK key.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { issueLocalServerCertificate } from '../../src/pki/index.js';
import { makeTestPki, testCa, type TestPki } from '../helpers/pki.js';
import { BASTION_MAIN, run } from './support.js';

describe('bastion serve refuses bad TLS settings with one line', () => {
  let dir: string;
  let pki: TestPki;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'bastion-tls-cli-'));
    pki = await makeTestPki(join(dir, 'pki'), ['client1']);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  async function serveWith(name: string, tlsLines: string[], listenerLines: string[] = []): Promise<{ code: number | null; stderr: string }> {
    const config = join(dir, `${name}-bastion.yaml`);
    writeFileSync(
      config,
      [
        `dataDir: ${JSON.stringify(join(dir, `data-${name}`))}`,
        'listeners:',
        '  - name: secure',
        '    protocol: mqtts',
        '    host: 127.0.0.1',
        '    port: 0',
        ...listenerLines.map((l) => `    ${l}`),
        '    tls:',
        ...tlsLines.map((l) => `      ${l}`),
        // Info logs go to stderr as JSON; the refusal must be the only line.
        'log:',
        '  level: warn',
        '',
      ].join('\n'),
    );
    return run(process.execPath, [BASTION_MAIN, 'serve', '-c', config], { timeoutMs: 15000 });
  }

  const expectOneLine = (r: { code: number | null; stderr: string }, pattern: RegExp): void => {
    assert.notEqual(r.code, 0);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, pattern);
  };

  test('a certificate file without a certificate', async () => {
    const garbage = join(dir, 'garbage.crt');
    writeFileSync(garbage, 'hello\n');
    expectOneLine(await serveWith('garbage', [`cert: ${garbage}`, `key: ${pki.serverKey}`, `ca: ${pki.caCert}`]), /^bastion: tls\.cert .*garbage\.crt holds no PEM certificate$/);
  });

  test('a key that does not match the certificate', async () => {
    const other = await issueLocalServerCertificate(await testCa());
    const key = join(dir, 'other.key');
    writeFileSync(key, other.keyPem, { mode: 0o600 });
    expectOneLine(await serveWith('mismatch', [`cert: ${pki.serverCert}`, `key: ${key}`, `ca: ${pki.caCert}`]), /^bastion: tls\.cert .* unusable: .*key values mismatch/);
  });

  test('a weak cipher', async () => {
    expectOneLine(await serveWith('weak', [`cert: ${pki.serverCert}`, `key: ${pki.serverKey}`, `ca: ${pki.caCert}`, 'ciphers: ECDHE-RSA-AES128-SHA']), /config error at listeners\[0\]\.tls\.ciphers: ECDHE-RSA-AES128-SHA is not an allowed suite/);
  });

  test('an unknown key-exchange group in tls.groups', async () => {
    expectOneLine(
      await serveWith('groups', [`cert: ${pki.serverCert}`, `key: ${pki.serverKey}`, `ca: ${pki.caCert}`, 'groups: X25519Kyber768Draft00:X25519']),
      /^bastion: config error at listeners\[0\]\.tls\.groups: unknown or weak key-exchange group X25519Kyber768Draft00 \(allowed: X25519MLKEM768, /,
    );
  });

  test('requirePostQuantum on a listener that still allows TLS 1.2', async () => {
    expectOneLine(
      await serveWith('pq12', [`cert: ${pki.serverCert}`, `key: ${pki.serverKey}`, `ca: ${pki.caCert}`, 'requirePostQuantum: true']),
      /^bastion: config error at listeners\[0\]\.tls\.requirePostQuantum: requirePostQuantum needs minVersion: TLSv1\.3/,
    );
  });

  test('a PSK key shorter than 16 bytes', async () => {
    const psk = join(dir, 'psk.yaml');
    writeFileSync(psk, 'dev1: 00112233\n');
    expectOneLine(await serveWith('psk', [`cert: ${pki.serverCert}`, `key: ${pki.serverKey}`, `ca: ${pki.caCert}`], [`psk: { file: ${psk} }`]), /^bastion: psk file .*psk\.yaml: the key of dev1 has 4 bytes; at least 16 are required$/);
  });
});
