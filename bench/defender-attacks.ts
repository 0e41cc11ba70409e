/**
 * The attacks of the end-to-end defender simulation, all through real MQTT: which device
 * (or attacker address) each hits, when it starts (a random virtual second after warm-up),
 * and what it sends in each window it spans. Owns: the attack kinds as the issue names
 * them and the identity whose alarm counts as detecting each. Must not: score anything
 * (defender-sim.ts does) or wait on the broker.
 */
import type { FleetDevice } from '../test/helpers/fleet-model.js';
import type { FleetNetwork, SimDevice } from './defender-devices.js';

export type AttackKind = 'topic-scan' | 'exfiltration-5x' | 'exfiltration-10x' | 'credential-stuffing' | 'cloned-certificate' | 'reconnect-storm' | 'command-topic';
export const ATTACK_KINDS: readonly AttackKind[] = ['topic-scan', 'exfiltration-5x', 'exfiltration-10x', 'credential-stuffing', 'cloned-certificate', 'reconnect-storm', 'command-topic'];

/** What each kind does, for the report. */
export const ATTACK_TITLES: Record<AttackKind, string> = {
  'topic-scan': 'topic scan: SUBSCRIBE # (denied), 300 denied topics in 2 min',
  'exfiltration-5x': 'exfiltration, 5× volume for 3 min',
  'exfiltration-10x': 'exfiltration, 10× volume for 3 min',
  'credential-stuffing': 'credential stuffing: 200 bad logins in 2 min from one address',
  'cloned-certificate': 'cloned certificate: a second live session, other client id, other /24',
  'reconnect-storm': 'reconnect storm: 40 reconnects in 2 min',
  'command-topic': 'one publish to a command topic (new prefix cmd/)',
};

/** Alarms within this long after the start count as detecting the attack (as in the core simulation). */
export const ATTACK_SPAN_MS = 6 * 60_000;

export interface Attack {
  kind: AttackKind;
  /** The identity whose alarm counts: the device's CN, or `addr:<ip>` of the stuffing address. */
  target: string;
  device: FleetDevice;
  /** The attacker's address (stuffing) or the clone's (cloned certificate). */
  address: string;
  window: number;
  /** Virtual ms. */
  start: number;
  detectedAt?: number;
  rules: Set<string>;
  /** Stuffing: when a brute-force ban of its address was added (virtual ms of the window). */
  bannedAt?: number;
}

export interface PlanOptions {
  fleet: readonly FleetDevice[];
  perKind: number;
  hours: number;
  windowMs: number;
  /** Earliest start, in minutes (after the rules' warm-up). */
  fromMinute: number;
  /** Exfiltration only on devices sending at least this many messages a minute (0: any). */
  exfilMinRate: number;
  rand: () => number;
}

/** Each attack on its own device, at a random second of a random window between `fromMinute` and the last 10 minutes. */
export function planAttacks(o: PlanOptions): Attack[] {
  const wpm = 60_000 / o.windowMs;
  const order = [...o.fleet].sort(() => o.rand() - 0.5);
  const used = new Set<FleetDevice>();
  const take = (ok: (d: FleetDevice) => boolean): FleetDevice => {
    const d = order.find((x) => !used.has(x) && ok(x)) ?? order.find((x) => !used.has(x));
    if (d === undefined) throw new Error('more attacks than devices');
    used.add(d);
    return d;
  };
  const attacks: Attack[] = [];
  ATTACK_KINDS.forEach((kind, k) => {
    for (let j = 0; j < o.perKind; j++) {
      const n = k * o.perKind + j;
      const device = kind === 'credential-stuffing' ? o.fleet[n % o.fleet.length]! : take((d) => !kind.startsWith('exfiltration') || d.rate >= o.exfilMinRate);
      const window = Math.round((o.fromMinute + Math.floor(o.rand() * (o.hours * 60 - o.fromMinute - 10))) * wpm);
      const start = window * o.windowMs + Math.floor(o.rand() * o.windowMs);
      // Attackers come from networks no device uses: 127.250.x.y (stuffing), 127.200.x.y (clones).
      const address = kind === 'credential-stuffing' ? `127.250.${Math.floor(n / 250)}.${(n % 250) + 1}` : `127.200.${Math.floor(n / 250)}.${(n % 250) + 1}`;
      const target = kind === 'credential-stuffing' ? `addr:${address}` : device.id;
      attacks.push({ kind, target, device, address, window, start, rules: new Set() });
    }
  });
  return attacks;
}

/** The windows an attack sends in (the clone leaves after 5 minutes). */
export function attackWindows(a: Attack, windowMs: number): number {
  return Math.ceil((a.kind === 'cloned-certificate' ? 5 * 60_000 : 3 * 60_000) / windowMs) + 1;
}

type Step = () => Promise<void>;

/**
 * The steps of attack `a` in window `w`, in order; `own` runs after the device's normal
 * steps for the window (attacks on a device share its connection), `attacker` alone.
 */
export function attackSteps(a: Attack, w: number, windowMs: number, dev: SimDevice, net: FleetNetwork, rand: () => number): Step[] {
  const t0 = w * windowMs;
  const steps: Step[] = [];
  /** `count` events spread evenly over [start, start + minutes); `f` for those in this window. */
  const spread = (minutes: number, count: number, f: (i: number) => Step): void => {
    for (let i = 0; i < count; i++) {
      const at = a.start + Math.floor((i / count) * minutes * 60_000);
      if (at >= t0 && at < t0 + windowMs) steps.push(f(i));
    }
  };
  const d = a.device;
  switch (a.kind) {
    case 'topic-scan':
      if (w === a.window) steps.push(() => dev.subscribeDenied('#'));
      spread(2, 300, (i) => async () => dev.publish(`tele/probe-${i}/x`, 20));
      break;
    case 'exfiltration-5x':
    case 'exfiltration-10x': {
      // Half from more messages, half from bigger ones, as in the core simulation.
      const f = Math.sqrt(a.kind === 'exfiltration-5x' ? 5 : 10);
      spread(3, Math.round(d.rate * f * 3), () => async () => dev.publish(`tele/${d.id}/m0`, Math.round(d.size * f)));
      break;
    }
    case 'reconnect-storm':
      spread(2, 40, () => async () => {
        await dev.disconnect();
        await dev.connect(`${d.net}.${d.host}`);
      });
      break;
    case 'command-topic':
      spread(1, 1, () => async () => dev.publish(`cmd/${d.id}/reboot`, 30));
      break;
    case 'credential-stuffing':
      // Names of real devices with guessed passwords, from one address.
      spread(2, 200, (i) => {
        // Drawn now, not when the step runs: steps of attacks overlapping in time interleave.
        const name = `dev-${Math.floor(rand() * 1000) % 300}`;
        return () => net.failedLogin(a.address, name, `guess-${i}`);
      });
      break;
    case 'cloned-certificate':
      spread(1, 1, () => () => dev.connectClone(a.address));
      if (w === a.window + 10 * Math.round(30_000 / windowMs)) steps.push(() => dev.disconnectClone());
      break;
  }
  return steps;
}
