/**
 * The throughput half of `npm run bench -- --defender` (issue 15: "the broker's throughput
 * with detection on ≥ 0.95× with it off, in the same bench run"): the main bench's fan-in
 * scenarios (scenarios.ts) over mTLS against three brokers, each a fresh child process:
 * Bastion as configured by default (detection on), Bastion with `defender.detect.enabled:
 * false`, and Mosquitto. Runs alternate their order each repeat so drift on the machine
 * favours none; medians are reported with every run. Bastion runs with limits `raised`
 * (brokers.ts: every limit on, every rate far above the load), as the cluster bench does. Owns: that sequence and its figures.
 * Must not: leave a broker running (every run has a deadline and ends in stop()).
 */
import { BrokerProcess, type BrokerKind } from './brokers.js';
import type { BenchPki } from './certs.js';
import { withTimeout } from './fleet.js';
import { waitForQuietMachine } from './host-cpu.js';
import { median } from './report.js';
import { round } from './round.js';
import type { Scenario } from './scenario-api.js';

export type DetectVariant = 'bastion-detect-on' | 'bastion-detect-off' | 'mosquitto';
const VARIANTS: readonly DetectVariant[] = ['bastion-detect-on', 'bastion-detect-off', 'mosquitto'];
const RUN_SLACK_MS = 90_000;
const QUIET_THRESHOLD_PCT = 40;
const QUIET_MAX_MS = 5_000;

export interface ThroughputRun {
  scenario: string;
  variant: DetectVariant;
  repeat: number;
  ok: boolean;
  error: string | null;
  /** msg/s (the scenario's `rate`). */
  rate: number | null;
  /** The broker's CPU µs per delivery over the measured window: the cost, less sensitive to other load on the machine than the rate. */
  brokerUsPerDelivery: number | null;
  machineLoadBeforePct: number | null;
}

export interface ThroughputRow {
  scenario: string;
  title: string;
  unit: string;
  medians: Record<DetectVariant, number | null>;
  /** Detection on ÷ off (medians), and per repeat (paired runs). */
  onOverOff: number | null;
  onOverOffPerRepeat: Array<number | null>;
  onOverMosquitto: number | null;
  offOverMosquitto: number | null;
  /** Median broker CPU µs per delivery, and detection on ÷ off of it (above 1: detection costs CPU). */
  usPerDelivery: Record<DetectVariant, number | null>;
  cpuOnOverOff: number | null;
}

export interface ThroughputOptions {
  scenarios: Scenario[];
  pki: BenchPki;
  repeat: number;
  durationS: number;
  warmupS: number;
  /** Mosquitto is skipped when it is not installed. */
  withMosquitto: boolean;
  /** Called when a run starts (the caller kills it on its watchdog). */
  onBroker: (b: BrokerProcess | null) => void;
  log: (line: string) => void;
}

async function runOne(s: Scenario, v: DetectVariant, repeat: number, o: ThroughputOptions): Promise<ThroughputRun> {
  const kind: BrokerKind = v === 'mosquitto' ? 'mosquitto' : 'bastion';
  const quiet = await waitForQuietMachine(QUIET_THRESHOLD_PCT, QUIET_MAX_MS);
  const base = { scenario: s.id, variant: v, repeat, machineLoadBeforePct: quiet.loadPct };
  let broker: BrokerProcess;
  try {
    // Limits `raised`: every limit checked, none biting (the default 1,000 msg/s per client would cap both variants alike).
    broker = await BrokerProcess.start({ kind, persistence: s.persistence, pki: o.pki, limits: 'raised', ...(v === 'bastion-detect-off' ? { detect: false } : {}) });
  } catch (e) {
    return { ...base, ok: false, error: `broker did not start: ${(e as Error).message}`, rate: null, brokerUsPerDelivery: null };
  }
  o.onBroker(broker);
  try {
    if (broker.tlsPort === null) throw new Error('no TLS listener');
    const measured = await withTimeout(
      s.run({ broker, transport: 'tls', target: { host: '127.0.0.1', port: broker.tlsPort, tls: o.pki.client }, version: 4, warmupMs: o.warmupS * 1000, durationMs: o.durationS * 1000, idleConns: 0 }),
      (o.warmupS + o.durationS) * 1000 + RUN_SLACK_MS,
      `${s.id} ${v}`,
    );
    const us = measured.details.brokerUsPerDelivery;
    return { ...base, ok: true, error: null, rate: measured.metrics.rate ?? null, brokerUsPerDelivery: typeof us === 'number' ? us : null };
  } catch (e) {
    return { ...base, ok: false, error: (e as Error).message, rate: null, brokerUsPerDelivery: null };
  } finally {
    o.onBroker(null);
    await broker.stop();
  }
}

const ratio = (a: number | null, b: number | null): number | null => (a === null || b === null || b === 0 ? null : round(a / b, 3) ?? null);

export async function runDetectionThroughput(o: ThroughputOptions): Promise<{ runs: ThroughputRun[]; rows: ThroughputRow[] }> {
  const variants = VARIANTS.filter((v) => v !== 'mosquitto' || o.withMosquitto);
  const runs: ThroughputRun[] = [];
  for (const s of o.scenarios) {
    for (let rep = 1; rep <= o.repeat; rep++) {
      // Rotate who goes first each repeat.
      const order = variants.map((_, i) => variants[(i + rep - 1) % variants.length]!);
      for (const v of order) {
        const r = await runOne(s, v, rep, o);
        o.log(`${s.id} tls ${v} #${rep}: ${r.ok ? `${Math.round(r.rate ?? 0)} msg/s, broker ${r.brokerUsPerDelivery ?? '?'} µs CPU per delivery` : `FAILED: ${r.error ?? ''}`}`);
        runs.push(r);
      }
    }
  }
  const rows = o.scenarios.map((s): ThroughputRow => {
    const of = (v: DetectVariant, rep?: number): number[] => runs.filter((r) => r.scenario === s.id && r.variant === v && r.ok && r.rate !== null && (rep === undefined || r.repeat === rep)).map((r) => r.rate!);
    const medians = { 'bastion-detect-on': median(of('bastion-detect-on')), 'bastion-detect-off': median(of('bastion-detect-off')), mosquitto: median(of('mosquitto')) };
    const us = (v: DetectVariant): number | null => median(runs.filter((r) => r.scenario === s.id && r.variant === v && r.brokerUsPerDelivery !== null).map((r) => r.brokerUsPerDelivery!));
    const usPerDelivery = { 'bastion-detect-on': us('bastion-detect-on'), 'bastion-detect-off': us('bastion-detect-off'), mosquitto: us('mosquitto') };
    return {
      scenario: s.id,
      title: s.title,
      unit: s.metrics[0]?.unit ?? 'msg/s',
      medians,
      onOverOff: ratio(medians['bastion-detect-on'], medians['bastion-detect-off']),
      onOverOffPerRepeat: Array.from({ length: o.repeat }, (_, i) => ratio(of('bastion-detect-on', i + 1)[0] ?? null, of('bastion-detect-off', i + 1)[0] ?? null)),
      onOverMosquitto: ratio(medians['bastion-detect-on'], medians.mosquitto),
      offOverMosquitto: ratio(medians['bastion-detect-off'], medians.mosquitto),
      usPerDelivery,
      cpuOnOverOff: ratio(usPerDelivery['bastion-detect-on'], usPerDelivery['bastion-detect-off']),
    };
  });
  return { runs, rows };
}
