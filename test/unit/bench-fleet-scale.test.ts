/**
 * The pure parts of `npm run bench -- --fleet` (issue 17): option parsing and its bounds,
 * the loopback source addresses devices connect from, percentiles, the time until a share
 * of the fleet was back, reading one value from a Prometheus scrape, and the ratio that
 * must not exist when either side is invalid. No broker, no socket, nothing timed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEVICES_PER_ADDRESS, FLEET_DEFAULTS, parseFleetOptions, promSamples, promValue, quantile, sourceAddress, tcpExt, timeToShare } from '../../bench/fleet-scale-options.js';
import { ratioOf } from '../../bench/fleet-scale-report.js';

test('--fleet defaults: 50,000 held, 20,000 in the storm, both scenarios, both brokers', () => {
  const o = parseFleetOptions(['--fleet']);
  assert.ok(typeof o !== 'string');
  assert.equal(o.devices, 50_000);
  assert.equal(o.stormDevices, 20_000);
  assert.deepEqual(o.scenarios, ['hold', 'storm']);
  assert.deepEqual(o.brokers, ['bastion', 'mosquitto']);
  assert.equal(o.holdSeconds, FLEET_DEFAULTS.holdSeconds);
  assert.equal(o.jsonPath, null);
});

test('--fleet options are read and bounded; a bad one is a readable line', () => {
  const o = parseFleetOptions(['--fleet', '--devices', '2000', '--storm-devices', '1000', '--only', 'storm', '--broker', 'bastion', '--json', '/tmp/x.json']);
  assert.ok(typeof o !== 'string');
  assert.equal(o.devices, 2000);
  assert.equal(o.stormDevices, 1000);
  assert.deepEqual(o.scenarios, ['storm']);
  assert.deepEqual(o.brokers, ['bastion']);
  assert.equal(o.jsonPath, '/tmp/x.json');
  assert.match(String(parseFleetOptions(['--devices', '5'])), /--devices must be a number from 10/);
  assert.match(String(parseFleetOptions(['--hold-seconds', '3'])), /--hold-seconds must be a number from 10/);
  assert.match(String(parseFleetOptions(['--only', 'latency'])), /--only must be hold, storm/);
  assert.match(String(parseFleetOptions(['--broker', 'emqx'])), /--broker must be/);
  assert.match(String(parseFleetOptions(['--duration', '3'])), /--fleet: .*duration/);
});

test('devices spread over 127.10.x.y, at most DEVICES_PER_ADDRESS each, never .0 or .255', () => {
  const counts = new Map<string, number>();
  for (let i = 0; i < 200_000; i++) {
    const a = sourceAddress(i);
    counts.set(a, (counts.get(a) ?? 0) + 1);
  }
  assert.equal(counts.size, 200_000 / DEVICES_PER_ADDRESS);
  for (const [a, n] of counts) {
    assert.ok(n <= DEVICES_PER_ADDRESS, `${a} has ${n}`);
    const parts = a.split('.').map(Number);
    assert.equal(parts[0], 127);
    assert.equal(parts[1], 10);
    assert.ok(parts[3]! >= 1 && parts[3]! <= 250, a);
  }
  assert.equal(sourceAddress(0), '127.10.0.1');
  assert.equal(sourceAddress(DEVICES_PER_ADDRESS), '127.10.0.2');
});

test('quantile is the nearest rank of sorted values', () => {
  const v = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.equal(quantile(v, 0.5), 50);
  assert.equal(quantile(v, 0.99), 99);
  assert.equal(quantile(v, 1), 100);
  assert.equal(quantile([7], 0.99), 7);
  assert.equal(quantile([], 0.5), null);
});

test('time to 99% of the fleet counts from t0 and needs that share back', () => {
  // 100 devices, back at t0 + 1…100 ms, in any order.
  const back = Array.from({ length: 100 }, (_, i) => 1000 + (100 - i));
  assert.equal(timeToShare(back, 100, 0.99, 1000), 99);
  assert.equal(timeToShare(back, 100, 1, 1000), 100);
  // 98 of 100 back: 99% was never reached, 98% was.
  assert.equal(timeToShare(back.slice(0, 98), 100, 0.99, 1000), null);
  assert.equal(timeToShare(back.slice(0, 98), 100, 0.98, 1000), 100);
  // 99% of 1,001 devices is 991 of them (rounded up), not 990.
  const many = Array.from({ length: 990 }, () => 1010);
  assert.equal(timeToShare(many, 1001, 0.99, 1000), null);
});

test('promValue reads one unlabelled sample, not a longer name sharing its prefix', () => {
  const text = ['# HELP nodejs_eventloop_lag_p99_seconds The 99th percentile', '# TYPE nodejs_eventloop_lag_p99_seconds gauge', 'nodejs_eventloop_lag_p99_seconds_total 9', 'nodejs_eventloop_lag_p99_seconds 0.012582911', ''].join('\n');
  assert.equal(promValue(text, 'nodejs_eventloop_lag_p99_seconds'), 0.012582911);
  assert.equal(promValue(text, 'nodejs_eventloop_lag_p50_seconds'), null);
});

test('no ratio when either side is invalid or missing', () => {
  assert.equal(ratioOf({ value: 2, invalid: null }, { value: 4, invalid: null }), 0.5);
  assert.equal(ratioOf({ value: 2, invalid: '3 devices never came back' }, { value: 4, invalid: null }), null);
  assert.equal(ratioOf({ value: 2, invalid: null }, undefined), null);
  assert.equal(ratioOf({ value: 2, invalid: null }, { value: 0, invalid: null }), null);
});

test('tcpExt reads /proc/net/netstat counters by name; promSamples keeps non-zero labelled samples', () => {
  const netstat = 'TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 7 107446 107446\nIpExt: InNoRoutes\nIpExt: 0\n';
  assert.deepEqual(tcpExt(netstat), { SyncookiesSent: 7, ListenOverflows: 107446, ListenDrops: 107446 });
  assert.deepEqual(tcpExt(''), {});
  const scrape = ['# TYPE bastion_tls_handshakes_total counter', 'bastion_tls_handshakes_total{kind="resumed"} 5000', 'bastion_tls_handshakes_total{kind="full"} 0', 'bastion_limit_hits_total{limit="x"} 2', 'other_total 3'].join('\n');
  assert.deepEqual(promSamples(scrape, ['bastion_tls_handshakes_total', 'bastion_limit_hits_total']), ['bastion_tls_handshakes_total{kind="resumed"} 5000', 'bastion_limit_hits_total{limit="x"} 2']);
});
