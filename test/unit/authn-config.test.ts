/**
 * The authentication config rules: the second opt-in for secrets on plaintext listeners,
 * the JWT key and algorithm rules, and requireCertificate's need for a login provider.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/server/load-config.js';
import { configError } from '../helpers/config-error.js';

const tls = { cert: 'c.pem', key: 'k.pem', clientCerts: 'none' };
const plain = (extra: Record<string, unknown>): Record<string, unknown> => ({ name: 'plain', protocol: 'mqtt', port: 0, insecure: true, ...extra });
const jwt = { issuer: 'https://issuer', audience: 'bastion', jwksUrl: 'http://127.0.0.1:1/jwks' };

test('password or jwt on a plaintext listener is a config error without passwordsInCleartext', () => {
  for (const protocol of ['mqtt', 'ws']) {
    for (const provider of ['password', 'jwt', 'scram']) {
      const msg = configError({ listeners: [plain({ protocol, auth: { providers: [provider] } })], authn: { jwt } });
      assert.match(msg, /^config error at listeners\[0\]\.auth\.providers: .* sends secrets in the clear; say passwordsInCleartext: true/, `${protocol} ${provider}`);
    }
  }
  const ok = parseConfig({ listeners: [plain({ auth: { providers: ['password'] }, passwordsInCleartext: true })] }, '/tmp');
  assert.deepEqual(ok.config.listeners[0]!.auth, { providers: ['password'], requireCertificate: false });
});

test('TLS-only providers, missing sections and lonely options are config errors', () => {
  assert.match(configError({ listeners: [plain({ auth: { providers: ['certificate'] } })] }), /need a TLS listener/);
  assert.match(configError({ listeners: [{ name: 't', protocol: 'mqtts', port: 0, tls, auth: { providers: ['psk'] } }] }), /psk provider needs the listener psk section/);
  assert.match(configError({ listeners: [{ name: 't', protocol: 'mqtts', port: 0, tls, auth: { providers: ['certificate'], requireCertificate: true } }] }), /requireCertificate needs a password, jwt or scram provider/);
  assert.match(configError({ listeners: [{ name: 't', protocol: 'mqtts', port: 0, tls, auth: { providers: ['jwt'] } }] }), /^config error at authn\.jwt: a listener uses the jwt provider/);
  assert.match(configError({ listeners: [plain({ passwordsInCleartext: true })] }), /passwordsInCleartext applies only with an auth chain/);
  assert.match(configError({ listeners: [{ name: 't', protocol: 'mqtts', port: 0, tls, auth: { providers: ['password', 'password'] } }] }), /listed twice/);
});

test('JWT: one key source, no HMAC without a secret, no none', () => {
  const listeners = [{ name: 't', protocol: 'mqtts', port: 0, tls, auth: { providers: ['jwt'] } }];
  assert.match(configError({ listeners, authn: { jwt: { ...jwt, algorithms: ['HS256'] } } }), /HS256 needs secretFile/);
  assert.match(configError({ listeners, authn: { jwt: { ...jwt, algorithms: ['none'] } } }), /authn\.jwt\.algorithms\[0\]/);
  assert.match(configError({ listeners, authn: { jwt: { ...jwt, publicKeyFile: 'k.pem' } } }), /exactly one of jwksUrl, publicKeyFile or secretFile/);
  assert.match(configError({ listeners, authn: { jwt: { issuer: 'i', audience: 'a', secretFile: 's', algorithms: ['HS256', 'ES256'] } } }), /with secretFile only HS256/);
  const ok = parseConfig({ listeners, authn: { jwt } }, '/tmp').config.authn.jwt!;
  assert.deepEqual(ok.algorithms, ['RS256', 'PS256', 'ES256', 'EdDSA']);
  assert.equal(ok.usernameClaim, 'sub');
});
