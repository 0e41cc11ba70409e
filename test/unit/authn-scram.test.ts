/**
 * SCRAM-SHA-256 server side: RFC 7677 §3's test vector end to end through the enhanced
 * auth method, a wrong proof, the unknown-user disguise, and malformed messages.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ClientIdentity, EnhancedAuthState, EnhancedAuthStep } from '../../src/broker/ports.js';
import { ReasonCode } from '../../src/protocol/reason-codes.js';
import { scramCredentials } from '../../src/security/authn/password-hash.js';
import { ScramSha256Method } from '../../src/security/authn/scram-method.js';
import type { UserRecord, UserStore } from '../../src/security/authn/user-store.js';
import { ScramClient } from '../helpers/scram-client.js';

// RFC 7677 §3.
const RFC = {
  user: 'user',
  password: 'pencil',
  clientFirst: 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO',
  serverNonce: '%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0',
  serverFirst: 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096',
  clientFinal: 'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
  serverFinal: 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=',
};

async function storeWith(name: string, password: string, salt: Buffer): Promise<UserStore> {
  const record: UserRecord = { name, passwordHash: '$unused', scram: await scramCredentials(password, 4096, salt), createdAt: 0 };
  return { find: (n) => (n === name ? record : null) };
}

function state(): EnhancedAuthState {
  const identity: ClientIdentity = { principal: null, method: 'anonymous', remoteAddress: '127.0.0.1', listener: 'l' };
  return { clientId: 'c1', identity, scratch: new Map() };
}

const text = (step: EnhancedAuthStep): string => (step.kind === 'failure' ? assert.fail(`unexpected failure ${step.reason}`) : (step.data?.toString('utf8') ?? ''));

test('RFC 7677 test vector: server-first, proof check and server-final match byte for byte', async () => {
  const users = await storeWith(RFC.user, RFC.password, Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64'));
  const method = new ScramSha256Method(users, { iterations: 4096, serverNonce: () => RFC.serverNonce });
  const s = state();
  const first = await method.step(s, Buffer.from(RFC.clientFirst));
  assert.equal(first.kind, 'continue');
  assert.equal(text(first), RFC.serverFirst);
  const final = await method.step(s, Buffer.from(RFC.clientFinal));
  assert.equal(final.kind, 'success');
  assert.equal(text(final), RFC.serverFinal);
  assert.equal(final.kind === 'success' && final.username, 'user');
  assert.equal(final.kind === 'success' && final.method, 'scram');
});

test('a wrong proof fails with 0x86 and the exchange starts over', async () => {
  const users = await storeWith('alice', 'right password', Buffer.alloc(16, 7));
  const method = new ScramSha256Method(users, { iterations: 4096 });
  const s = state();
  const client = new ScramClient('alice', 'wrong password');
  const serverFirst = text(await method.step(s, Buffer.from(client.clientFirst())));
  const final = await method.step(s, Buffer.from(client.clientFinal(serverFirst)));
  assert.deepEqual(final.kind === 'failure' && [final.reasonCode, final.reason], [ReasonCode.BadUserNameOrPassword, 'bad user name or password']);
  assert.equal(s.scratch.size, 0);
});

test('an unknown user gets a stable, name-derived salt and fails exactly like a wrong password', async () => {
  const users = await storeWith('alice', 'right password', Buffer.alloc(16, 7));
  const method = new ScramSha256Method(users, { iterations: 4096 });
  const salts: string[] = [];
  for (const name of ['mallory', 'mallory', 'trudy']) {
    const s = state();
    const client = new ScramClient(name, 'any password');
    const serverFirst = text(await method.step(s, Buffer.from(client.clientFirst())));
    assert.match(serverFirst, /^r=[^,]+,s=[A-Za-z0-9+/=]+,i=4096$/);
    salts.push(/s=([^,]+)/.exec(serverFirst)![1]!);
    const final = await method.step(s, Buffer.from(client.clientFinal(serverFirst)));
    assert.deepEqual(final.kind === 'failure' && [final.reasonCode, final.reason], [ReasonCode.BadUserNameOrPassword, 'bad user name or password']);
  }
  assert.equal(salts[0], salts[1], 'the same name gets the same salt (a retry cannot tell)');
  assert.notEqual(salts[0], salts[2]);
  assert.equal(Buffer.from(salts[0]!, 'base64').length, 16, 'as long as a real salt');
});

test('malformed or unsupported client messages are refused', async () => {
  const users = await storeWith('alice', 'right password', Buffer.alloc(16, 7));
  const method = new ScramSha256Method(users, { iterations: 4096 });
  for (const bad of ['', 'garbage', 'p=tls-unique,,n=alice,r=abc', 'n,a=admin,n=alice,r=abc', 'n,,n=,r=abc', 'n,,n=al=ice,r=abc']) {
    const step = await method.step(state(), Buffer.from(bad));
    assert.equal(step.kind, 'failure', bad);
    assert.equal(step.kind === 'failure' && step.reasonCode, ReasonCode.NotAuthorized, bad);
  }
  const s = state();
  const client = new ScramClient('alice', 'right password');
  const serverFirst = text(await method.step(s, Buffer.from(client.clientFirst())));
  const tampered = client.clientFinal(serverFirst).replace(/r=[^,]+/, 'r=othernonce');
  const final = await method.step(s, Buffer.from(tampered));
  assert.equal(final.kind === 'failure' && final.reason, 'SCRAM nonce mismatch');
});
