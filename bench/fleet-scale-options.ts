/**
 * `npm run bench -- --fleet` (issue 17, fleet-scale figures): its options, and the pure
 * arithmetic its report is made of (percentiles, time until a share of the fleet is back,
 * which loopback source address a device connects from). Owns: those. Must not: import
 * anything heavy or touch the network (run.ts imports it on every `--fleet` run, the unit
 * test imports it without a broker).
 */
import { parseArgs } from 'node:util';

export const FLEET_DEFAULTS = {
  devices: 50_000,
  stormDevices: 20_000,
  /** Generator processes (each with its own event loop and fd table). */
  generators: 4,
  /** Full handshakes in flight per generator while the fleet connects (scenario A). */
  concurrency: 24,
  /** Scenario A: seconds the fleet is held idle while the broker's event-loop lag is read. */
  holdSeconds: 10,
  /** Scenario A: publish→deliver round trips to one device, and how many a second. */
  probes: 1000,
  probeRate: 100,
  /** Scenario B: each device waits a random 0…this many ms before reconnecting. */
  stormBackoffMs: 1000,
} as const;

/**
 * Open files a broker or generator process is allowed beyond its devices' sockets: its
 * listeners, the probe's two connections, metrics scrapes, data and log files. Bastion uses
 * ~40 idle here.
 */
export const FD_MARGIN = 500;

/** At most this many devices connect from one loopback source address (its ephemeral ports stay far from exhausted). */
export const DEVICES_PER_ADDRESS = 500;

export interface FleetOptions {
  devices: number;
  stormDevices: number;
  /** Which scenarios run: `hold` (A, Bastion), `storm` (B, Bastion and Mosquitto). */
  scenarios: ('hold' | 'storm')[];
  /** Scenario B's brokers. */
  brokers: ('bastion' | 'mosquitto')[];
  generators: number;
  concurrency: number;
  holdSeconds: number;
  probes: number;
  stormBackoffMs: number;
  /** null: bench/results/fleet-latest.json. */
  jsonPath: string | null;
}

export const FLEET_USAGE = `usage: npm run bench -- --fleet [options]     (fleet scale, issue 17: bench/fleet-scale.ts)
  --devices <N>          scenario A "hold": idle mTLS devices held by one Bastion (default ${FLEET_DEFAULTS.devices})
  --storm-devices <M>    scenario B "storm": devices reconnecting at once after a broker restart,
                         Bastion and Mosquitto (default ${FLEET_DEFAULTS.stormDevices})
  --only hold|storm      one scenario (default both)
  --broker <b>           scenario B: bastion | mosquitto | both (default both)
  --generators <n>       load-generator processes (default ${FLEET_DEFAULTS.generators})
  --concurrency <c>      scenario A: handshakes in flight per generator (default ${FLEET_DEFAULTS.concurrency})
  --hold-seconds <s>     scenario A: idle window for the event-loop lag (default ${FLEET_DEFAULTS.holdSeconds}, at least 10)
  --probes <n>           scenario A: publish→deliver round trips at ${FLEET_DEFAULTS.probeRate}/s (default ${FLEET_DEFAULTS.probes})
  --storm-backoff <ms>   scenario B: random delay 0…ms before each device reconnects (default ${FLEET_DEFAULTS.stormBackoffMs})
  --json <file>          where the JSON goes (default bench/results/fleet-latest.json)`;

function num(value: string | undefined, name: string, fallback: number, min: number, max: number): number | string {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n < min || n > max) return `--${name} must be a number from ${min} to ${max}`;
  return Math.round(n);
}

/** Parses the arguments after `--fleet` (the flag itself may be among them); a string: what is wrong. */
export function parseFleetOptions(argv: readonly string[]): FleetOptions | string {
  let v;
  try {
    v = parseArgs({
      args: argv.filter((a) => a !== '--fleet'),
      options: {
        devices: { type: 'string' },
        'storm-devices': { type: 'string' },
        only: { type: 'string' },
        broker: { type: 'string' },
        generators: { type: 'string' },
        concurrency: { type: 'string' },
        'hold-seconds': { type: 'string' },
        probes: { type: 'string' },
        'storm-backoff': { type: 'string' },
        json: { type: 'string' },
      },
      allowPositionals: false,
    }).values;
  } catch (e) {
    return `--fleet: ${(e as Error).message}`;
  }
  // Bounded: 200,000 devices is already four times the open-file margin the bench sets up.
  const fields = {
    devices: num(v.devices, 'devices', FLEET_DEFAULTS.devices, 10, 200_000),
    stormDevices: num(v['storm-devices'], 'storm-devices', FLEET_DEFAULTS.stormDevices, 10, 200_000),
    generators: num(v.generators, 'generators', FLEET_DEFAULTS.generators, 1, 16),
    concurrency: num(v.concurrency, 'concurrency', FLEET_DEFAULTS.concurrency, 1, 500),
    holdSeconds: num(v['hold-seconds'], 'hold-seconds', FLEET_DEFAULTS.holdSeconds, 10, 120),
    probes: num(v.probes, 'probes', FLEET_DEFAULTS.probes, 10, 100_000),
    stormBackoffMs: num(v['storm-backoff'], 'storm-backoff', FLEET_DEFAULTS.stormBackoffMs, 0, 30_000),
  };
  for (const f of Object.values(fields)) if (typeof f === 'string') return f;
  const only = v.only ?? 'hold,storm';
  const scenarios = only.split(',').map((s) => s.trim());
  if (scenarios.some((s) => s !== 'hold' && s !== 'storm') || scenarios.length === 0) return '--only must be hold, storm or hold,storm';
  const broker = v.broker ?? 'both';
  if (broker !== 'bastion' && broker !== 'mosquitto' && broker !== 'both') return '--broker must be bastion, mosquitto or both';
  return {
    devices: fields.devices as number,
    stormDevices: fields.stormDevices as number,
    scenarios: [...new Set(scenarios as ('hold' | 'storm')[])],
    brokers: broker === 'both' ? ['bastion', 'mosquitto'] : [broker],
    generators: fields.generators as number,
    concurrency: fields.concurrency as number,
    holdSeconds: fields.holdSeconds as number,
    probes: fields.probes as number,
    stormBackoffMs: fields.stormBackoffMs as number,
    jsonPath: v.json ?? null,
  };
}

/**
 * The loopback address device `index` connects from: 127.10.x.y, DEVICES_PER_ADDRESS
 * devices each, y in 1…250 (never .0 or .255). Linux routes all of 127.0.0.0/8 to lo, so
 * each address has its own ephemeral ports and 50,000 devices never exhaust one address's.
 */
export function sourceAddress(index: number): string {
  const a = Math.floor(index / DEVICES_PER_ADDRESS);
  return `127.10.${Math.floor(a / 250)}.${1 + (a % 250)}`;
}

/** The q-quantile (0…1) of sorted values, nearest rank; null for none. */
export function quantile(sorted: readonly number[], q: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.ceil(q * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1] ?? null;
}

/**
 * Milliseconds from `t0` until `share` (0…1) of `total` devices were back, given the
 * times each device came back (any order, devices never back absent): null when fewer than
 * that share ever came back.
 */
export function timeToShare(backAt: readonly number[], total: number, share: number, t0: number): number | null {
  const needed = Math.ceil(total * share);
  if (needed === 0) return 0;
  if (backAt.length < needed) return null;
  const sorted = [...backAt].sort((a, b) => a - b);
  return Math.max(0, sorted[needed - 1]! - t0);
}

/** The samples (with labels) of the named metrics whose value is not 0, as `name{labels} value` lines. */
export function promSamples(text: string, names: readonly string[]): string[] {
  return text.split('\n').filter((line) => names.some((n) => line.startsWith(`${n}{`) || line.startsWith(`${n} `)) && Number(line.split(' ').at(-1)) !== 0);
}

/** The TcpExt counters of a /proc/net/netstat text (a header line of names, then a line of values). */
export function tcpExt(text: string): Record<string, number> {
  const lines = text.split('\n').filter((l) => l.startsWith('TcpExt:'));
  const names = (lines[0] ?? '').split(' ').slice(1);
  const values = (lines[1] ?? '').split(' ').slice(1).map(Number);
  return Object.fromEntries(names.map((n, i) => [n, values[i] ?? 0]));
}

/** A Prometheus text exposition's value for a metric without labels, or null. */
export function promValue(text: string, name: string): number | null {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (!rest.startsWith(' ')) continue;
    const value = Number(rest.trim().split(' ')[0]);
    return Number.isFinite(value) ? value : null;
  }
  return null;
}
