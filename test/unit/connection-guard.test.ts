/**
 * The connection guard with a fake clock: the order of its checks, the per-address token
 * bucket (refill, burst, refused attempts cost nothing), the counts and their release, the
 * address lists (IPv4, IPv6, IPv4-mapped), and the bound on remembered addresses.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { limitsSchema, type LimitsConfig } from '../../src/core/limits-config.js';
import { BastionError } from '../../src/core/errors.js';
import { ConnectionGuard, validateAddressLists, type AdmitVerdict, type Admitted } from '../../src/security/limits/connection-guard.js';
import type { ClientAddress } from '../../src/security/limits/address-match.js';

function limits(over: Record<string, unknown> = {}, connections: Record<string, unknown> = {}): LimitsConfig {
  return limitsSchema.parse({ ...over, connections });
}

function admitted(v: AdmitVerdict): Admitted {
  assert.equal(v.ok, true, v.ok ? '' : `refused: ${v.limit} ${v.reason}`);
  return v as Admitted;
}

function refusedWith(v: AdmitVerdict, limit: string): void {
  assert.equal(v.ok, false, `expected a refusal by ${limit}`);
  if (!v.ok) assert.equal(v.limit, limit, v.reason);
}

test('per-address rate: the burst passes, the next is refused, tokens refill with time', () => {
  const guard = new ConnectionGuard(limits({}, { perIpRate: { perSecond: 2, burst: 3 } }));
  const t0 = 1_000_000;
  for (let i = 0; i < 3; i++) admitted(guard.admit('10.0.0.1', 'l', undefined, t0)).release();
  refusedWith(guard.admit('10.0.0.1', 'l', undefined, t0), 'ip-rate');
  // Another address has its own bucket.
  admitted(guard.admit('10.0.0.2', 'l', undefined, t0));
  // 2/s: one token after 500 ms, not before.
  refusedWith(guard.admit('10.0.0.1', 'l', undefined, t0 + 499), 'ip-rate');
  admitted(guard.admit('10.0.0.1', 'l', undefined, t0 + 500));
  refusedWith(guard.admit('10.0.0.1', 'l', undefined, t0 + 500), 'ip-rate');
  // Idle long enough: the full burst again, never more.
  for (let i = 0; i < 3; i++) admitted(guard.admit('10.0.0.1', 'l', undefined, t0 + 60_000));
  refusedWith(guard.admit('10.0.0.1', 'l', undefined, t0 + 60_000), 'ip-rate');
});

test('a refused attempt costs no token: hammering while refused does not prolong the refusal', () => {
  const guard = new ConnectionGuard(limits({}, { perIpMax: 1, perIpRate: { perSecond: 1, burst: 2 } }));
  const t0 = 5_000;
  const first = admitted(guard.admit('10.0.0.1', 'l', undefined, t0));
  // Refused by perIpMax a thousand times: the bucket (1 token left) is untouched.
  for (let i = 0; i < 1000; i++) refusedWith(guard.admit('10.0.0.1', 'l', undefined, t0), 'ip-concurrent');
  first.release();
  admitted(guard.admit('10.0.0.1', 'l', undefined, t0)).release();
  // Refused by the rate itself a thousand times: one second later exactly one token is there.
  for (let i = 0; i < 1000; i++) refusedWith(guard.admit('10.0.0.1', 'l', undefined, t0 + 10), 'ip-rate');
  admitted(guard.admit('10.0.0.1', 'l', undefined, t0 + 1000));
});

test('counts: perIpMax, listener maxConnections and maxTotal, each released exactly once', () => {
  const guard = new ConnectionGuard(limits({}, { maxTotal: 4, perIpMax: 2, perIpRate: { perSecond: 0, burst: 1 } }));
  const now = 1;
  const a1 = admitted(guard.admit('10.0.0.1', 'a', 3, now));
  const a2 = admitted(guard.admit('10.0.0.1', 'a', 3, now));
  refusedWith(guard.admit('10.0.0.1', 'a', 3, now), 'ip-concurrent');
  const b1 = admitted(guard.admit('10.0.0.2', 'a', 3, now));
  refusedWith(guard.admit('10.0.0.3', 'a', 3, now), 'connections-listener');
  // Another listener is not at its cap; the broker total (4) is reached after it.
  const c1 = admitted(guard.admit('10.0.0.3', 'b', undefined, now));
  assert.equal(guard.openConnections, 4);
  refusedWith(guard.admit('10.0.0.4', 'b', undefined, now), 'connections-total');
  // A double release gives back one slot, not two.
  a1.release();
  a1.release();
  assert.equal(guard.openConnections, 3);
  assert.equal(guard.openOn('a'), 2);
  admitted(guard.admit('10.0.0.4', 'b', undefined, now));
  refusedWith(guard.admit('10.0.0.5', 'b', undefined, now), 'connections-total');
  for (const s of [a2, b1, c1]) s.release();
  assert.equal(guard.openConnections, 1);
  assert.equal(guard.openOn('a'), 0);
});

test('deny beats allow; CIDR ranges for IPv4 and IPv6; a mapped IPv4 address is the IPv4 address', () => {
  const guard = new ConnectionGuard(limits({ ipAllow: ['10.0.0.0/8', '2001:db8::/32'], ipDeny: ['10.9.0.0/16', '2001:db8:bad::/48'] }));
  const now = 1;
  admitted(guard.admit('10.1.2.3', 'l', undefined, now));
  admitted(guard.admit('::ffff:10.1.2.3', 'l', undefined, now));
  refusedWith(guard.admit('10.9.1.1', 'l', undefined, now), 'ip-deny');
  refusedWith(guard.admit('::ffff:10.9.1.1', 'l', undefined, now), 'ip-deny');
  refusedWith(guard.admit('192.168.1.1', 'l', undefined, now), 'ip-not-allowed');
  admitted(guard.admit('2001:db8:1::5', 'l', undefined, now));
  refusedWith(guard.admit('2001:DB8:BAD::1', 'l', undefined, now), 'ip-deny');
  refusedWith(guard.admit('2001:db9::1', 'l', undefined, now), 'ip-not-allowed');
  // No readable address: not served.
  refusedWith(guard.admit('', 'l', undefined, now), 'ip-not-allowed');
  refusedWith(guard.admit('unknown', 'l', undefined, now), 'ip-not-allowed');
});

test('the per-address state is keyed by the canonical address (mapped and plain IPv4 share one bucket)', () => {
  const guard = new ConnectionGuard(limits({}, { perIpMax: 2, perIpRate: { perSecond: 1, burst: 10 } }));
  const a = admitted(guard.admit('::ffff:192.0.2.7', 'l', undefined, 1));
  assert.equal(a.address, '192.0.2.7');
  admitted(guard.admit('192.0.2.7', 'l', undefined, 1));
  refusedWith(guard.admit('::FFFF:c000:0207', 'l', undefined, 1), 'ip-concurrent');
  // IPv6 in different spellings is one address too.
  admitted(guard.admit('2001:DB8:0:0:0:0:0:1', 'l', undefined, 1));
  admitted(guard.admit('2001:db8::1', 'l', undefined, 1));
  refusedWith(guard.admit('2001:db8:0::1', 'l', undefined, 1), 'ip-concurrent');
  assert.equal(guard.trackedAddresses, 2);
});

test('the address check (bans) is asked with the parsed canonical address, after the deny list, and holds with limits off', () => {
  const asked: string[] = [];
  const addressCheck = (addr: ClientAddress): { reason: string } | null => {
    // The guard's own parse is handed over (one parse per accept): IPv4 as a number.
    assert.equal(addr.family, 4);
    asked.push(addr.text);
    return addr.text === '10.0.0.66' ? { reason: 'banned (ip 10.0.0.66)' } : null;
  };
  const guard = new ConnectionGuard(limits({ ipDeny: ['10.0.0.99'] }), { addressCheck });
  const v = guard.admit('::ffff:10.0.0.66', 'l', undefined, 1);
  refusedWith(v, 'banned');
  assert.equal(!v.ok && v.reason, 'banned (ip 10.0.0.66)');
  refusedWith(guard.admit('10.0.0.99', 'l', undefined, 1), 'ip-deny');
  assert.deepEqual(asked, ['10.0.0.66']);

  // A ban list that throws fails closed.
  const broken = new ConnectionGuard(limits(), {
    addressCheck: () => {
      throw new Error('store gone');
    },
  });
  const b = broken.admit('10.0.0.1', 'l', undefined, 1);
  refusedWith(b, 'banned');
  assert.match(!b.ok ? b.reason : '', /ban check failed: store gone/);

  const off = new ConnectionGuard(limits({ enabled: false, ipDeny: ['10.0.0.99'] }, { maxTotal: 1, perIpRate: { perSecond: 1, burst: 1 } }), { addressCheck });
  refusedWith(off.admit('10.0.0.66', 'l', undefined, 1), 'banned');
  // limits.enabled false: no counts, no rate, no address lists.
  for (let i = 0; i < 100; i++) admitted(off.admit('10.0.0.99', 'l', 1, 1));
  assert.equal(off.openConnections, 0);
  assert.equal(off.trackedAddresses, 0);
});

test('memory stays bounded under a flood from many addresses; full buckets are dropped at release', () => {
  const maxIdle = 1000;
  const guard = new ConnectionGuard(limits({}, { perIpRate: { perSecond: 10, burst: 20 } }), { maxIdleAddresses: maxIdle });
  let now = 1_000;
  // 50,000 distinct addresses, one short connection each, all within the same millisecond:
  // no bucket refills, so nothing can be dropped for free and the bound must hold anyway.
  for (let i = 0; i < 50_000; i++) {
    const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    admitted(guard.admit(ip, 'l', undefined, now)).release();
    assert.ok(guard.trackedAddresses <= maxIdle, `tracked ${guard.trackedAddresses} at ${i}`);
  }
  // Addresses with open connections are never forgotten, however many there are.
  const open: Admitted[] = [];
  for (let i = 0; i < 2 * maxIdle; i++) open.push(admitted(guard.admit(`fd00::${i.toString(16)}`, 'l', undefined, now)));
  assert.ok(guard.trackedAddresses >= 2 * maxIdle);
  // Once a bucket has refilled (judged at the latest admission), the close of the last
  // connection drops its entry at once.
  now += 10_000;
  admitted(guard.admit('10.255.255.255', 'l', undefined, now));
  for (const a of open) a.release();
  assert.ok(guard.trackedAddresses <= maxIdle + 1, `tracked ${guard.trackedAddresses} after release`);
  const fresh = new ConnectionGuard(limits({}, { perIpRate: { perSecond: 10, burst: 20 } }));
  const one = admitted(fresh.admit('10.0.0.1', 'l', undefined, now));
  // Not refilled yet at the latest admission time: kept (its bucket still remembers).
  one.release();
  assert.equal(fresh.trackedAddresses, 1);
  const again = admitted(fresh.admit('10.0.0.1', 'l', undefined, now));
  admitted(fresh.admit('10.0.0.2', 'l', undefined, now + 200)).release();
  again.release();
  assert.equal(fresh.trackedAddresses, 1, 'the refilled 10.0.0.1 is dropped; 10.0.0.2 still refilling');
});

test('a bad range in ipDeny or ipAllow is a config error naming the entry', () => {
  for (const [key, list, at] of [
    ['ipDeny', ['10.0.0.0/8', '10.0.0.0/33'], 'limits.ipDeny[1]'],
    ['ipAllow', ['not-an-address'], 'limits.ipAllow[0]'],
    ['ipDeny', ['2001:db8::/129'], 'limits.ipDeny[0]'],
    ['ipDeny', ['010.0.0.1'], 'limits.ipDeny[0]'],
  ] as const) {
    const cfg = limits({ [key]: list });
    assert.throws(
      () => validateAddressLists(cfg),
      (err: unknown) => err instanceof BastionError && err.code === 'ERR_CONFIG' && err.message.startsWith(`config error at ${at}: `),
    );
    assert.throws(() => new ConnectionGuard(cfg), /config error at/);
  }
});

test('a NAT gateway in connections.gateways gets its own per-address limits; its neighbours keep the defaults', () => {
  const guard = new ConnectionGuard(
    limits(
      {},
      {
        perIpMax: 2,
        perIpRate: { perSecond: 1, burst: 2 },
        gateways: [
          { ranges: ['203.0.113.0/24'], perIpMax: 5000, perIpRate: { perSecond: 200, burst: 5000 } },
          // The most specific range wins: this one address is held tighter than its /24.
          { ranges: ['203.0.113.9'], perIpMax: 3, perIpRate: { perSecond: 1, burst: 3 } },
        ],
      },
    ),
  );
  const t0 = 10_000;
  // A whole site of 5,000 devices behind one address reconnects at once: all admitted.
  const site = Array.from({ length: 5000 }, () => admitted(guard.admit('203.0.113.7', 'l', undefined, t0)));
  const over = guard.admit('203.0.113.7', 'l', undefined, t0);
  refusedWith(over, 'ip-concurrent');
  if (!over.ok) assert.match(over.reason, /limits\.connections\.gateways\[0\]\.perIpMax 5000/);
  site[0]!.release();
  refusedWith(guard.admit('203.0.113.7', 'l', undefined, t0), 'ip-rate');
  admitted(guard.admit('203.0.113.7', 'l', undefined, t0 + 5));
  // The more specific entry, and an address outside every range: the defaults' pace.
  for (let i = 0; i < 3; i++) admitted(guard.admit('203.0.113.9', 'l', undefined, t0));
  refusedWith(guard.admit('203.0.113.9', 'l', undefined, t0), 'ip-concurrent');
  admitted(guard.admit('198.51.100.1', 'l', undefined, t0));
  admitted(guard.admit('198.51.100.1', 'l', undefined, t0));
  const third = guard.admit('198.51.100.1', 'l', undefined, t0);
  refusedWith(third, 'ip-concurrent');
  if (!third.ok) assert.match(third.reason, /limits\.connections\.perIpMax 2/);
});

test('a bad range in connections.gateways fails the start with one line naming it', () => {
  assert.throws(
    () => validateAddressLists(limits({}, { gateways: [{ ranges: ['10.0.0.0/8', 'not-an-address'], perIpMax: 10, perIpRate: { perSecond: 1, burst: 1 } }] })),
    (e: unknown) => e instanceof BastionError && /limits\.connections\.gateways\[0\]\.ranges\[1\]: "not-an-address"/.test(e.message),
  );
});
