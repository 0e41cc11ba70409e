/**
 * The OTA bench's report (`--ota`): the record of each run, the summary over runs (medians
 * and ranges) and the table printed on stdout. Owns: those shapes and their formatting.
 * Must not: measure anything (ota-bench.ts does).
 */
import type { HostInfo } from './host-info.js';
import type { WindowSummary } from './ota-telemetry.js';
import { median } from './report.js';
import { round } from './round.js';

export interface OtaRun {
  run: number;
  ok: boolean;
  error: string | null;
  jobId: string | null;
  releaseId: string;
  /** Executions SUCCEEDED per `ota job show --json` after the run (latest per device). */
  succeeded: number | null;
  devices: number;
  imageBytes: number;
  /** `ota job create` spawned → last device installed (its SUCCEEDED report accepted). */
  wallSeconds: number | null;
  /** The first device taking the job → the last install (the downloads themselves). */
  downloadSeconds: number | null;
  /** `ota job create` spawned → first device taking the job (CLI start, the broker's 250 ms poll). */
  jobStartSeconds: number | null;
  /** Delivered image bytes (devices × image) over wallSeconds: 10^6 bytes/s and MiB/s. */
  mbPerSecond: number | null;
  mibPerSecond: number | null;
  /** The same over downloadSeconds. */
  downloadMibPerSecond: number | null;
  perDeviceSeconds: { median: number | null; min: number | null; max: number | null };
  brokerCpuSeconds: number | null;
  /** Broker CPU over wallSeconds, % of one core. */
  brokerCpuPct: number | null;
  brokerCpuMsPerMib: number | null;
  /** Broker (process tree) RSS: sampled every 100 ms; at the end of the baseline, and the peak during the run. */
  brokerRssKbBaseline: number | null;
  brokerRssKbPeak: number | null;
  /** This process (devices, telemetry thread, coordinator) over wallSeconds, % of one core. */
  generatorCpuPct: number | null;
  /** The machine over wallSeconds, % of one core (200 = both of two cores). */
  machineCpuPct: number | null;
  /** machine − broker − this process: kernel loopback work no process is charged for, and other programs. */
  otherCpuPct: number | null;
  /** The machine and the broker over the baseline window. */
  baselineMachineCpuPct: number | null;
  baselineBrokerCpuPct: number | null;
  blocksWritten: number;
  blocksRefused: number;
  getRequests: number;
  agentErrors: string[];
  telemetryBaseline: WindowSummary | null;
  telemetryDuring: WindowSummary | null;
  /** The control: the same telemetry through Mosquitto (running beside Bastion) over the same two windows. */
  controlBaseline: WindowSummary | null;
  controlDuring: WindowSummary | null;
  /** during / baseline, p50 and p99. */
  p50Ratio: number | null;
  p99Ratio: number | null;
  waitedForQuietMs: number;
}

export interface MosquittoRun {
  run: number;
  telemetry: WindowSummary | null;
  error: string | null;
  /** The machine over the window, % of one core (Mosquitto, the telemetry pair and anything else). */
  machineCpuPct: number | null;
  waitedForQuietMs: number;
}

export type Spread = { median: number | null; min: number | null; max: number | null };

export interface OtaReport {
  generatedAt: string;
  host: HostInfo;
  command: string;
  options: { devices: number; imageBytes: number; repeat: number; telemetryRate: number; telemetryQos: 1; baselineSeconds: number; maxBytesPerSecond: number | null; blockSize: string; agents: string };
  setupSeconds: number;
  summary: {
    runsOk: number;
    wallSeconds: Spread;
    mbPerSecond: Spread;
    mibPerSecond: Spread;
    brokerCpuSeconds: Spread;
    brokerCpuMsPerMib: Spread;
    brokerRssKbPeak: Spread;
    bastionBaselineP50Us: Spread;
    bastionBaselineP99Us: Spread;
    bastionDuringP50Us: Spread;
    bastionDuringP99Us: Spread;
    duringOverBaselineP50: Spread;
    duringOverBaselineP99: Spread;
    mosquittoIdleP50Us: Spread;
    mosquittoIdleP99Us: Spread;
    /** Bastion during downloads (median) ÷ Mosquitto idle (median). */
    duringOverMosquittoIdleP50: number | null;
    duringOverMosquittoIdleP99: number | null;
    baselineOverMosquittoIdleP50: number | null;
    baselineOverMosquittoIdleP99: number | null;
    /** The control pair through Mosquitto, in Bastion's baseline windows and during its downloads. */
    controlBaselineP50Us: Spread;
    controlBaselineP99Us: Spread;
    controlDuringP50Us: Spread;
    controlDuringP99Us: Spread;
  };
  runs: OtaRun[];
  mosquitto: { version: string | null; runs: MosquittoRun[]; skipped: string | null };
  totalSeconds: number;
}

export function spread(values: (number | null)[]): Spread {
  const v = values.filter((x): x is number => x !== null);
  if (v.length === 0) return { median: null, min: null, max: null };
  return { median: median(v), min: Math.min(...v), max: Math.max(...v) };
}

export const ratio = (a: number | null, b: number | null, digits = 2): number | null => (a === null || b === null || b === 0 ? null : round(a / b, digits));

const f = (v: number | null, unit = '', digits = 1): string => (v === null ? '—' : `${round(v, digits)}${unit}`);
const ms = (us: number | null): string => (us === null ? '—' : `${round(us / 1000, 2)} ms`);
const sp = (s: Spread, fmt: (v: number | null) => string): string => (s.median === null ? '—' : s.min === s.max ? fmt(s.median) : `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})`);

export function printOtaReport(r: OtaReport): void {
  const o = r.options;
  const s = r.summary;
  const mib = o.imageBytes / 1024 / 1024;
  const out = [
    '',
    `OTA delivery (issue 14): a ${round(mib, 2)} MiB signed image to ${o.devices} devices at once (${o.agents}), ${o.repeat} run(s), ` +
      `while a telemetry pair sends ${o.telemetryRate} msg/s QoS 1 through the same broker (mTLS)`,
    `Node ${r.host.node}, OpenSSL ${r.host.openssl}, ${r.host.cpus} × ${r.host.cpuModel}; Mosquitto ${r.mosquitto.version ?? '—'}; ` +
      `transfer budget ${o.maxBytesPerSecond === null ? 'the broker default (ota.transfer.maxBytesPerSecond 32 MiB/s)' : `${round(o.maxBytesPerSecond / 1024 / 1024, 1)} MiB/s`}; setup ${r.setupSeconds} s`,
    `medians over ${s.runsOk}/${r.runs.length} ok runs (min–max):`,
    `  job create → all ${o.devices} SUCCEEDED   ${sp(s.wallSeconds, (v) => f(v, ' s', 2))}`,
    `  delivered                        ${sp(s.mbPerSecond, (v) => f(v, ' MB/s'))} = ${sp(s.mibPerSecond, (v) => f(v, ' MiB/s'))}`,
    `  broker CPU                       ${sp(s.brokerCpuSeconds, (v) => f(v, ' s', 2))}, ${sp(s.brokerCpuMsPerMib, (v) => f(v, ' ms/MiB', 2))}`,
    `  broker peak RSS                  ${sp(s.brokerRssKbPeak, (v) => f(v === null ? null : v / 1024, ' MiB', 0))}`,
    '',
    '  telemetry latency (QoS 1)   p50                      p99',
    `  Mosquitto, idle             ${sp(s.mosquittoIdleP50Us, ms).padEnd(24)} ${sp(s.mosquittoIdleP99Us, ms)}`,
    `  Bastion, no download        ${sp(s.bastionBaselineP50Us, ms).padEnd(24)} ${sp(s.bastionBaselineP99Us, ms)}`,
    `  Bastion, during downloads   ${sp(s.bastionDuringP50Us, ms).padEnd(24)} ${sp(s.bastionDuringP99Us, ms)}`,
    `  during / no download        ${sp(s.duringOverBaselineP50, (v) => f(v, '×', 2)).padEnd(24)} ${sp(s.duringOverBaselineP99, (v) => f(v, '×', 2))}`,
    `  during / Mosquitto idle     ${f(s.duringOverMosquittoIdleP50, '×', 2).padEnd(24)} ${f(s.duringOverMosquittoIdleP99, '×', 2)}`,
    `  no download / Mosq. idle    ${f(s.baselineOverMosquittoIdleP50, '×', 2).padEnd(24)} ${f(s.baselineOverMosquittoIdleP99, '×', 2)}`,
    '  control: the same pair through Mosquitto, running beside Bastion (the machine\'s share of the delay)',
    `  Mosquitto, Bastion idle     ${sp(s.controlBaselineP50Us, ms).padEnd(24)} ${sp(s.controlBaselineP99Us, ms)}`,
    `  Mosquitto, Bastion downloads ${sp(s.controlDuringP50Us, ms).padEnd(23)} ${sp(s.controlDuringP99Us, ms)}`,
    ...(r.mosquitto.skipped !== null ? [`  Mosquitto: ${r.mosquitto.skipped}`] : []),
    '',
    'per run:',
  ];
  for (const x of r.runs) {
    const b = x.telemetryBaseline;
    const d = x.telemetryDuring;
    out.push(
      `  #${x.run}: ${x.succeeded ?? '?'}/${x.devices} SUCCEEDED in ${f(x.wallSeconds, ' s', 2)} (job taken after ${f(x.jobStartSeconds, ' s', 2)}, downloads ${f(x.downloadSeconds, ' s', 2)}, ` +
        `per device ${f(x.perDeviceSeconds.median, ' s', 2)} median, ${f(x.perDeviceSeconds.max, ' s', 2)} max); ${f(x.mbPerSecond, ' MB/s')} = ${f(x.mibPerSecond, ' MiB/s')}; ` +
        `broker ${f(x.brokerCpuSeconds, ' s', 2)} CPU (${f(x.brokerCpuPct, '%', 0)} of a core, ${f(x.brokerCpuMsPerMib, ' ms/MiB', 2)}), RSS ${f(x.brokerRssKbBaseline === null ? null : x.brokerRssKbBaseline / 1024, '', 0)} → peak ${f(x.brokerRssKbPeak === null ? null : x.brokerRssKbPeak / 1024, ' MiB', 0)}; ` +
        `devices+telemetry process ${f(x.generatorCpuPct, '%', 0)}, machine ${f(x.machineCpuPct, '%', 0)} (other ${f(x.otherCpuPct, '%', 0)}); ${x.blocksWritten} blocks in ${x.getRequests} gets${x.blocksRefused > 0 ? `, ${x.blocksRefused} refused` : ''}`,
      `      telemetry no download: p50 ${ms(b?.p50Us ?? null)} p99 ${ms(b?.p99Us ?? null)} max ${ms(b?.maxUs ?? null)} (${b?.received ?? 0}/${b?.sent ?? 0} msgs; machine ${f(x.baselineMachineCpuPct, '%', 0)}, broker ${f(x.baselineBrokerCpuPct, '%', 0)}); ` +
        `during: p50 ${ms(d?.p50Us ?? null)} p99 ${ms(d?.p99Us ?? null)} max ${ms(d?.maxUs ?? null)} (${d?.received ?? 0}/${d?.sent ?? 0} msgs)${x.controlDuring !== null ? `; control through Mosquitto: p50 ${ms(x.controlBaseline?.p50Us ?? null)} → ${ms(x.controlDuring.p50Us)}, p99 ${ms(x.controlBaseline?.p99Us ?? null)} → ${ms(x.controlDuring.p99Us)}` : ''}${x.error !== null ? `; ERROR ${x.error}` : ''}${x.agentErrors.length > 0 ? `; agent errors: ${x.agentErrors.slice(0, 3).join(' | ')}` : ''}`,
    );
  }
  for (const m of r.mosquitto.runs) {
    const t = m.telemetry;
    out.push(`  Mosquitto #${m.run}: telemetry idle p50 ${ms(t?.p50Us ?? null)} p99 ${ms(t?.p99Us ?? null)} max ${ms(t?.maxUs ?? null)} (${t?.received ?? 0}/${t?.sent ?? 0} msgs; machine ${f(m.machineCpuPct, '%', 0)})${m.error !== null ? `; ERROR ${m.error}` : ''}`);
  }
  process.stdout.write(`${out.join('\n')}\n`);
}
