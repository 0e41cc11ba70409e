/**
 * Password hashing: scrypt round trip, the dummy hash an unknown user still pays for
 * (counted on the real scrypt), the password policy, and the provider's verdicts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AuthRequest } from '../../src/broker/ports.js';
import { ReasonCode } from '../../src/protocol/reason-codes.js';
import { makeUserRecord, passwordProblem, PasswordHasher, realScrypt, type ScryptFn } from '../../src/security/authn/password-hash.js';
import { PasswordProvider } from '../../src/security/authn/password-provider.js';
import type { UserRecord } from '../../src/security/authn/user-store.js';

function counting(): { fn: ScryptFn; calls: () => number } {
  let n = 0;
  return {
    fn: (pw, salt, params) => {
      n++;
      return realScrypt(pw, salt, params);
    },
    calls: () => n,
  };
}

const req = (username: string | undefined, password: string | undefined): AuthRequest => ({
  clientId: 'c1',
  username,
  password: password === undefined ? undefined : Buffer.from(password),
  identity: { principal: null, method: 'anonymous', remoteAddress: '127.0.0.1', listener: 'l' },
  allowAnonymous: false,
});

test('scrypt hashes use N=2^15, r=8, p=1 and verify only the right password', async () => {
  const hasher = new PasswordHasher();
  const hash = await hasher.hash('correct horse');
  assert.match(hash, /^\$scrypt\$ln=15,r=8,p=1\$[A-Za-z0-9+/=]{24}\$[A-Za-z0-9+/=]{44}$/);
  assert.equal(await hasher.verify(hash, Buffer.from('correct horse')), true);
  assert.equal(await hasher.verify(hash, Buffer.from('correct horsE')), false);
  assert.notEqual(await hasher.hash('correct horse'), hash, 'a fresh salt each time');
});

test('an unknown user and an unreadable hash each still run exactly one scrypt', async () => {
  const c = counting();
  const hasher = new PasswordHasher(c.fn);
  const alice: UserRecord = await makeUserRecord('alice', 'alice password', hasher, 4096);
  const provider = new PasswordProvider({ find: (n) => (n === 'alice' ? alice : n === 'broken' ? { ...alice, name: 'broken', passwordHash: 'not a hash' } : null) }, hasher);
  const before = c.calls();
  const known = await provider.authenticate(req('alice', 'wrong password'));
  assert.equal(c.calls() - before, 1);
  const unknown = await provider.authenticate(req('nobody', 'wrong password'));
  assert.equal(c.calls() - before, 2);
  const broken = await provider.authenticate(req('broken', 'alice password'));
  assert.equal(c.calls() - before, 3);
  const invalidName = await provider.authenticate(req('a/b', 'x'));
  assert.equal(c.calls() - before, 4, 'an invalid name is not looked up but still pays');
  for (const v of [known, unknown, broken, invalidName]) assert.deepEqual(v, { kind: 'deny', reasonCode: ReasonCode.BadUserNameOrPassword, reason: 'bad user name or password' });
  assert.deepEqual(await provider.authenticate(req('alice', 'alice password')), { kind: 'allow', principal: 'alice', method: 'password', username: 'alice' });
  assert.deepEqual(await provider.authenticate(req(undefined, undefined)), { kind: 'not-mine' });
  assert.deepEqual(await provider.authenticate(req('alice', undefined)), { kind: 'not-mine' });
});

test('password policy refuses empty, short and control-character passwords', () => {
  assert.equal(passwordProblem(''), 'the password is empty');
  assert.match(passwordProblem('short')!, /shorter than 10/);
  assert.match(passwordProblem('ten chars\u0000x')!, /control/);
  assert.equal(passwordProblem('long enough password'), null);
});
