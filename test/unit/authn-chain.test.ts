/**
 * The per-listener chain: order, not-mine, fail-closed cases (empty chain, nobody claims,
 * a throwing provider), credentials never falling through to anonymous, the
 * certificate-and-login rule, listeners without a chain keeping the transport behaviour,
 * and the gate that offers enhanced methods only where the chain lists them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AuthRequest, ClientIdentity } from '../../src/broker/ports.js';
import { ReasonCode } from '../../src/protocol/reason-codes.js';
import { ChainAuthenticator, type ListenerChain } from '../../src/security/authn/chain.js';
import type { AuthProvider, ProviderVerdict } from '../../src/security/authn/provider.js';
import { CertificateProvider, PskProvider } from '../../src/security/authn/transport-providers.js';

const cert = { commonName: 'dev1', serialNumber: '01', fingerprint256: 'AA', issuer: 'CN=ca', subject: 'CN=dev1', organizationalUnits: [], sans: { dns: [], uri: [], ip: [], email: [] } };
const anonymous: ClientIdentity = { principal: null, method: 'anonymous', remoteAddress: '127.0.0.1', listener: 'l' };
const withCert: ClientIdentity = { ...anonymous, principal: 'dev1', method: 'certificate', certificate: cert };
const withPsk: ClientIdentity = { ...anonymous, principal: 'psk-1', method: 'psk', pskIdentity: 'psk-1' };

const req = (identity: ClientIdentity, extra: Partial<AuthRequest> = {}): AuthRequest => ({ clientId: 'c', username: undefined, password: undefined, identity, allowAnonymous: false, ...extra });

function fixed(name: string, verdict: ProviderVerdict | Error, calls: string[] = []): AuthProvider {
  return {
    name,
    authenticate() {
      calls.push(name);
      if (verdict instanceof Error) throw verdict;
      return verdict;
    },
  };
}

function logger(lines: string[]) {
  const push = (_o: object, msg?: string): void => void lines.push(msg ?? '');
  return { debug: push, info: push, warn: push, error: push };
}

const chainOf = (providers: AuthProvider[], requireCertificate = false): ChainAuthenticator =>
  new ChainAuthenticator(new Map<string, ListenerChain>([['l', { names: providers.map((p) => p.name), providers, requireCertificate }]]), logger([]));

test('providers are asked in order; the first that claims decides', async () => {
  const calls: string[] = [];
  const chain = chainOf([fixed('a', { kind: 'not-mine' }, calls), fixed('b', { kind: 'allow', principal: 'p', method: 'password', username: 'p' }, calls), fixed('c', { kind: 'deny', reasonCode: 0x87, reason: 'x' }, calls)]);
  assert.deepEqual(await chain.authenticate(req(anonymous)), { ok: true, principal: 'p', method: 'password', username: 'p' });
  assert.deepEqual(calls, ['a', 'b']);
  const denied = chainOf([fixed('a', { kind: 'deny', reasonCode: ReasonCode.BadUserNameOrPassword, reason: 'no' }), fixed('b', { kind: 'allow', principal: 'p', method: 'password' })]);
  assert.deepEqual(await denied.authenticate(req(anonymous)), { ok: false, reasonCode: 0x86, reason: 'no', provider: 'a' });
});

test('fail closed: empty chain, nobody claims, a throwing provider (logged)', async () => {
  assert.deepEqual(await chainOf([]).authenticate(req(anonymous)), { ok: false, reasonCode: 0x87, reason: 'no authentication provider on this listener admits this client', provider: 'chain' });
  assert.deepEqual(await chainOf([fixed('a', { kind: 'not-mine' })]).authenticate(req(anonymous, { username: 'u', password: Buffer.from('p') })), {
    ok: false,
    reasonCode: 0x86,
    reason: 'no authentication provider on this listener accepts these credentials',
    provider: 'chain',
  });
  const lines: string[] = [];
  const throwing = new ChainAuthenticator(new Map([['l', { names: ['boom'], providers: [fixed('boom', new Error('store down'))], requireCertificate: false }]]), logger(lines));
  assert.deepEqual(await throwing.authenticate(req(anonymous)), { ok: false, reasonCode: 0x87, reason: 'authentication provider boom failed', provider: 'boom' });
  assert.deepEqual(lines, ['authentication provider failed']);
});

test('anonymous only when allowed and no credentials were presented', async () => {
  const chain = chainOf([fixed('a', { kind: 'not-mine' })]);
  assert.deepEqual(await chain.authenticate(req(anonymous, { allowAnonymous: true })), { ok: true, principal: null, method: 'anonymous' });
  const r = await chain.authenticate(req(anonymous, { allowAnonymous: true, username: 'u', password: Buffer.from('wrong') }));
  assert.deepEqual(r, { ok: false, reasonCode: ReasonCode.BadUserNameOrPassword, reason: 'no authentication provider on this listener accepts these credentials', provider: 'chain' });
});

test('certificate and psk providers admit only what the transport proved', async () => {
  const chain = chainOf([new CertificateProvider(), new PskProvider()]);
  assert.deepEqual(await chain.authenticate(req(withCert)), { ok: true, principal: 'dev1', method: 'certificate' });
  assert.deepEqual(await chain.authenticate(req(withPsk)), { ok: true, principal: 'psk-1', method: 'psk' });
  assert.deepEqual(await chain.authenticate(req(anonymous, { username: 'dev1', password: Buffer.from('x') })), { ok: false, reasonCode: ReasonCode.BadUserNameOrPassword, reason: 'no authentication provider on this listener accepts these credentials', provider: 'chain' });
});

test('requireCertificate: a certificate alone is not enough, a login alone is not enough', async () => {
  const login = fixed('password', { kind: 'allow', principal: 'alice', method: 'password', username: 'alice' });
  const chain = chainOf([new CertificateProvider(), login], true);
  assert.deepEqual(await chain.authenticate(req(anonymous, { username: 'alice', password: Buffer.from('x') })), { ok: false, reasonCode: 0x87, reason: 'this listener requires a client certificate as well as a login', provider: 'certificate' });
  const certOnly = chainOf([new CertificateProvider(), fixed('password', { kind: 'not-mine' })], true);
  assert.deepEqual(await certOnly.authenticate(req(withCert)), { ok: false, reasonCode: 0x86, reason: 'this listener requires a login as well as the client certificate', provider: 'chain' });
  assert.deepEqual(await chain.authenticate(req(withCert, { username: 'alice', password: Buffer.from('x') })), { ok: true, principal: 'alice', method: 'password', username: 'alice' });
});

test('a listener without a chain keeps the transport behaviour; the gate refuses methods a chain does not list', async () => {
  const chain = chainOf([new CertificateProvider()]);
  const other = { ...withCert, listener: 'other' };
  assert.deepEqual(chain.authenticate(req(other)), { ok: true, principal: 'dev1' });
  const gated = chain.gate({ name: 'X', step: () => ({ kind: 'success', principal: 'p' }) }, 'scram');
  const step = await gated.step({ clientId: 'c', identity: withCert, scratch: new Map() }, undefined);
  assert.deepEqual(step.kind === 'failure' && [step.reasonCode, step.provider], [ReasonCode.BadAuthenticationMethod, 'scram']);
  const offered = chainOf([fixed('scram', { kind: 'not-mine' })]).gate({ name: 'X', step: () => ({ kind: 'success', principal: 'p' }) }, 'scram');
  assert.equal((await offered.step({ clientId: 'c', identity: anonymous, scratch: new Map() }, undefined)).kind, 'success');
});
