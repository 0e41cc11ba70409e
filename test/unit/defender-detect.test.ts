/**
 * Unit tests of the detection core (src/defender/detect): the window stats and their
 * bounds, each rule kind alarming on its pattern and clearing, the consecutive-datapoint
 * hysteresis and the cooldown, and the strict config schema. Seeded PRNG only.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ClientStats, topicKey, type Datapoint } from '../../src/defender/detect/client-stats.js';
import { DistinctSketch } from '../../src/defender/detect/distinct-sketch.js';
import { Evaluator, type AlarmChange } from '../../src/defender/detect/evaluator.js';
import { addressPrefix, type Rule } from '../../src/defender/detect/rules.js';
import { DEFAULT_RULES, parseDetectConfig } from '../../src/defender/detect/detect-config.js';
import { prng } from '../helpers/prng.js';

const W = 60_000;
const hyst = { consecutiveDatapointsToAlarm: 1, consecutiveDatapointsToClear: 1, cooldownSeconds: 0 };

/** Runs `windows` windows; `act(stats, w, t0)` feeds each window's events. */
function run(rules: Rule[], windows: number, act: (s: ClientStats, w: number, t0: number) => void, opts = {}): AlarmChange[] {
  const stats = new ClientStats(0, opts);
  const ev = new Evaluator(rules);
  const out: AlarmChange[] = [];
  for (let w = 0; w < windows; w++) {
    act(stats, w, w * W);
    out.push(...ev.evaluate(stats.closeWindow((w + 1) * W)));
  }
  return out;
}

const pub = (s: ClientStats, identity: string, topic: string, bytes: number, at: number): void => s.observe({ kind: 'publish', identity, topic, bytes, at });

test('stats: counts a window per identity and resets at close', () => {
  const s = new ClientStats(0);
  s.observe({ kind: 'connect', identity: 'd1', clientId: 'c1', remote: '10.0.0.5', at: 1000 });
  pub(s, 'd1', 'tele/d1/t', 100, 2000);
  pub(s, 'd1', 'tele/d1/h', 300, 3000);
  s.observe({ kind: 'deliver', identity: 'd1', topic: 'cmd/d1', bytes: 50, at: 4000 });
  s.observe({ kind: 'authz-denied', identity: 'd1', topic: 'x', at: 4000 });
  s.observe({ kind: 'subscribe', identity: 'd1', filter: '#', at: 4000 });
  s.observe({ kind: 'disconnect', identity: 'd1', at: 31_000 });
  const [dp] = s.closeWindow(W);
  assert.ok(dp);
  assert.deepEqual(
    { ...dp.metrics },
    {
      messagesSent: 2, bytesSent: 400, messagesReceived: 1, bytesReceived: 50, messageSizeMean: 200, messageSizeMax: 300,
      distinctTopics: 3, subscribes: 1, wildcardSubscribes: 1, authzDenials: 1, authFailures: 0, connects: 1, disconnects: 1,
      distinctAddresses: 1, concurrentSessionsMax: 1, sessionSecondsMin: 30,
    },
  );
  assert.deepEqual(dp.topicKeys, ['tele']);
  assert.deepEqual(s.closeWindow(2 * W), [], 'an idle, disconnected identity gives no datapoint');
});

test('stats: auth failures count per address; an unknown claimed identity creates nothing', () => {
  const s = new ClientStats(0);
  for (let i = 0; i < 12; i++) s.observe({ kind: 'auth-failure', remote: '198.51.100.7', identity: `user${i}`, at: i });
  const dps = s.closeWindow(W);
  assert.equal(s.size, 0);
  assert.equal(dps.length, 1);
  assert.equal(dps[0]!.role, '$address');
  assert.equal(dps[0]!.metrics.authFailures, 12);
});

test('stats: bounds on identities, addresses, topic keys and client ids hold and count overflow', () => {
  const s = new ClientStats(0, { maxIdentities: 10, maxAddresses: 5, maxTopicKeys: 4, maxAddressesPerIdentity: 2, maxClientIds: 2 });
  for (let i = 0; i < 50; i++) pub(s, `d${i}`, 't', 1, i);
  assert.equal(s.size, 10);
  for (let i = 0; i < 20; i++) s.observe({ kind: 'auth-failure', remote: `203.0.113.${i}`, at: i });
  for (let i = 0; i < 10; i++) pub(s, 'd0', `p${i}/x`, 1, i);
  for (let i = 0; i < 5; i++) s.observe({ kind: 'connect', identity: 'd0', clientId: `c${i}`, remote: `192.0.2.${i}`, at: i });
  assert.ok(s.overflow >= 40 + 15 + 6 + 3 + 3, `overflow ${s.overflow}`);
  const dps = s.closeWindow(W);
  const d0 = dps.find((d) => d.identity === 'd0')!;
  assert.equal(d0.topicKeys.length, 4);
  assert.equal(d0.addresses.length, 2);
  assert.equal(d0.clientIds.length, 2);
  assert.equal(dps.filter((d) => d.role === '$address').length, 5);
});

test('distinct sketch: exact for small sets, within 5% at 1,000, saturates without growing', () => {
  const sk = new DistinctSketch();
  for (let i = 0; i < 10; i++) sk.add(`tele/dev/${i}`);
  assert.equal(sk.estimate(), 10);
  sk.clear();
  for (let i = 0; i < 1000; i++) sk.add(`scan/${i}`);
  assert.ok(Math.abs(sk.estimate() - 1000) < 50, `estimate ${sk.estimate()}`);
  for (let i = 0; i < 100_000; i++) sk.add(`scan/${i}`);
  assert.ok(sk.estimate() > 5000);
});

test('topicKey and addressPrefix', () => {
  assert.equal(topicKey('a/b/c', 1), 'a');
  assert.equal(topicKey('a/b/c', 2), 'a/b');
  assert.equal(topicKey('a/b/c', 0), 'a/b/c');
  assert.equal(topicKey('a', 3), 'a');
  assert.equal(addressPrefix('192.0.2.77', 24, 48), '192.0.2.0/24');
  assert.equal(addressPrefix('::ffff:192.0.2.77', 24, 48), '192.0.2.0/24');
  assert.equal(addressPrefix('2001:db8:1:2::5', 24, 48), '2001:db8:1:0:0:0:0:0/48');
  assert.equal(addressPrefix('2001:db8:1:ffff::5', 24, 64), '2001:db8:1:ffff:0:0:0:0/64');
});

test('static rule: alarms on the attack window, clears after, honours consecutive datapoints', () => {
  const rule: Rule = { kind: 'static', name: 'denials', metric: 'authzDenials', operator: 'gt', value: 5, consecutiveDatapointsToAlarm: 2, consecutiveDatapointsToClear: 2, cooldownSeconds: 0 };
  const changes = run([rule], 12, (s, w, t0) => {
    pub(s, 'd1', 'tele/x', 10, t0);
    const denials = w === 2 || (w >= 5 && w <= 6) ? 20 : 0;
    for (let i = 0; i < denials; i++) s.observe({ kind: 'authz-denied', identity: 'd1', topic: `x/${i}`, at: t0 + i });
  });
  // Window 2 alone (one breach) does not alarm; windows 5-6 do; clear after 7 and 8.
  assert.deepEqual(changes.map((c) => [c.state, c.at / W, c.value]), [['ALARM', 7, 20], ['CLEAR', 9, 0]]);
});

test('cooldown: a second burst inside the cooldown is suppressed, one after it alarms', () => {
  const rule: Rule = { kind: 'static', name: 'reconnects', metric: 'connects', operator: 'gt', value: 5, consecutiveDatapointsToAlarm: 1, consecutiveDatapointsToClear: 1, cooldownSeconds: 300 };
  const stats = new ClientStats(0);
  const ev = new Evaluator([rule]);
  const out: AlarmChange[] = [];
  for (let w = 0; w < 14; w++) {
    const n = [1, 4, 9].includes(w) ? 10 : 1;
    for (let i = 0; i < n; i++) {
      stats.observe({ kind: 'connect', identity: 'd', clientId: 'd', remote: '10.0.0.1', at: w * W + i });
      stats.observe({ kind: 'disconnect', identity: 'd', at: w * W + i + 1 });
    }
    out.push(...ev.evaluate(stats.closeWindow((w + 1) * W)));
  }
  assert.deepEqual(out.map((c) => [c.state, c.at / W]), [['ALARM', 2], ['CLEAR', 3], ['ALARM', 10], ['CLEAR', 11]]);
  assert.equal(ev.suppressed, 1, 'the burst of window 4 fell in the cooldown');
});

test('percentile rule: one device far above its role p99 alarms; other roles are compared apart', () => {
  const rule: Rule = { kind: 'percentile', name: 'topics', metric: 'distinctTopics', percentile: 99, factor: 3, minValue: 20, minPopulation: 20, ...hyst };
  const rand = prng(7);
  const changes = run([rule], 6, (s, w, t0) => {
    for (let d = 0; d < 200; d++) for (let i = 0; i < 3; i++) pub(s, `d${d}`, `tele/d${d}/${Math.floor(rand() * 4)}`, 10, t0);
    // A gateway role legitimately publishes for 50 sub-devices: not an outlier of its own role.
    for (let g = 0; g < 25; g++) {
      s.observe({ kind: 'connect', identity: `gw${g}`, role: 'gateway', clientId: `gw${g}`, remote: '10.1.0.1', at: t0 });
      for (let i = 0; i < 50; i++) pub(s, `gw${g}`, `gw/${g}/${i}`, 10, t0);
      s.observe({ kind: 'disconnect', identity: `gw${g}`, at: t0 + 1 });
    }
    if (w === 3) for (let i = 0; i < 200; i++) pub(s, 'd17', `tele/scan/${i}`, 10, t0 + i);
  });
  assert.deepEqual(changes.map((c) => [c.identity, c.state, c.at / W]), [['d17', 'ALARM', 4], ['d17', 'CLEAR', 5]]);
  assert.ok(changes[0]!.value > 150 && changes[0]!.threshold >= 20);
});

test('baseline rule: silent through warm-up and normal noise, alarms on a 5x burst, clears', () => {
  const rule: Rule = { kind: 'baseline', name: 'rate', metric: 'messagesSent', alpha: 0.05, k: 6, warmup: 30, minSigma: 1, minRatio: 3, minValue: 10, span: 1, ...hyst };
  const rand = prng(11);
  const changes = run([rule], 120, (s, w, t0) => {
    const base = 12 + Math.round((rand() - 0.5) * 6);
    const n = w >= 100 && w < 103 ? base * 5 : base;
    for (let i = 0; i < n; i++) pub(s, 'd1', 'tele/d1', 50, t0 + i);
  });
  assert.deepEqual(changes.map((c) => [c.state, c.at / W]), [['ALARM', 101], ['CLEAR', 104]]);
});

test('baseline rule with span 2: judges the sum of this and the previous datapoint', () => {
  const rule: Rule = { kind: 'baseline', name: 'rate', metric: 'messagesSent', alpha: 0.05, k: 6, warmup: 10, minSigma: 1, minRatio: 1, minValue: 10, span: 2, ...hyst };
  // 4 a window (σ floored at 1): span 1 alarms above 4 + 6 = 10, span 2 above 8 + 6 = 14.
  // Two windows of 9 stay under 10 each, but sum to 18: only span 2 sees them.
  const changes = run([rule], 40, (s, w, t0) => {
    const n = w === 30 || w === 31 ? 9 : 4;
    for (let i = 0; i < n; i++) pub(s, 'd1', 'tele/d1', 50, t0 + i);
  });
  assert.deepEqual(changes.map((c) => [c.state, c.at / W, c.value]), [['ALARM', 32, 18], ['CLEAR', 33, 13]]);
  const single = run([{ ...rule, span: 1 }], 40, (s, w, t0) => {
    const n = w === 30 || w === 31 ? 9 : 4;
    for (let i = 0; i < n; i++) pub(s, 'd1', 'tele/d1', 50, t0 + i);
  });
  assert.deepEqual(single, []);
});

test('new-behaviour rules: a new topic prefix, address prefix and client id alarm after warm-up only', () => {
  const rules: Rule[] = [
    { kind: 'new', name: 'topic', subject: 'topic', warmup: 5, maxKnown: 8, ipv4Prefix: 24, ipv6Prefix: 48, ...hyst },
    { kind: 'new', name: 'addr', subject: 'address', warmup: 5, maxKnown: 8, ipv4Prefix: 24, ipv6Prefix: 48, ...hyst },
    { kind: 'new', name: 'cid', subject: 'clientId', warmup: 5, maxKnown: 8, ipv4Prefix: 24, ipv6Prefix: 48, ...hyst },
  ];
  const changes = run(rules, 12, (s, w, t0) => {
    // During warm-up the device moves within 10.0.0.0/24 and uses tele/ and status/.
    const remote = w === 8 ? '203.0.113.9' : `10.0.0.${1 + (w % 5)}`;
    s.observe({ kind: 'connect', identity: 'd1', clientId: w === 9 ? 'other' : 'd1', remote, at: t0 });
    pub(s, 'd1', w % 2 === 0 ? 'tele/d1' : 'status/d1', 10, t0 + 1);
    if (w === 7) pub(s, 'd1', 'cmd/d2/reboot', 10, t0 + 2);
    s.observe({ kind: 'disconnect', identity: 'd1', at: t0 + 3 });
  });
  assert.deepEqual(
    changes.map((c) => [c.rule, c.state, c.at / W, c.items?.join(',')]),
    [
      ['topic', 'ALARM', 8, 'cmd'],
      ['topic', 'CLEAR', 9, undefined],
      ['addr', 'ALARM', 9, '203.0.113.0/24'],
      ['addr', 'CLEAR', 10, undefined],
      ['cid', 'ALARM', 10, 'other'],
      ['cid', 'CLEAR', 11, undefined],
    ],
  );
});

test('evaluator: learned state is bounded by maxIdentities and the known-set cap', () => {
  const rules: Rule[] = [{ kind: 'new', name: 'topic', subject: 'topic', warmup: 0, maxKnown: 4, ipv4Prefix: 24, ipv6Prefix: 48, ...hyst }];
  const ev = new Evaluator(rules, { maxIdentities: 100 });
  const mk = (identity: string, topicKeys: string[]): Datapoint => ({
    identity, role: 'device', windowStart: 0, windowEnd: W, topicKeys, addresses: [], clientIds: [], metrics: {} as Datapoint['metrics'],
  });
  ev.evaluate(Array.from({ length: 500 }, (_, i) => mk(`d${i}`, ['a'])));
  assert.equal(ev.size, 100);
  // d0 was evicted (least recently seen), so all ten prefixes are new to it.
  const first = ev.evaluate([mk('d0', ['p0', 'p1', 'p2', 'p3', 'p4', 'p5', 'p6', 'p7', 'p8', 'p9'])]);
  assert.equal(first[0]?.items?.length, 10);
  // With a cap of 4 only p6..p9 are kept: p9 is known (CLEAR), p1 was forgotten (ALARM again).
  assert.deepEqual(ev.evaluate([mk('d0', ['p9'])]).map((c) => c.state), ['CLEAR']);
  assert.deepEqual(ev.evaluate([mk('d0', ['p1'])]).map((c) => [c.state, c.items]), [['ALARM', ['p1']]]);
  assert.equal(ev.size, 100);
});

test('config: defaults parse, a misspelt key is refused, duplicate names are refused', () => {
  const cfg = parseDetectConfig(undefined);
  assert.equal(cfg.windowSeconds, 30);
  assert.equal(cfg.rules.length, DEFAULT_RULES.length);
  assert.throws(() => parseDetectConfig({ windowSecs: 60 }), /windowSecs|Unrecognized/);
  assert.throws(() => parseDetectConfig({ rules: [{ kind: 'static', name: 'x', metric: 'connects', operator: 'gt', value: 1, treshold: 3 }] }), /treshold|Unrecognized/);
  assert.throws(() => parseDetectConfig({ rules: [{ kind: 'static', name: 'x', metric: 'nope', operator: 'gt', value: 1 }] }));
  const two = { kind: 'static', name: 'x', metric: 'connects', operator: 'gt', value: 1 };
  assert.throws(() => parseDetectConfig({ rules: [two, two] }), /duplicate rule name/);
  const one = parseDetectConfig({ rules: [{ kind: 'baseline', name: 'b', metric: 'bytesSent' }] });
  assert.deepEqual(one.rules[0], { kind: 'baseline', name: 'b', metric: 'bytesSent', alpha: 0.05, k: 6, warmup: 30, minSigma: 1, minRatio: 3, minValue: 0, span: 1, consecutiveDatapointsToAlarm: 1, consecutiveDatapointsToClear: 1, cooldownSeconds: 300 });
});
