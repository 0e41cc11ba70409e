/**
 * The end-to-end defender simulation (issue 15, "how it is judged"): the fleet model of the
 * core simulation (test/helpers/fleet-model.ts) sent through the real broker by MQTT.js
 * devices over TLS on loopback, attacks injected through real MQTT, and detection's windows
 * closed in virtual time. Each virtual window: every device sends that window's traffic,
 * the simulation waits until the broker has received all of it (its `received` counters,
 * its connected count and the deliveries at the devices), then advances virtual time by
 * one window and closes it (`server.defender.tick`). Alarms are read from the broker's
 * `defender.alarm` events (and counted on `$bastion/alerts/#` by an operator client).
 * Owns: the loop, the barrier and the scoring. Must not: run unbounded (every wait has a
 * deadline), or reach beyond loopback.
 */
import { performance } from 'node:perf_hooks';
import { addressOf, makeFleet, normalWindow, type FleetDevice, type FleetSink } from '../test/helpers/fleet-model.js';
import { prng } from '../test/helpers/prng.js';
import { ATTACK_KINDS, ATTACK_SPAN_MS, attackSteps, attackWindows, planAttacks, type Attack, type AttackKind } from './defender-attacks.js';
import { startFleetBroker } from './defender-broker.js';
import { FleetNetwork, SimDevice } from './defender-devices.js';

export const WINDOW_MS = 30_000;
/** Virtual time starts here (a fixed instant, so alerts and cooldowns are the same every run). */
const VIRTUAL_EPOCH = Date.UTC(2027, 0, 4);
/** The longest one window's traffic may take to reach the broker. */
const BARRIER_TIMEOUT_MS = 60_000;

export interface FleetSimOptions {
  seed: number;
  devices: number;
  hours: number;
  /** Attacks of each kind, each on its own device (stuffing: its own address). */
  perKind: number;
  /** Attacks start after this many minutes (the rules' warm-ups are 30 and 60 windows). */
  fromMinute: number;
  /** Exfiltration only on devices sending ≥ this many messages a minute (0: any device). */
  exfilMinRate: number;
  /** The broker's `limits` section. */
  limits?: Record<string, unknown>;
  /** Called after each window. */
  progress?: (window: number, windows: number) => void;
}

export interface SimAlarm {
  rule: string;
  identity: string;
  /** Virtual ms since the start of the simulation (the end of the window that raised it). */
  at: number;
}

export interface KindFigures {
  kind: AttackKind;
  injected: number;
  detected: number;
  within60: number;
  medianSeconds: number | null;
  maxSeconds: number | null;
  rules: string[];
  missed: string[];
  /** Credential stuffing: attacks whose address the brute-force protection banned within 60 s. */
  bannedWithin60?: number;
}

export interface FleetSimResult {
  seed: number;
  devices: number;
  hours: number;
  windows: number;
  deviceHours: number;
  kinds: KindFigures[];
  falseAlarms: SimAlarm[];
  falseAlarmsPer1000DeviceHours: number;
  alarms: number;
  /** ALARM messages the operator client received on $bastion/alerts/#. */
  alertsOnTopic: number;
  messagesPublished: number;
  skippedActions: number;
  loginsRefused: number;
  connectionsRefusedBeforeLogin: number;
  bans: string[];
  setupSeconds: number;
  simulationSeconds: number;
}

function sortedMedian(xs: number[]): number | null {
  return xs.length === 0 ? null : xs[Math.floor(xs.length / 2)]!;
}

/** Polls `check` each event-loop turn (the broker runs in this process) until true or the deadline. */
async function until(check: () => boolean, ms: number, what: () => string): Promise<void> {
  const deadline = performance.now() + ms;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what()}`);
    await new Promise<void>((r) => setImmediate(r));
  }
}

export async function runFleetSim(o: FleetSimOptions): Promise<FleetSimResult> {
  const began = performance.now();
  const W = WINDOW_MS;
  const wpm = 60_000 / W;
  const windows = o.hours * 60 * wpm;
  const rand = prng(o.seed);
  const attackRand = prng(o.seed ^ 0x5eed);
  // Device i's /24 is 127.<1 + i/250>.<i%250>: all of 127.0.0.0/8 is loopback.
  const fleet = makeFleet(rand, o.devices, (i) => `127.${1 + Math.floor(i / 250)}.${i % 250}`);
  const attacks = planAttacks({ fleet, perKind: o.perKind, hours: o.hours, windowMs: W, fromMinute: o.fromMinute, exfilMinRate: o.exfilMinRate, rand: attackRand });
  const active = new Map<number, Attack[]>();
  for (const a of attacks) for (let w = a.window; w < a.window + attackWindows(a, W); w++) active.set(w, [...(active.get(w) ?? []), a]);

  let virtualNow = VIRTUAL_EPOCH;
  const broker = await startFleetBroker({ names: [...fleet.map((d) => d.id), 'ops'], now: () => virtualNow, ...(o.limits !== undefined ? { limits: o.limits } : {}) });
  const server = broker.server;
  const alarms: SimAlarm[] = [];
  const bans: Array<{ value: string; at: number; by: string }> = [];
  const off = server.broker.events.on((e) => {
    if (e.type === 'defender.alarm' && e.state === 'ALARM') alarms.push({ rule: e.rule, identity: e.identity, at: virtualNow - VIRTUAL_EPOCH });
    // A ban happens while a window's traffic is sent (virtual time at its start): dated at the window's end, as its alarms would be.
    else if (e.type === 'ban.added') bans.push({ value: `${e.kind}:${e.value}`, at: virtualNow - VIRTUAL_EPOCH + W, by: e.createdBy });
  });
  const net = new FleetNetwork(`mqtts://127.0.0.1:${broker.port}`, broker.caPem);
  const devices = new Map<FleetDevice, SimDevice>(fleet.map((d) => [d, new SimDevice(d.id, broker.credentials.get(d.id)!, net)]));
  const received = (): number => {
    const r = server.broker.counters.received;
    return r[0] + r[1] + r[2];
  };
  let alertsOnTopic = 0;
  const opsCred = broker.credentials.get('ops')!;
  const ops = await net.connect({ localAddress: '127.0.0.1', clientId: 'ops', cert: opsCred.cert, key: opsCred.key });
  ops.on('message', (_t, payload) => {
    if ((JSON.parse(payload.toString()) as { state?: string }).state === 'ALARM') alertsOnTopic++;
  });
  await ops.subscribeAsync('$bastion/alerts/#', { qos: 1 });
  const setupSeconds = (performance.now() - began) / 1000;
  const simBegan = performance.now();

  try {
    for (let w = 0; w < windows; w++) {
      const t0 = w * W;
      virtualNow = VIRTUAL_EPOCH + t0;
      const queues = new Map<string, Array<() => Promise<void>>>();
      const push = (key: string, step: () => Promise<void>): void => {
        const q = queues.get(key);
        if (q === undefined) queues.set(key, [step]);
        else q.push(step);
      };
      const attacked = active.get(w) ?? [];
      // A device under attack is online for it (an outage of the model would otherwise hide the attack).
      for (const a of attacked) if (a.kind !== 'credential-stuffing') a.device.offlineUntil = Math.min(a.device.offlineUntil, w);
      const dev = (d: FleetDevice): SimDevice => devices.get(d)!;
      const sink: FleetSink = {
        connect: (d, _at, remote) => push(d.id, () => dev(d).connect(remote)),
        disconnect: (d) => push(d.id, () => dev(d).disconnect()),
        publish: (d, topic, bytes) => push(d.id, async () => dev(d).publish(topic, bytes)),
        // The model's denial is of a topic outside what the ACL grants.
        authzDenied: (d) => push(d.id, async () => dev(d).publish(`tele/_${d.id}/x`, 30)),
        authFailure: (d, remote) => push(d.id, () => net.failedLogin(remote, d.id, 'typo')),
        deliver: (d, topic, bytes) =>
          push(d.id, async () => {
            if (dev(d).client === null) return;
            net.deliveriesExpected++;
            // From the back end: the broker's own publish, so no client of the fleet's is counted for it.
            server.broker.publish({ topic, payload: Buffer.alloc(bytes - topic.length, 0x62), qos: 0, retain: false, properties: undefined, expiresAt: 0, origin: '' });
          }),
      };
      normalWindow(fleet, w, W, rand, sink);
      for (const a of attacked) {
        const steps = attackSteps(a, w, W, dev(a.device), net, attackRand);
        for (const s of steps) push(a.kind === 'credential-stuffing' ? a.address : a.device.id, s);
      }
      const receivedBefore = received() - net.published;
      await Promise.all(
        [...queues.values()].map(async (steps) => {
          for (const s of steps) await s();
        }),
      );
      // The barrier: everything sent this window is at the broker before the window closes.
      await until(
        () => received() - receivedBefore >= net.published && server.broker.owners.size === net.open && net.deliveriesReceived >= net.deliveriesExpected,
        BARRIER_TIMEOUT_MS,
        () => `window ${w}: received ${received() - receivedBefore}/${net.published}, connected ${server.broker.owners.size}/${net.open}, delivered ${net.deliveriesReceived}/${net.deliveriesExpected}`,
      );
      virtualNow = VIRTUAL_EPOCH + t0 + W;
      server.defender.tick(virtualNow);
      o.progress?.(w, windows);
    }
    // The last alerts reach the operator client.
    await until(() => alertsOnTopic >= alarms.length, 10_000, () => `alerts on $bastion/alerts: ${alertsOnTopic}/${alarms.length}`).catch(() => undefined);
  } finally {
    off();
    await Promise.all([...devices.values()].flatMap((d) => [d.disconnect(), d.disconnectClone()]));
    await ops.endAsync().catch(() => undefined);
    await broker.stop();
  }
  const simulationSeconds = (performance.now() - simBegan) / 1000;

  const falseAlarms: SimAlarm[] = [];
  for (const c of alarms) {
    const a = attacks.find((x) => x.target === c.identity && c.at > x.start && c.at <= x.start + ATTACK_SPAN_MS);
    if (a === undefined) falseAlarms.push(c);
    else {
      a.rules.add(c.rule);
      a.detectedAt ??= c.at;
    }
  }
  for (const a of attacks) {
    const ban = bans.find((b) => b.value === `ip:${a.address}` && b.at > a.start && b.at <= a.start + ATTACK_SPAN_MS);
    if (a.kind === 'credential-stuffing' && ban !== undefined) a.bannedAt = ban.at;
  }
  const deviceHours = o.devices * o.hours;
  const kinds = ATTACK_KINDS.map((kind): KindFigures => {
    const of = attacks.filter((a) => a.kind === kind);
    const hit = of.filter((a) => a.detectedAt !== undefined);
    const ttd = hit.map((a) => (a.detectedAt! - a.start) / 1000).sort((x, y) => x - y);
    return {
      kind,
      injected: of.length,
      detected: hit.length,
      within60: ttd.filter((s) => s <= 60).length,
      medianSeconds: sortedMedian(ttd),
      maxSeconds: ttd.at(-1) ?? null,
      rules: [...new Set(hit.flatMap((a) => [...a.rules]))].sort(),
      missed: of.filter((a) => a.detectedAt === undefined).map((a) => `${a.target}(rate ${a.device.rate.toFixed(1)}/min, ${a.device.size.toFixed(0)} B, from ${kind === 'credential-stuffing' ? a.address : addressOf(a.device)})`),
      ...(kind === 'credential-stuffing' ? { bannedWithin60: of.filter((a) => a.bannedAt !== undefined && a.bannedAt - a.start <= 60_000).length } : {}),
    };
  });
  return {
    seed: o.seed,
    devices: o.devices,
    hours: o.hours,
    windows,
    deviceHours,
    kinds,
    falseAlarms,
    falseAlarmsPer1000DeviceHours: (falseAlarms.length / deviceHours) * 1000,
    alarms: alarms.length,
    alertsOnTopic,
    messagesPublished: net.published,
    skippedActions: net.skipped,
    loginsRefused: net.loginRefused,
    connectionsRefusedBeforeLogin: net.connectionRefused,
    bans: bans.map((b) => `${b.value} by ${b.by} at ${Math.round(b.at / 1000)} s`),
    setupSeconds,
    simulationSeconds,
  };
}
