/**
 * The ban list over an in-memory store with a fake clock: canonical values for every kind
 * (and the strict refusals), deny matching by kind including IPv4/IPv6 ranges and mapped
 * addresses, allow-list semantics (per dimension, deny beats allow, fail closed), the
 * address check used at accept, expiry (swept, announced, pruned) and the events.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AuthorizedClient } from '../../src/broker/ports.js';
import { SecurityEvents, type SecurityEvent } from '../../src/core/security-events.js';
import { parseClientAddress, RangeIndex } from '../../src/security/limits/address-match.js';
import { BanList, banApplies, canonicalBanValue, type BanFields } from '../../src/security/limits/ban-list.js';
import { cidrContains, formatCidr, formatIp, parseCidr, parseIp, type CidrRange } from '../../src/security/limits/ip-cidr.js';
import { MemoryBanStore } from '../helpers/ban-store.js';
import { prng } from '../helpers/prng.js';

const FP = 'ab'.repeat(32);
const FP_CANON = 'AB:'.repeat(31) + 'AB';

function client(over: { clientId?: string; username?: string; ip?: string; serial?: string; fingerprint?: string } = {}): AuthorizedClient {
  const withCert = over.serial !== undefined || over.fingerprint !== undefined;
  return {
    clientId: over.clientId ?? 'dev-1',
    principal: 'dev-1',
    identity: {
      principal: 'dev-1',
      method: withCert ? 'certificate' : 'password',
      ...(over.username !== undefined ? { username: over.username } : {}),
      remoteAddress: over.ip ?? '192.0.2.10',
      listener: 'l',
      ...(withCert
        ? { certificate: { commonName: 'dev-1', serialNumber: over.serial ?? '01', fingerprint256: over.fingerprint ?? '', issuer: '', subject: '', organizationalUnits: [], sans: { dns: [], uri: [], ip: [], email: [] } } }
        : {}),
    },
  };
}

function setup(now = { t: 1_000_000 }) {
  const store = new MemoryBanStore();
  const events = new SecurityEvents(null, () => now.t);
  const seen: SecurityEvent[] = [];
  events.on((e) => seen.push(e));
  const bans = new BanList(store, { now: () => now.t, events });
  const add = (kind: BanFields['kind'], value: string, over: Partial<BanFields> = {}) => bans.add({ kind, value, reason: 'r', createdBy: 'token:op', createdAt: now.t, expiresAt: null, ...over });
  return { store, bans, add, seen, now };
}

test('values are canonicalised once, any spelling of one value is one entry', () => {
  const ok = (kind: Parameters<typeof canonicalBanValue>[0], raw: string) => {
    const c = canonicalBanValue(kind, raw);
    assert.ok(c.ok, `${kind} ${raw}: ${c.ok ? '' : c.error}`);
    return c.value;
  };
  assert.equal(ok('certFingerprint', FP), FP_CANON);
  assert.equal(ok('certFingerprint', FP_CANON.toLowerCase()), FP_CANON);
  assert.equal(ok('certSerial', '00:0a:1B'), 'A1B');
  assert.equal(ok('ip', '::ffff:10.0.0.1'), '10.0.0.1');
  assert.equal(ok('ip', '2001:DB8:0:0::1'), '2001:db8::1');
  assert.equal(ok('cidr', '2001:DB8::/32'), '2001:db8::/32');
  assert.equal(ok('cidr', '::ffff:10.0.0.0/104'), '10.0.0.0/8');
  assert.equal(ok('clientId', ' spaced id '), ' spaced id ', 'client ids are taken exactly');
});

test('values that could never match are refused with the reason', () => {
  const err = (kind: Parameters<typeof canonicalBanValue>[0], raw: string) => {
    const c = canonicalBanValue(kind, raw);
    assert.equal(c.ok, false, `${kind} ${raw} should be refused`);
    return c.ok ? '' : c.error;
  };
  assert.match(err('certFingerprint', FP.slice(2)), /SHA-256/);
  assert.match(err('certFingerprint', 'ab:cd'), /SHA-256/);
  assert.match(err('certFingerprint', `${FP.slice(0, 62)}zz`), /SHA-256/);
  assert.match(err('ip', '10.0.0.300'), /not an IPv4 or IPv6/);
  assert.match(err('ip', '10.0.0.0/8'), /use kind cidr/);
  assert.match(err('cidr', '10.0.0.1'), /no prefix length/);
  assert.match(err('cidr', '10.1.2.3/8'), /host bits set.*10\.0\.0\.0\/8/);
  assert.match(err('cidr', '10.0.0.0/33'), /not an IPv4 or IPv6 range/);
  assert.match(err('cidr', '2001:db8::1/32'), /host bits/);
  assert.match(err('certSerial', 'xyz'), /hex/);
  assert.match(err('clientId', ''), /empty/);
  const { bans } = setup();
  assert.throws(() => bans.add({ kind: 'ip', value: 'nope', reason: '', createdBy: 't', createdAt: 0, expiresAt: null }), { code: 'ERR_BAN_VALUE' });
});

test('deny entries match by every kind; ranges in IPv4 and IPv6; a mapped address is its IPv4 address', () => {
  const { bans, add } = setup();
  add('clientId', 'bad-id');
  add('username', 'mallory');
  add('certSerial', '0a:1b');
  add('certFingerprint', FP);
  add('ip', '::ffff:198.51.100.7');
  add('cidr', '203.0.113.0/24');
  add('cidr', '2001:db8:bad::/48');
  assert.equal(bans.refusal(client({ clientId: 'bad-id' }))?.ban?.kind, 'clientId');
  assert.equal(bans.refusal(client({ username: 'mallory' }))?.ban?.kind, 'username');
  assert.equal(bans.refusal(client({ serial: 'A1B' }))?.ban?.kind, 'certSerial');
  assert.equal(bans.refusal(client({ serial: 'FF', fingerprint: FP_CANON }))?.ban?.kind, 'certFingerprint');
  assert.equal(bans.refusal(client({ ip: '198.51.100.7' }))?.ban?.kind, 'ip');
  assert.equal(bans.refusal(client({ ip: '::ffff:203.0.113.99' }))?.ban?.value, '203.0.113.0/24');
  assert.equal(bans.refusal(client({ ip: '2001:db8:bad:1::5' }))?.ban?.value, '2001:db8:bad::/48');
  assert.equal(bans.refusal(client({ ip: '2001:db8:bae::5' })), null);
  assert.equal(bans.refusal(client({ ip: '203.0.114.1', username: 'alice', serial: 'A1C', fingerprint: 'CD:'.repeat(31) + 'CD' })), null);
  // The admission guard answers 0x8A Banned naming the kind.
  assert.deepEqual(bans.admissionGuard()(client({ clientId: 'bad-id' })), { reasonCode: 0x8a, reason: 'banned (clientId)' });
  // banApplies (used to sweep live sessions) agrees for ranges.
  const range = bans.list({ kind: 'cidr' })[0]!;
  assert.equal(banApplies(range, client({ ip: '203.0.113.1' })), true);
  assert.equal(banApplies(range, client({ ip: '203.0.112.1' })), false);
});

test('address check at accept: ip and cidr only, deny beats allow', () => {
  const { bans, add } = setup();
  add('clientId', 'x');
  assert.equal(bans.addressRefusal('10.0.0.1'), null, 'a client-id ban is not an address matter');
  add('cidr', '10.0.0.0/8', { list: 'allow' });
  add('ip', '192.168.1.5', { list: 'allow' });
  assert.equal(bans.addressRefusal('10.200.0.1'), null);
  assert.equal(bans.addressRefusal('192.168.1.5'), null, 'ip and cidr allow entries are one address list');
  assert.deepEqual(bans.addressRefusal('192.168.1.6'), { reason: 'address not on the allow list', ban: null });
  assert.notEqual(bans.addressRefusal('not-an-address'), null, 'an unreadable address is not on the allow list (fail closed)');
  add('ip', '10.0.0.66');
  assert.equal(bans.addressRefusal('::ffff:10.0.0.66')?.ban?.kind, 'ip', 'deny beats allow');
  assert.equal(bans.addressRefusal('10.0.0.66', true)?.ban?.kind, 'ip', "an operator's address ban holds where certificates are required too");
});

test('allow lists constrain only their own dimension; a client lacking the fact is refused', () => {
  const { bans, add } = setup();
  add('certFingerprint', FP, { list: 'allow' });
  assert.equal(bans.refusal(client({ serial: '01', fingerprint: FP_CANON })), null);
  assert.equal(bans.refusal(client({ username: 'alice' }))?.reason, 'certificate not on the allow list', 'no certificate: refused');
  add('certSerial', '02', { list: 'allow' });
  assert.equal(bans.refusal(client({ serial: '02', fingerprint: 'CD:'.repeat(31) + 'CD' })), null, 'serial or fingerprint: one certificate list');
  add('clientId', 'dev-1', { list: 'allow' });
  assert.equal(bans.refusal(client({ clientId: 'dev-2', serial: '02' }))?.reason, 'client id not on the allow list');
  add('clientId', 'dev-1');
  assert.equal(bans.refusal(client({ serial: '02' }))?.reason, 'banned (clientId)', 'deny beats allow');
  assert.equal(bans.matches(client({ serial: '03' }))?.kind, 'clientId', 'matches() reports deny entries only');
});

test('expiry: an ended entry stops matching, is announced once as removed by expiry, and is pruned', () => {
  const { bans, add, seen, store, now } = setup();
  add('ip', '10.0.0.1', { expiresAt: now.t + 5_000 });
  add('clientId', 'auto-one', { createdBy: 'auto:flapping', expiresAt: now.t + 5_000 });
  const perm = add('username', 'u');
  assert.deepEqual(seen.map((e) => e.type === 'ban.added' && [e.kind, e.list, e.auto]), [['ip', 'deny', false], ['clientId', 'deny', true], ['username', 'deny', false]]);
  assert.notEqual(bans.addressRefusal('10.0.0.1'), null);
  now.t += 5_000;
  assert.equal(bans.addressRefusal('10.0.0.1'), null, 'ends at expiresAt');
  assert.equal(bans.refusal(client({ clientId: 'auto-one' })), null);
  bans.sweep();
  const removed = seen.filter((e) => e.type === 'ban.removed');
  assert.deepEqual(removed.map((e) => e.type === 'ban.removed' && [e.kind, e.value, e.removedBy]), [['ip', '10.0.0.1', 'expiry'], ['clientId', 'auto-one', 'expiry']]);
  assert.deepEqual(store.rows.map((r) => r.value), ['auto-one', 'u'], 'the operator row is pruned; the automatic one stays as history');
  assert.equal(bans.autoBanCount('clientId', 'auto-one', 'auto:flapping'), 1);
  assert.deepEqual(bans.list().map((b) => b.id), [perm.id]);
  assert.equal(bans.remove(perm.id, 'token:op')?.value, 'u');
  assert.deepEqual(seen.at(-1), { type: 'ban.removed', kind: 'username', value: 'u', list: 'deny', removedBy: 'token:op' });
  assert.equal(bans.remove(perm.id), null);
});

test('list filters by list and kind', () => {
  const { bans, add } = setup();
  add('ip', '10.0.0.1');
  add('cidr', '10.0.0.0/8', { list: 'allow' });
  add('clientId', 'c', { list: 'allow' });
  assert.deepEqual(bans.list({ list: 'allow' }).map((b) => b.kind), ['cidr', 'clientId']);
  assert.deepEqual(bans.list({ list: 'allow', kind: 'cidr' }).map((b) => b.value), ['10.0.0.0/8']);
  assert.deepEqual(bans.list({ list: 'deny' }).map((b) => b.value), ['10.0.0.1']);
});

test('an entry that ended just before an operator removal is still announced as ended by expiry', () => {
  const { bans, add, seen, now } = setup();
  add('ip', '10.0.0.1', { expiresAt: now.t + 1_000 });
  const other = add('ip', '10.0.0.2');
  now.t += 2_000;
  bans.remove(other.id, 'token:op');
  assert.deepEqual(
    seen.filter((e) => e.type === 'ban.removed').map((e) => e.type === 'ban.removed' && [e.value, e.removedBy]),
    [['10.0.0.1', 'expiry'], ['10.0.0.2', 'token:op']],
  );
});

test('rows that ended while the broker was down are pruned at load, automatic history kept', () => {
  const now = { t: 1_000_000 };
  const store = new MemoryBanStore();
  store.addBan({ kind: 'ip', value: '10.0.0.1', list: 'deny', reason: '', createdBy: 'token:op', createdAt: 0, expiresAt: 500_000 });
  store.addBan({ kind: 'ip', value: '10.0.0.2', list: 'deny', reason: '', createdBy: 'auto:brute-force', createdAt: 0, expiresAt: 500_000 });
  const bans = new BanList(store, { now: () => now.t });
  assert.deepEqual(store.rows.map((r) => r.value), ['10.0.0.2']);
  assert.equal(bans.autoBanCount('ip', '10.0.0.2', 'auto:brute-force'), 1);
  assert.equal(bans.list().length, 0);
});

test('the fast address parser agrees with parseIp, and the range index with cidrContains (random cross-check)', () => {
  const rnd = prng(5);
  const int = (n: number) => Math.floor(rnd() * n);
  const samples = ['0.0.0.0', '255.255.255.255', '::ffff:10.0.0.1', '::FFFF:10.0.0.1', '010.0.0.1', '1.2.3', '1.2.3.4.5', '1..2.3', '256.1.1.1', ' 10.0.0.1', '::1', '2001:db8::1', 'fe80::1%eth0', '', 'x'];
  for (let i = 0; i < 300; i++) samples.push(`${int(256)}.${int(256)}.${int(256)}.${int(256)}`, `::ffff:${int(256)}.${int(256)}.${int(256)}.${int(256)}`);
  for (const text of samples) {
    const slow = parseIp(text);
    const fast = parseClientAddress(text);
    assert.equal(fast === null, slow === null, text);
    if (slow === null || fast === null) continue;
    assert.equal(fast.text, formatIp(slow), text);
    assert.equal(fast.family === 4 ? BigInt(fast.v4) : fast.v6, slow.value, text);
  }
  const ranges = Array.from({ length: 60 }, (_, i) =>
    i % 3 === 0 ? parseCidr(`2001:db8:${int(4).toString(16)}::/${36 + int(20)}`)! : parseCidr(`10.${int(4)}.${int(4)}.0/${8 + int(25)}`.replace(/\.0\/(\d+)$/, (_m, p: string) => `.0/${Math.min(Number(p), 24)}`))!,
  );
  const index = new RangeIndex<CidrRange>();
  for (const r of ranges) index.add(r, r);
  index.add(parseCidr('0.0.0.0/0')!, parseCidr('0.0.0.0/0')!);
  for (let i = 0; i < 2000; i++) {
    const text = i % 3 === 0 ? `2001:db8:${int(5).toString(16)}::${int(65536).toString(16)}` : `10.${int(5)}.${int(5)}.${int(256)}`;
    const addr = parseClientAddress(text)!;
    const ip = parseIp(text)!;
    const expected = ip.family === 4 || ranges.some((r) => cidrContains(r, ip));
    const found = index.find(addr);
    assert.equal(found !== null, expected, text);
    if (found !== null) assert.ok(cidrContains(found, ip), `${text} is not in ${formatCidr(found)}`);
  }
});

test('automatic-ban history: counted per key and creator, kept past the end, forgiven by an operator lift, forgotten after a day', () => {
  const { bans, add, now, store } = setup();
  const auto = (value: string) => add('ip', value, { createdBy: 'auto:brute-force', expiresAt: now.t + 1_000 });
  auto('10.0.0.1');
  now.t += 2_000;
  auto('10.0.0.1');
  const lifted = auto('10.0.0.2');
  add('ip', '10.0.0.1', { createdBy: 'auto:flapping', expiresAt: now.t + 1_000 });
  assert.equal(bans.autoBanCount('ip', '10.0.0.1', 'auto:brute-force'), 2, 'one ended, one in force');
  assert.equal(bans.autoBanCount('ip', '10.0.0.1', 'auto:flapping'), 1);
  bans.remove(lifted.id, 'token:op');
  assert.equal(bans.autoBanCount('ip', '10.0.0.2', 'auto:brute-force'), 0, 'an operator lift forgives');
  now.t += 24 * 3600_000 - 500;
  bans.sweep();
  assert.equal(bans.autoBanCount('ip', '10.0.0.1', 'auto:brute-force'), 1, 'the first is forgotten a day after its end');
  now.t += 2_000;
  bans.sweep();
  assert.equal(bans.autoBanCount('ip', '10.0.0.1', 'auto:brute-force'), 0);
  assert.deepEqual(store.rows, [], 'and pruned from the store');
});
