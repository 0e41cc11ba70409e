/**
 * Hardened TLS against a real OpenSSL client: only TLS 1.2 and 1.3, only AEAD suites with
 * forward secrecy, the configured key-exchange groups, and a config that names a weak
 * suite or curve is refused before anything listens.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ConfigError } from '../../src/core/errors.js';
import { parseConfig } from '../../src/server/load-config.js';
import { negotiated, sClient, startTlsBroker, type TlsBroker } from './tls-support.js';

function clientArgs(b: TlsBroker): string[] {
  const c = b.pki.clients.client1!;
  return ['-cert', c.cert, '-key', c.key, '-CAfile', b.pki.caCert];
}

describe('TLS versions and suites (default settings)', () => {
  let b: TlsBroker;
  before(async () => {
    b = await startTlsBroker();
  });
  after(() => b.stop());

  test('TLS 1.3 is negotiated', async () => {
    const r = await sClient(b.port, [...clientArgs(b), '-tls1_3']);
    assert.equal(negotiated(r)?.protocol, 'TLSv1.3', r.stdout + r.stderr);
  });

  test('TLS 1.2 with ECDHE-ECDSA-AES128-GCM-SHA256 is negotiated', async () => {
    const r = await sClient(b.port, [...clientArgs(b), '-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-GCM-SHA256']);
    assert.deepEqual(negotiated(r), { protocol: 'TLSv1.2', cipher: 'ECDHE-ECDSA-AES128-GCM-SHA256' }, r.stdout + r.stderr);
  });

  test('TLS 1.1 is refused, and the refusal is logged with the remote address and the reason', async () => {
    const r = await sClient(b.port, [...clientArgs(b), '-tls1_1', '-cipher', 'DEFAULT@SECLEVEL=0']);
    assert.equal(negotiated(r), null, r.stdout);
    const line = await b.logger.waitFor('TLS handshake failed', { listener: 'mqtts', reason: 'unsupported protocol' });
    assert.match(String(line.obj.remote), /127\.0\.0\.1/);
  });

  test('a suite without forward secrecy (AES128-SHA, RSA key exchange and CBC) is refused', async () => {
    const r = await sClient(b.port, [...clientArgs(b), '-tls1_2', '-cipher', 'AES128-SHA']);
    assert.equal(negotiated(r), null, r.stdout);
    await b.logger.waitFor('TLS handshake failed', { reason: 'no shared cipher' });
  });

  test('a CBC suite with ECDHE is refused too', async () => {
    const r = await sClient(b.port, [...clientArgs(b), '-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-SHA256']);
    assert.equal(negotiated(r), null, r.stdout);
  });

  test('a client offering only a key-exchange group outside tls.groups is refused', async () => {
    const r = await sClient(b.port, [...clientArgs(b), '-tls1_3', '-groups', 'P-521']);
    assert.equal(negotiated(r), null, r.stdout);
  });
});

describe('tls.minVersion and tls.groups', () => {
  let b: TlsBroker;
  before(async () => {
    b = await startTlsBroker({ tls: { minVersion: 'TLSv1.3', groups: 'P-521' } });
  });
  after(() => b.stop());

  test('minVersion TLSv1.3 refuses TLS 1.2', async () => {
    const r = await sClient(b.port, [...clientArgs(b), '-tls1_2']);
    assert.equal(negotiated(r), null, r.stdout);
  });

  test('minVersion TLSv1.3 accepts TLS 1.3, with a group the default list lacks but tls.groups names', async () => {
    const r = await sClient(b.port, [...clientArgs(b), '-tls1_3', '-groups', 'P-521']);
    assert.equal(negotiated(r)?.protocol, 'TLSv1.3', r.stdout + r.stderr);
  });
});

describe('weak TLS settings are config errors', () => {
  const listener = (tls: Record<string, unknown>): unknown => ({
    listeners: [{ name: 'l', protocol: 'mqtts', port: 0, tls: { cert: 'c', key: 'k', ca: 'a', ...tls } }],
  });
  const refused = (tls: Record<string, unknown>, pattern: RegExp): void => {
    assert.throws(
      () => parseConfig(listener(tls), '/tmp'),
      (err: unknown) => err instanceof ConfigError && err.code === 'ERR_CONFIG' && pattern.test(err.message),
    );
  };

  test('CBC, RSA key exchange, NULL, EXPORT, RC4, 3DES and keywords are refused', () => {
    for (const cipher of ['AES128-SHA', 'ECDHE-RSA-AES128-SHA', 'AES128-GCM-SHA256', 'NULL-SHA256', 'EXP-RC4-MD5', 'RC4-SHA', 'DES-CBC3-SHA', 'HIGH', 'ALL']) {
      refused({ ciphers: `ECDHE-ECDSA-AES128-GCM-SHA256:${cipher}` }, new RegExp(`tls\\.ciphers.*${cipher}.*not an allowed suite`));
    }
  });

  test('an empty cipher list, a weak curve and TLS 1.1 are refused', () => {
    refused({ ciphers: ':' }, /tls\.ciphers.*names no cipher suite/);
    refused({ groups: 'X25519:secp192r1' }, /tls\.groups.*secp192r1/);
    refused({ curves: 'X25519:secp192r1' }, /tls\.curves.*secp192r1/);
    refused({ minVersion: 'TLSv1.1' }, /tls\.minVersion/);
  });

  test('groups and its old name curves together, and requirePostQuantum without a hybrid group, are refused', () => {
    refused({ groups: 'X25519', curves: 'X25519' }, /tls\.curves: curves is the old name of groups: give only groups/);
    refused({ minVersion: 'TLSv1.3', requirePostQuantum: true, groups: 'X25519:P-256' }, /tls\.groups: requirePostQuantum needs a hybrid group/);
    refused({ requirePostQuantum: true }, /tls\.requirePostQuantum: requirePostQuantum needs minVersion: TLSv1\.3/);
  });

  test('AEAD suites with forward secrecy and the TLS 1.3 names are accepted', () => {
    const { config } = parseConfig(listener({ ciphers: 'TLS_AES_256_GCM_SHA384:ECDHE-RSA-CHACHA20-POLY1305', curves: 'P-384' }), '/tmp');
    assert.equal(config.listeners[0]!.tls!.ciphers, 'TLS_AES_256_GCM_SHA384:ECDHE-RSA-CHACHA20-POLY1305');
    assert.equal(config.listeners[0]!.tls!.sessionTickets.rotateHours, 12);
  });
});

describe('tls.curves, the old name of tls.groups', () => {
  let b: TlsBroker;
  before(async () => {
    b = await startTlsBroker({ tls: { minVersion: 'TLSv1.3', curves: 'P-521' } });
  });
  after(() => b.stop());

  test('still works, with a warning naming the new key', async () => {
    const line = await b.logger.waitFor(/tls\.curves is deprecated: rename it tls\.groups/, { listener: 'mqtts', postQuantum: false });
    assert.equal(line.level, 'warn');
    const r = await sClient(b.port, [...clientArgs(b), '-tls1_3', '-groups', 'P-521']);
    assert.equal(negotiated(r)?.protocol, 'TLSv1.3', r.stdout + r.stderr);
  });
});
