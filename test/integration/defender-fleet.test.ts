/**
 * Behaviour detection end to end (issue 15, "how it is judged"), small and fast: the
 * end-to-end fleet simulation of `npm run bench -- --defender` (bench/defender-sim.ts) with
 * 40 MQTT.js devices over mTLS, each from its own loopback address, for 2 virtual hours
 * through the real broker (detection's clock virtual, windows closed by the simulation),
 * one attack of each kind through real MQTT. Every attack must raise an alarm within 60
 * virtual seconds and nothing else may. Seeded: the same run every time.
 *
 * Limits are the defaults but flapping (a real-time limit the compressed clock would trip,
 * see bench/defender-fleet.ts): the stuffing address is banned at its 10th failure, and
 * its refused retries still count for auth-failures-address (the second test, alone).
 */
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { runFleetSim } from '../../bench/defender-sim.js';
import { startFleetBroker } from '../../bench/defender-broker.js';
import { FleetNetwork } from '../../bench/defender-devices.js';
import type { SecurityEvent } from '../../src/core/security-events.js';

const SEED = 20261207;

test('40 devices × 2 virtual hours through the real broker: every injected attack alarms within 60 s, no false alarm', { timeout: 180_000 }, async (t) => {
  const r = await runFleetSim({
    seed: SEED,
    devices: 40,
    hours: 2,
    perKind: 1,
    fromMinute: 60,
    // A 5× burst of a device sending a few small messages a minute is inside its normal noise
    // (docs/DEFENDER.md): at 9.5 messages a minute of 55 B, 5× is ~31 messages a minute
    // against a threshold of ~28 and under the 4,096 B floor of bytes-baseline; seen or not by chance.
    exfilMinRate: 10,
    limits: { flapping: { maxConnects: 0 } },
  });
  t.diagnostic(`${r.messagesPublished} messages in ${r.simulationSeconds.toFixed(1)} s; alarms ${r.alarms}, on $bastion/alerts ${r.alertsOnTopic}`);
  for (const k of r.kinds) t.diagnostic(`${k.kind}: ${k.detected}/${k.injected}, within 60 s ${k.within60}, ${k.medianSeconds ?? '-'} s, by ${k.rules.join(',')}`);
  assert.deepEqual(r.falseAlarms, [], 'no alarm outside an attack');
  for (const k of r.kinds) {
    assert.equal(k.injected, 1, k.kind);
    assert.equal(k.within60, 1, `${k.kind} alarmed within 60 s (missed: ${k.missed.join(' ')})`);
  }
  // Each kind by the rule meant for it.
  const by = Object.fromEntries(r.kinds.map((k) => [k.kind, k.rules]));
  assert.ok(by['topic-scan']!.includes('authz-denials'));
  assert.ok(by['credential-stuffing']!.includes('auth-failures-address'));
  assert.ok(by['cloned-certificate']!.includes('concurrent-sessions'));
  assert.ok(by['reconnect-storm']!.includes('reconnects'));
  assert.ok(by['command-topic']!.includes('new-topic-prefix'));
  assert.ok(by['exfiltration-10x']!.some((rule) => rule.endsWith('-baseline')));
  // Every alarm reached the alerts topic, and the fleet's traffic all ran.
  assert.equal(r.alertsOnTopic, r.alarms);
  assert.equal(r.skippedActions, 0);
  assert.ok(r.messagesPublished > 10_000, `${r.messagesPublished} messages`);
});

test('credential stuffing under the default brute-force ban: the address is banned at its 10th failure and still alarms auth-failures-address', async () => {
  let virtualNow = Date.UTC(2027, 0, 4);
  const broker = await startFleetBroker({ names: ['ops'], now: () => virtualNow });
  const events: SecurityEvent[] = [];
  const off = broker.server.broker.events.on((e) => void events.push(e));
  try {
    const net = new FleetNetwork(`mqtts://127.0.0.1:${broker.port}`, broker.caPem);
    // 30 bad logins from one address within one 30 s window, as a stuffing run sends them.
    for (let i = 0; i < 30; i++) await net.failedLogin('127.250.9.1', `dev-${i}`, `guess-${i}`);
    virtualNow += 30_000;
    broker.server.defender.tick(virtualNow);
    const banned = events.some((e) => e.type === 'ban.added' && e.value === '127.250.9.1');
    const alarm = events.some((e) => e.type === 'defender.alarm' && e.rule === 'auth-failures-address' && e.identity === 'addr:127.250.9.1');
    assert.ok(banned, 'the brute-force protection banned the address');
    // Ten refused at CONNECT, the rest at accept (banned): over 10 in the window only if those count too.
    assert.equal(events.filter((e) => e.type === 'auth.failure').length, 10);
    assert.equal(net.connectionRefused, 20);
    assert.ok(alarm, 'auth-failures-address alarmed on the address');
  } finally {
    off();
    await broker.stop();
  }
});
