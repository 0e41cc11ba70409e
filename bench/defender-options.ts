/**
 * The options of `npm run bench -- --defender` (defender-fleet.ts): defaults, bounds and the
 * usage lines. Kept apart so run.ts parses them without loading the simulation. Owns: those.
 * Must not: import anything heavy (run.ts imports it on every bench run).
 */

export const DEFENDER_DEFAULTS = { devices: 300, hours: 8, attacks: 20, seed: 20261207, repeat: 6 } as const;

/** What `--defender` runs: fleet size, virtual hours of the first simulation, attacks of each kind, seed. */
export interface DefenderOptions {
  devices: number;
  hours: number;
  attacks: number;
  seed: number;
}

export const DEFENDER_USAGE = `  --defender           behaviour detection (issue 15): a fleet of --devices (default ${DEFENDER_DEFAULTS.devices}) MQTT.js devices
                       over mTLS through an in-process broker for --hours (default ${DEFENDER_DEFAULTS.hours}) virtual hours,
                       --attacks (default ${DEFENDER_DEFAULTS.attacks}) of each kind, --seed; then fan-in throughput with
                       detection on, off and Mosquitto, --repeat (default ${DEFENDER_DEFAULTS.repeat}) × --duration/--warmup;
                       JSON in bench/results/defender-latest.json unless --json`;

type NumberOption = (value: string | undefined, name: string, fallback: number, min: number, max: number) => number;

/** Bounded: 2,000 devices (127.1-8.x.y), 48 virtual hours, 40 attacks of each kind at most; a string: what is wrong, for the user. */
export function parseDefenderOptions(parsed: { devices?: string; hours?: string; attacks?: string; seed?: string }, num: NumberOption): DefenderOptions | string {
  const o: DefenderOptions = {
    devices: Math.round(num(parsed.devices, 'devices', DEFENDER_DEFAULTS.devices, 10, 2000)),
    hours: Math.round(num(parsed.hours, 'hours', DEFENDER_DEFAULTS.hours, 2, 48)),
    attacks: Math.round(num(parsed.attacks, 'attacks', DEFENDER_DEFAULTS.attacks, 1, 40)),
    seed: Math.round(num(parsed.seed, 'seed', DEFENDER_DEFAULTS.seed, 0, 2 ** 31)),
  };
  // Each attack but credential stuffing takes a device of its own.
  if (o.attacks * 6 > o.devices) return '--defender: --attacks × 6 must not exceed --devices (each attack on its own device)';
  return o;
}
