/**
 * A seeded fleet simulation for the detection core (issue 15, "how it is judged"): a few
 * hundred devices send normal telemetry for simulated hours through ClientStats and the
 * Evaluator with the built-in rules, with attacks injected on chosen devices. Measures the
 * false alarms per 1,000 device-hours, and per attack kind the detection rate and the time
 * to detect; and the memory per identity. No broker, no sockets: the core only (the wired
 * end-to-end simulation belongs to the session that wires it). The fleet model is shared with
 * the end-to-end simulation (test/helpers/fleet-model.ts); its draws keep this file's figures.
 */
import { test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import assert from 'node:assert/strict';
import { ClientStats } from '../../src/defender/detect/client-stats.js';
import { Evaluator, type AlarmChange } from '../../src/defender/detect/evaluator.js';
import { parseDetectConfig } from '../../src/defender/detect/detect-config.js';
import { prng } from '../helpers/prng.js';
import { connectDevice, makeFleet, normalWindow, type FleetDevice, type FleetSink } from '../helpers/fleet-model.js';

/** The window length; simulated rates are per minute and scaled to it. */
const W = Number(process.env.SIM_WINDOW_MS ?? parseDetectConfig(undefined).windowSeconds * 1000);
const EXFIL_FACTOR = Number(process.env.SIM_EXFIL_FACTOR ?? 5);
const windowsPerMinute = 60_000 / W;
type AttackKind = 'topic-scan' | 'exfiltration' | 'reconnect-storm' | 'command-topic' | 'new-address' | 'credential-stuffing' | 'cloned-certificate';
const KINDS: AttackKind[] = ['topic-scan', 'exfiltration', 'reconnect-storm', 'command-topic', 'new-address', 'credential-stuffing', 'cloned-certificate'];

type Device = FleetDevice;

interface Attack {
  kind: AttackKind;
  /** The identity whose alarm counts as detection (`addr:<ip>` for credential stuffing). */
  target: string;
  device: Device;
  window: number;
  start: number;
  detectedAt?: number;
  rules: Set<string>;
}

interface SimResult {
  deviceHours: number;
  falseAlarms: AlarmChange[];
  attacks: Attack[];
  datapoints: number;
}

function simulate(seed: number, devices: number, hours: number, attacksPerKind: number): SimResult {
  const rand = prng(seed);
  const cfg = parseDetectConfig(undefined);
  // SIM_SPAN=1|2 overrides the baseline rules' span (to compare with the defaults).
  const span = process.env.SIM_SPAN;
  if (span === '1' || span === '2') for (const r of cfg.rules) if (r.kind === 'baseline') r.span = span === '1' ? 1 : 2;
  const stats = new ClientStats(0, { topicLevels: cfg.topicLevels });
  const ev = new Evaluator(cfg.rules);
  const windows = hours * 60 * windowsPerMinute;
  const fleet: Device[] = makeFleet(rand, devices, (i) => `10.${Math.floor(i / 250)}.${i % 250}`);
  // The model's events go straight into the detection core.
  const sink: FleetSink = {
    connect: (d, at, remote) => {
      stats.observe({ kind: 'connect', identity: d.id, clientId: d.id, remote, at });
      // A birth message on every connect, as devices do.
      stats.observe({ kind: 'publish', identity: d.id, topic: `status/${d.id}`, bytes: 40, at });
    },
    disconnect: (d, at) => stats.observe({ kind: 'disconnect', identity: d.id, at }),
    publish: (d, topic, bytes, at) => stats.observe({ kind: 'publish', identity: d.id, topic, bytes, at }),
    authzDenied: (d, topic, at) => stats.observe({ kind: 'authz-denied', identity: d.id, topic, at }),
    authFailure: (d, remote, at) => stats.observe({ kind: 'auth-failure', remote, identity: d.id, at }),
    deliver: (d, topic, bytes, at) => stats.observe({ kind: 'deliver', identity: d.id, topic, bytes, at }),
  };
  const connect = (d: Device, at: number, remote?: string): void => connectDevice(sink, d, at, remote);

  // Attacks: each on its own device, after 3 h (the warm-ups are 30 and 60 windows), spread out.
  const attacks: Attack[] = [];
  const order = fleet.map((d) => d).sort(() => rand() - 0.5);
  KINDS.forEach((kind, k) => {
    for (let j = 0; j < attacksPerKind; j++) {
      const device = order[k * attacksPerKind + j]!;
      const window = Math.round((180 + Math.floor(rand() * (hours * 60 - 200))) * windowsPerMinute);
      const start = window * W + Math.floor(rand() * W);
      const target = kind === 'credential-stuffing' ? `addr:198.51.100.${k * attacksPerKind + j}` : device.id;
      attacks.push({ kind, target, device, window, start, rules: new Set() });
    }
  });
  const attackAt = new Map<number, Attack[]>();
  for (const a of attacks) for (let w = a.window; w <= a.window + 6 * windowsPerMinute; w++) attackAt.set(w, [...(attackAt.get(w) ?? []), a]);

  const falseAlarms: AlarmChange[] = [];
  let datapoints = 0;
  for (let w = 0; w < windows; w++) {
    const t0 = w * W;
    normalWindow(fleet, w, W, rand, sink);
    for (const a of attackAt.get(w) ?? []) inject(a, w, stats, rand, connect);
    const dps = stats.closeWindow(t0 + W);
    datapoints += dps.length;
    for (const c of ev.evaluate(dps)) {
      if (c.state !== 'ALARM') continue;
      const a = attacks.find((x) => x.target === c.identity && c.at > x.start && c.at <= x.start + 6 * 60_000);
      if (a === undefined) falseAlarms.push(c);
      else {
        a.rules.add(c.rule);
        a.detectedAt ??= c.at;
      }
    }
  }
  return { deviceHours: devices * hours, falseAlarms, attacks, datapoints };
}

/** Feeds the attack's events that fall in window `w` (attacks last a few minutes from `start`). */
function inject(a: Attack, w: number, stats: ClientStats, rand: () => number, connect: (d: Device, at: number, remote?: string) => void): void {
  const t0 = w * W;
  const d = a.device;
  /** Evenly spread `count` events over [start, start + minutes), calling `f` for those inside this window. */
  const spread = (minutes: number, count: number, f: (at: number, i: number) => void): void => {
    for (let i = 0; i < count; i++) {
      const at = a.start + Math.floor((i / count) * minutes * 60_000);
      if (at >= t0 && at < t0 + W) f(at, i);
    }
  };
  switch (a.kind) {
    case 'topic-scan':
      // Walks the tree: a denied `#`, then 300 distinct topics in 2 minutes.
      if (w === a.window) stats.observe({ kind: 'authz-denied', identity: d.id, topic: '#', at: a.start });
      spread(2, 300, (at, i) => stats.observe({ kind: 'publish', identity: d.id, topic: `tele/probe-${i}/x`, bytes: 20, at }));
      return;
    case 'exfiltration':
      // EXFIL_FACTOR (5) times its normal volume for 3 minutes (half from more messages, half from bigger ones).
      spread(3, Math.round(d.rate * Math.sqrt(EXFIL_FACTOR) * 3), (at) => stats.observe({ kind: 'publish', identity: d.id, topic: `tele/${d.id}/m0`, bytes: Math.round(d.size * Math.sqrt(EXFIL_FACTOR)), at }));
      return;
    case 'reconnect-storm':
      spread(2, 40, (at) => {
        stats.observe({ kind: 'disconnect', identity: d.id, at });
        connect(d, at + 1);
      });
      return;
    case 'command-topic':
      spread(1, 1, (at) => stats.observe({ kind: 'publish', identity: d.id, topic: `cmd/dev-${Math.floor(rand() * 100)}/reboot`, bytes: 30, at }));
      return;
    case 'new-address':
      spread(1, 1, (at) => {
        stats.observe({ kind: 'disconnect', identity: d.id, at });
        connect(d, at + 1, `203.0.113.${Math.floor(rand() * 250)}`);
      });
      return;
    case 'credential-stuffing':
      spread(2, 200, (at, i) => stats.observe({ kind: 'auth-failure', remote: a.target.slice(5), identity: `dev-${i % 300}`, at }));
      return;
    case 'cloned-certificate':
      // A second live session from elsewhere with the same certificate (no takeover: another client id).
      spread(1, 1, (at) => stats.observe({ kind: 'connect', identity: d.id, clientId: `${d.id}-clone`, remote: `192.0.2.${Math.floor(rand() * 250)}`, at }));
      if (w === a.window + 5 * windowsPerMinute) stats.observe({ kind: 'disconnect', identity: d.id, at: t0 + 1 });
      return;
  }
}

test('fleet simulation: default rules keep false alarms <= 1 per 1,000 device-hours and detect each injected attack kind within 60 s', (t) => {
  const devices = 300;
  const hours = 24;
  const began = process.hrtime.bigint();
  const seed = Number(process.env.SIM_SEED ?? 20261207);
  const r = simulate(seed, devices, hours, 20);
  const ms = Number(process.hrtime.bigint() - began) / 1e6;
  const perK = (r.falseAlarms.length / r.deviceHours) * 1000;
  t.diagnostic(`seed ${seed}, window ${W / 1000} s: ${devices} devices x ${hours} h = ${r.deviceHours} device-hours, ${r.datapoints} datapoints, ${ms.toFixed(0)} ms`);
  t.diagnostic(`false alarms: ${r.falseAlarms.length} (${perK.toFixed(3)} per 1,000 device-hours) ${JSON.stringify(r.falseAlarms.map((c) => `${c.rule}:${c.identity}@${Math.round(c.at / 60_000)}`))}`);
  for (const kind of KINDS) {
    const of = r.attacks.filter((a) => a.kind === kind);
    const hit = of.filter((a) => a.detectedAt !== undefined);
    const ttd = hit.map((a) => (a.detectedAt! - a.start) / 1000).sort((x, y) => x - y);
    const within60 = ttd.filter((s) => s <= 60).length;
    const rules = [...new Set(hit.flatMap((a) => [...a.rules]))].join(',');
    const missed = of.filter((a) => a.detectedAt === undefined).map((a) => `${a.device.id}(rate ${a.device.rate.toFixed(1)}/min, ${a.device.size.toFixed(0)} B)`);
    t.diagnostic(
      `${kind}: detected ${hit.length}/${of.length}, within 60 s ${within60}/${of.length}, time to detect median ${ttd[Math.floor(ttd.length / 2)]?.toFixed(0)} s max ${ttd.at(-1)?.toFixed(0)} s, by ${rules}${missed.length > 0 ? `; missed ${missed.join(' ')}` : ''}`,
    );
  }
  assert.ok(perK <= 1, `false alarms per 1,000 device-hours: ${perK}`);
  for (const kind of KINDS) {
    const of = r.attacks.filter((a) => a.kind === kind);
    const hit = of.filter((a) => a.detectedAt !== undefined).length;
    const within60 = of.filter((a) => a.detectedAt !== undefined && a.detectedAt - a.start <= 60_000).length;
    if (kind !== 'exfiltration') assert.ok(within60 / of.length >= 0.95, `${kind}: ${within60}/${of.length} detected within 60 s`);
    else {
      // A 5x burst of a device sending a few messages a minute is inside its Poisson noise
      // at this false-alarm rate (2/min: P(X >= 10) = 5e-5 per minute): those may be missed
      // (seeds 20261207, 1 and 2 missed only devices under 4.5/min); from 5/min all must be seen.
      const missedFast = of.filter((a) => a.detectedAt === undefined && a.device.rate >= 5);
      assert.deepEqual(missedFast.map((a) => a.device.id), []);
      assert.ok(hit / of.length >= 0.75, `${kind}: ${hit}/${of.length} detected`);
    }
  }
});

test('memory per identity: 10,000 identities with a window of activity and learned state', (t) => {
  // A real collection before each reading, else garbage of the setup counts as state.
  setFlagsFromString('--expose-gc');
  const gc = (globalThis as { gc?: () => void }).gc ?? (runInNewContext('gc') as (() => void) | undefined);
  const cfg = parseDetectConfig(undefined);
  const N = 10_000;
  const heap = (): number => {
    gc?.();
    gc?.();
    return process.memoryUsage().heapUsed;
  };
  const before = heap();
  const stats = new ClientStats(0, { maxIdentities: N });
  const ev = new Evaluator(cfg.rules, { maxIdentities: N });
  // Enough windows that every rule has state (baselines, known topics and addresses);
  // the last window is left open with activity, as between two closes.
  for (let w = 0; w <= 3; w++) {
    for (let i = 0; i < N; i++) {
      const id = `device-${i.toString().padStart(6, '0')}`;
      if (w === 0) stats.observe({ kind: 'connect', identity: id, clientId: id, remote: `10.${i >> 8}.${i & 255}.7`, at: w * W });
      for (let m = 0; m < 4; m++) stats.observe({ kind: 'publish', identity: id, topic: `tele/${id}/m${m}`, bytes: 200, at: w * W + m });
      stats.observe({ kind: 'publish', identity: id, topic: `status/${id}`, bytes: 40, at: w * W + 10 });
    }
    if (w < 3) ev.evaluate(stats.closeWindow((w + 1) * W));
  }
  const after = heap();
  const perIdentity = (after - before) / N;
  t.diagnostic(`heap for ${N} identities (stats with an open window + evaluator state): ${(after - before) / 1024 / 1024 > 0 ? ((after - before) / 1024 / 1024).toFixed(1) : '?'} MiB, ${perIdentity.toFixed(0)} bytes per identity (gc exposed: ${gc !== undefined})`);
  assert.equal(stats.size, N);
  assert.equal(ev.size, N);
  // The bound the docs state: under 3 KiB per identity (the distinct-topic sketch is 128 bytes of it).
  assert.ok(perIdentity < 3072, `${perIdentity} bytes per identity`);
});
