/**
 * Brute-force and flapping protection with a fake clock and an in-memory ban store: the
 * sliding window, bans by address and by user name tried (never by client id), the doubling
 * durations and their cap, which bans close live sessions, that no automatic ban refuses or
 * closes a certificate or PSK client (an operator's ban does), flapping keyed on a
 * certificate's fingerprint, and the bounded memory of the counters.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AuthorizedClient } from '../../src/broker/ports.js';
import { limitsSchema } from '../../src/core/limits-config.js';
import { BanList } from '../../src/security/limits/ban-list.js';
import { BruteForceProtection, escalatedBanSeconds } from '../../src/security/limits/brute-force.js';
import { FlappingProtection } from '../../src/security/limits/flapping.js';
import { SlidingWindowCounter } from '../../src/security/limits/sliding-window.js';
import { MemoryBanStore } from '../helpers/ban-store.js';

const CERT = { commonName: 'dev1', organizationalUnits: [], serialNumber: '0A1B', fingerprint256: 'AB:'.repeat(31) + 'CD', issuer: 'CN=ca', subject: 'CN=dev1', sans: { dns: [], uri: [], ip: [], email: [] } };
/** A device behind the attacker's NAT address, proven by its certificate. */
const CERT_DEVICE: AuthorizedClient = { clientId: 'dev1', principal: 'dev1', identity: { principal: 'dev1', method: 'certificate', certificate: CERT, remoteAddress: '10.0.0.1', listener: 'l' } };
const PSK_DEVICE: AuthorizedClient = { clientId: 'dev1', principal: 'psk1', identity: { principal: 'psk1', method: 'psk', pskIdentity: 'psk1', remoteAddress: '10.0.0.1', listener: 'l' } };
const passwordClient = (clientId: string, username: string, remoteAddress = '10.0.0.50'): AuthorizedClient => ({ clientId, principal: username, identity: { principal: username, method: 'password', username, remoteAddress, listener: 'l' } });

function harness(authFailures: Record<string, unknown> = {}, flapping: Record<string, unknown> = {}) {
  const clock = { t: 10_000_000 };
  const store = new MemoryBanStore();
  const bans = new BanList(store, { now: () => clock.t });
  const live: AuthorizedClient[] = [
    { clientId: 'victim', principal: 'victim', identity: { principal: 'victim', method: 'password', username: 'victim', remoteAddress: '10.0.0.50', listener: 'l' } },
    { clientId: 'on-attacker-ip', principal: null, identity: { principal: null, method: 'anonymous', remoteAddress: '::ffff:10.0.0.1', listener: 'l' } },
    { clientId: 'flappy', principal: null, identity: { principal: null, method: 'anonymous', remoteAddress: '10.0.0.60', listener: 'l' } },
    CERT_DEVICE,
  ];
  const kicked: string[] = [];
  const deps = {
    bans,
    disconnect: (match: (c: AuthorizedClient) => boolean) => {
      const ids = live.filter(match).map((c) => c.clientId);
      kicked.push(...ids);
      return ids;
    },
    defer: (fn: () => void) => fn(),
  };
  const limits = limitsSchema.parse({ authFailures: { maxFailures: 3, windowSeconds: 60, banSeconds: 10, maxBanSeconds: 35, ...authFailures }, flapping: { maxConnects: 3, windowSeconds: 60, banSeconds: 30, ...flapping } });
  return { clock, store, bans, kicked, brute: new BruteForceProtection(limits.authFailures, deps), flap: new FlappingProtection(limits.flapping, deps) };
}

test('durations double per automatic ban of the same key and stop at the cap', () => {
  assert.deepEqual([1, 2, 3, 4, 5].map((n) => escalatedBanSeconds(n, 60, 86_400)), [60, 120, 240, 480, 960]);
  assert.equal(escalatedBanSeconds(20, 60, 86_400), 86_400);
  assert.equal(escalatedBanSeconds(5000, 60, 86_400), 86_400, 'no overflow for a long history');
});

test('N failures from one address within the window ban the address; the ban grows each time and closes live sessions from it', () => {
  const { clock, bans, brute, kicked } = harness();
  assert.deepEqual(brute.onFailure('::ffff:10.0.0.1', 'a', clock.t), []);
  assert.deepEqual(brute.onFailure('10.0.0.1', 'b', clock.t + 1), []);
  const [ban] = brute.onFailure('10.0.0.1', 'c', clock.t + 2);
  assert.equal(ban?.kind, 'ip');
  assert.equal(ban?.value, '10.0.0.1');
  assert.equal(ban?.createdBy, 'auto:brute-force');
  assert.match(ban?.reason ?? '', /^3 authentication failures within 60s from this address/);
  assert.equal(ban?.expiresAt, clock.t + 2 + 10_000);
  assert.deepEqual(kicked, ['on-attacker-ip'], 'the live session from the banned address is closed');
  assert.notEqual(bans.addressRefusal('10.0.0.1'), null);
  assert.equal(bans.addressRefusal('10.0.0.1', true), null, 'not on a listener where every client proves itself with a certificate');

  // While banned, more failures restart the count but start no second ban.
  for (let i = 0; i < 3; i++) assert.deepEqual(brute.onFailure('10.0.0.1', `x${i}`, clock.t + 3).filter((b) => b.kind === 'ip'), []);

  clock.t += 11_000;
  const second = brute.onFailure('10.0.0.1', 'd', clock.t).concat(brute.onFailure('10.0.0.1', 'e', clock.t), brute.onFailure('10.0.0.1', 'f', clock.t));
  assert.equal(second[0]?.expiresAt, clock.t + 20_000, 'the second ban lasts twice as long');
  clock.t += 21_000;
  for (let i = 0; i < 3; i++) brute.onFailure('10.0.0.1', `g${i}`, clock.t);
  clock.t += 41_000;
  const capped = [0, 1, 2].flatMap((i) => brute.onFailure('10.0.0.1', `h${i}`, clock.t));
  assert.equal(capped[0]?.expiresAt, clock.t + 35_000, 'capped at maxBanSeconds');
});

test('failures outside the window do not add up; successful logins are not counted either way', () => {
  const { clock, brute } = harness();
  brute.onFailure('10.0.0.2', 'a', clock.t);
  brute.onFailure('10.0.0.2', 'b', clock.t + 30_000);
  assert.deepEqual(brute.onFailure('10.0.0.2', 'c', clock.t + 60_001), [], 'the first failure left the window');
  assert.equal(brute.onFailure('10.0.0.2', 'd', clock.t + 60_002)[0]?.kind, 'ip');
});

test('failures for one user name from several addresses ban that user name, temporarily, without closing its live session; never a client id', () => {
  const { clock, bans, brute, kicked } = harness();
  brute.onFailure('10.0.0.11', 'victim', clock.t);
  brute.onFailure('10.0.0.12', 'victim', clock.t);
  const [ban] = brute.onFailure('10.0.0.13', 'victim', clock.t);
  assert.equal(ban?.kind, 'username');
  assert.equal(ban?.value, 'victim');
  assert.match(ban?.reason ?? '', /^3 authentication failures within 60s for this user name/);
  assert.equal(ban?.expiresAt, clock.t + 10_000, 'temporary');
  assert.deepEqual(kicked, [], 'the session that holds the credentials stays');
  assert.equal(bans.refusal(passwordClient('any-id', 'victim'))?.reason, 'banned (username)');
  assert.equal(bans.refusal(passwordClient('victim', 'someone-else')), null, 'the client id is not what was banned');
  clock.t += 10_000;
  assert.equal(bans.refusal(passwordClient('any-id', 'victim')), null, 'and it ends');
  // No user name given (a refused certificate): only the address counts.
  const h = harness();
  for (let i = 0; i < 5; i++) assert.ok(h.brute.onFailure(`10.1.0.${i}`, undefined, h.clock.t).every((b) => b.kind === 'ip'));
  assert.equal(h.bans.list().length, 0);
  assert.deepEqual(harness({ maxFailures: 0 }).brute.onFailure('10.0.0.1', 'x', 0), [], 'maxFailures 0: off');
});

test('automatic bans neither refuse nor close a certificate or PSK client; an operator ban on its client id or address does', () => {
  const { clock, bans, brute, kicked } = harness();
  // The attacker behind the device's NAT address fails under the device's user name and id.
  for (let i = 0; i < 3; i++) brute.onFailure('10.0.0.1', 'dev1', clock.t);
  assert.deepEqual(bans.list().map((b) => b.kind).sort(), ['ip', 'username']);
  assert.deepEqual(kicked, ['on-attacker-ip'], 'the anonymous session on that address goes, the certificate device stays');
  assert.equal(bans.refusal(CERT_DEVICE), null);
  assert.equal(bans.refusal(PSK_DEVICE), null);
  assert.equal(bans.matches(CERT_DEVICE), null);
  assert.equal(bans.refusal(passwordClient('p', 'x', '10.0.0.1'))?.reason, 'banned (ip)', 'a password client on the banned address is refused');
  // An automatic client-id ban (flapping of a password client) does not refuse the certificate holder of that id either.
  bans.add({ kind: 'clientId', value: 'dev1', reason: 'auto test', createdBy: 'auto:flapping', createdAt: clock.t, expiresAt: clock.t + 60_000 });
  assert.equal(bans.refusal(CERT_DEVICE), null);
  assert.equal(bans.refusal(passwordClient('dev1', 'bob'))?.reason, 'banned (clientId)');
  // Operators decide for everyone.
  bans.add({ kind: 'clientId', value: 'dev1', reason: 'decommissioned', createdBy: 'token:ops', createdAt: clock.t, expiresAt: null });
  assert.equal(bans.refusal(CERT_DEVICE)?.ban?.createdBy, 'token:ops');
  assert.equal(bans.refusal(PSK_DEVICE)?.ban?.createdBy, 'token:ops');
  const other = harness();
  other.bans.add({ kind: 'ip', value: '10.0.0.1', reason: 'abuse', createdBy: 'token:ops', createdAt: other.clock.t, expiresAt: null });
  assert.equal(other.bans.refusal(CERT_DEVICE)?.reason, 'banned (ip)');
});

test('the history of automatic bans survives a restart (a new BanList over the same store)', () => {
  const { clock, store, brute } = harness();
  for (let i = 0; i < 3; i++) brute.onFailure('10.0.0.3', `a${i}`, clock.t);
  clock.t += 11_000;
  const restarted = new BanList(store, { now: () => clock.t });
  const fresh = new BruteForceProtection(limitsSchema.parse({ authFailures: { maxFailures: 3, banSeconds: 10, maxBanSeconds: 35 } }).authFailures, { bans: restarted, disconnect: () => [], defer: (fn) => fn() });
  const bans = [0, 1, 2].flatMap((i) => fresh.onFailure('10.0.0.3', `b${i}`, clock.t));
  assert.equal(bans[0]?.expiresAt, clock.t + 20_000);
});

test('flapping: more than maxConnects in the window bans the id and closes its session; other ids are not affected', () => {
  const { clock, bans, flap, kicked } = harness();
  for (let i = 0; i < 3; i++) assert.equal(flap.onConnect('flappy', clock.t + i), null);
  assert.equal(flap.onConnect('steady', clock.t), null);
  const ban = flap.onConnect('flappy', clock.t + 3);
  assert.equal(ban?.createdBy, 'auto:flapping');
  assert.equal(ban?.expiresAt, clock.t + 3 + 30_000);
  assert.match(ban?.reason ?? '', /^flapping: 4 connects within 60s/);
  assert.deepEqual(kicked, ['flappy']);
  assert.equal(bans.list().length, 1);
  // Spread out beyond the window: no ban.
  for (let i = 0; i < 10; i++) assert.equal(flap.onConnect('slow', clock.t + i * 30_000), null);
});

test('flapping of a certificate client bans its fingerprint (which refuses it), not the client id others can use', () => {
  const { clock, bans, flap, kicked } = harness();
  const fp = CERT.fingerprint256.toLowerCase();
  for (let i = 0; i < 3; i++) assert.equal(flap.onConnect('dev1', clock.t + i, fp), null);
  const ban = flap.onConnect('dev1', clock.t + 3, fp);
  assert.deepEqual([ban?.kind, ban?.value, ban?.createdBy], ['certFingerprint', CERT.fingerprint256, 'auto:flapping']);
  assert.deepEqual(kicked, ['dev1']);
  assert.equal(bans.refusal(CERT_DEVICE)?.reason, 'banned (certFingerprint)', 'earned by the key holder: applies');
  assert.equal(bans.refusal(passwordClient('dev1', 'bob')), null, 'the client id is free for others');
  // A password client flapping under a certificate device's id: the id is banned, the device is neither closed nor refused.
  const h = harness();
  for (let i = 0; i < 4; i++) h.flap.onConnect('dev1', h.clock.t + i);
  assert.deepEqual(h.kicked, [], 'CERT_DEVICE holds dev1 in this harness and stays');
  assert.equal(h.bans.refusal(CERT_DEVICE), null);
  assert.equal(h.bans.refusal(passwordClient('dev1', 'bob'))?.reason, 'banned (clientId)');
});

test('the counters keep a bounded number of keys under a flood of made-up ones', () => {
  const c = new SlidingWindowCounter(60_000, 5, 1000);
  for (let i = 0; i < 50_000; i++) c.hit(`id-${i}`, 1000 + i);
  assert.ok(c.size <= 1000, `${c.size} keys`);
  // A key hit recently survives pruning of older ones.
  const w = new SlidingWindowCounter(60_000, 5, 10);
  w.hit('keep', 0);
  for (let i = 0; i < 9; i++) w.hit(`k${i}`, 1);
  w.hit('keep', 2);
  for (let i = 9; i < 12; i++) w.hit(`k${i}`, 3);
  assert.equal(w.hit('keep', 4), 3);
});
