/**
 * JwtVerifier with static keys: a PEM public key and a JWK file's content, an HMAC secret,
 * and the refusals that do not need a JWKS server (no exp, nbf in the future, an algorithm
 * outside the allow-list, an unusable user-name claim).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT } from 'jose';
import type { JwtConfig } from '../../src/core/auth-config.js';
import { JwtVerifier, looksLikeJwt } from '../../src/security/authn/jwt-verifier.js';

const base: JwtConfig = {
  issuer: 'iss',
  audience: 'aud',
  algorithms: ['ES256'],
  usernameClaim: 'sub',
  clockToleranceSeconds: 0,
  jwksCacheMaxAgeSeconds: 600,
  jwksCooldownSeconds: 30,
};

const claims = (sub: string | null = 'dev'): SignJWT => new SignJWT(sub === null ? {} : { sub }).setIssuer('iss').setAudience('aud');

test('a PEM or JWK public key verifies; no exp, a future nbf, another algorithm are refused', async () => {
  const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
  for (const text of [await exportSPKI(publicKey), JSON.stringify(await exportJWK(publicKey))]) {
    const v = new JwtVerifier(base, { kind: 'public', text });
    const ok = await v.verify(await claims().setProtectedHeader({ alg: 'ES256' }).setExpirationTime('1h').sign(privateKey), 'c');
    assert.equal(ok.ok && ok.username, 'dev');
    const noExp = await v.verify(await claims().setProtectedHeader({ alg: 'ES256' }).sign(privateKey), 'c');
    assert.deepEqual(noExp.ok === false && [noExp.reasonCode, noExp.reason], [0x86, 'the token\'s exp claim is not acceptable (missing)']);
    const future = await v.verify(await claims().setProtectedHeader({ alg: 'ES256' }).setExpirationTime('2h').setNotBefore('1h').sign(privateKey), 'c');
    assert.equal(future.ok === false && future.reason, "the token's nbf claim is not acceptable (check_failed)");
  }
  const other = await generateKeyPair('ES384');
  const v = new JwtVerifier(base, { kind: 'public', text: await exportSPKI(publicKey) });
  const wrongAlg = await v.verify(await claims().setProtectedHeader({ alg: 'ES384' }).setExpirationTime('1h').sign(other.privateKey), 'c');
  assert.deepEqual(wrongAlg.ok === false && wrongAlg.reason, 'the token algorithm is not allowed');
  const noSub = await v.verify(await claims(null).setProtectedHeader({ alg: 'ES256' }).setExpirationTime('1h').sign(privateKey), 'c');
  assert.equal(noSub.ok === false && noSub.reason, 'the token has no usable sub claim');
});

test('an HMAC secret verifies HS256; a token signed with another secret is refused', async () => {
  const secret = Buffer.alloc(32, 9);
  const v = new JwtVerifier({ ...base, algorithms: ['HS256'] }, { kind: 'secret', bytes: secret });
  const ok = await v.verify(await claims().setProtectedHeader({ alg: 'HS256' }).setExpirationTime('1h').sign(secret), 'c');
  assert.equal(ok.ok, true);
  const forged = await v.verify(await claims().setProtectedHeader({ alg: 'HS256' }).setExpirationTime('1h').sign(Buffer.alloc(32, 1)), 'c');
  assert.equal(forged.ok === false && forged.reason, 'the token signature does not verify');
  assert.equal(looksLikeJwt('plain password'), false);
});
