import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CidrSet, cidrContains, formatCidr, formatIp, parseCidr, parseIp } from '../../src/security/limits/ip-cidr.js';
import { TokenBucket } from '../../src/security/limits/token-bucket.js';

function ip(text: string) {
  const parsed = parseIp(text);
  assert.notEqual(parsed, null, text);
  return parsed!;
}

test('IPv4 and IPv6 addresses parse to their canonical form', () => {
  const cases: Array<[string, string]> = [
    ['10.0.0.1', '10.0.0.1'],
    ['255.255.255.255', '255.255.255.255'],
    ['::1', '::1'],
    ['::', '::'],
    ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
    ['2001:db8:0:1:0:0:0:1', '2001:db8:0:1::1'],
    ['fe80::1%eth0', 'fe80::1'],
    ['1:0:0:2:0:0:0:3', '1:0:0:2::3'],
    ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'],
    // SECURITY: a mapped IPv4 address is the IPv4 address.
    ['::ffff:192.0.2.7', '192.0.2.7'],
    ['::FFFF:c000:0207', '192.0.2.7'],
  ];
  for (const [input, canonical] of cases) assert.equal(formatIp(ip(input)), canonical, input);
});

test('anything that is not an address is refused, not read loosely', () => {
  for (const bad of ['', '1.2.3', '1.2.3.4.5', '256.1.1.1', '01.2.3.4', '1.2.3.-4', 'a.b.c.d', ':::', '1::2::3', '1:2:3:4:5:6:7:8:9', '12345::', 'g::1', '1:2:3:4:5:6:7', '::ffff:1.2.3.256', 'localhost']) {
    assert.equal(parseIp(bad), null, bad);
  }
});

test('CIDR ranges match their members only, per family', () => {
  const r = parseCidr('10.1.2.3/8')!;
  assert.equal(formatCidr(r), '10.0.0.0/8', 'host bits are cleared');
  assert.equal(cidrContains(r, ip('10.255.0.1')), true);
  assert.equal(cidrContains(r, ip('11.0.0.1')), false);
  assert.equal(cidrContains(r, ip('::ffff:10.9.9.9')), true, 'a mapped address falls in an IPv4 range');
  const v6 = parseCidr('2001:db8::/32')!;
  assert.equal(cidrContains(v6, ip('2001:db8:ffff::1')), true);
  assert.equal(cidrContains(v6, ip('2001:db9::1')), false);
  assert.equal(cidrContains(v6, ip('10.0.0.1')), false);
  assert.equal(formatCidr(parseCidr('::ffff:10.0.0.0/104')!), '10.0.0.0/8');
  assert.equal(formatCidr(parseCidr('192.0.2.1')!), '192.0.2.1/32');
  assert.equal(cidrContains(parseCidr('0.0.0.0/0')!, ip('203.0.113.9')), true);
  for (const bad of ['10.0.0.0/33', '10.0.0.0/-1', '10.0.0.0/08', '::/129', '10.0.0.0/', 'x/8']) assert.equal(parseCidr(bad), null, bad);
});

test('a CidrSet finds the range holding an address', () => {
  const set = new CidrSet([parseCidr('192.168.0.0/16')!, parseCidr('fd00::/8')!]);
  assert.equal(set.size, 2);
  assert.equal(formatCidr(set.find(ip('192.168.4.4'))!), '192.168.0.0/16');
  assert.equal(formatCidr(set.find(ip('fd12::1'))!), 'fd00::/8');
  assert.equal(set.find(ip('8.8.8.8')), null);
});

test('a token bucket allows its burst, then its rate', () => {
  const b = new TokenBucket(10, 5, 0);
  for (let i = 0; i < 5; i++) assert.equal(b.take(0), true);
  assert.equal(b.take(0), false, 'the burst is spent');
  assert.equal(b.waitMs(0), 100, 'one token per 100 ms at 10/s');
  assert.equal(b.take(100), true);
  assert.equal(b.take(100), false);
  assert.equal(b.isFull(10_000), true, 'refills to its burst, not beyond');
  assert.equal(b.take(10_000, 6), false, 'never more than the burst at once');
  assert.equal(b.take(10_000, 5), true);
});
