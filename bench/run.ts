/**
 * `npm run bench`: Bastion side by side with Mosquitto on the same loads, in one run.
 * Owns: options, the order of runs (each scenario × transport × broker on a fresh broker
 * process), hard deadlines, and the report (a table on stdout, JSON in
 * bench/results/latest.json). Must not: run without a bound — every run has a deadline
 * and the whole bench a watchdog.
 *
 *   node dist/bench/run.js [--only qos0-fanin,latency|1,4] [--duration 5] [--warmup 1]
 *                          [--broker bastion|mosquitto|both] [--transport tcp|tls|both]
 *                          [--idle-conns 2000] [--mqtt-version 4|5] [--repeat 1] [--json <file>]
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { BrokerProcess, bastionAvailable, mosquittoAvailable, type BrokerKind } from './brokers.js';
import type { BenchPki } from './certs.js';
import { withTimeout } from './fleet.js';
import { waitForQuietMachine } from './host-cpu.js';
import { round } from './round.js';
import type { Details, Scenario, Transport } from './scenario-api.js';
import { SCENARIOS } from './scenarios.js';

const DEFAULT_JSON = fileURLToPath(new URL('../../bench/results/latest.json', import.meta.url));
/** Setup and teardown allowance per run, on top of warm-up + duration. */
const RUN_SLACK_MS = 90_000;
/** Nothing about this bench may take longer than this. */
const WATCHDOG_MS = 15 * 60_000;
/** Before each run, wait (≤ QUIET_MAX_MS, ≤ QUIET_BUDGET_MS in all) while other work uses more than this much of a core. */
const QUIET_THRESHOLD_PCT = 40;
const QUIET_MAX_MS = 5_000;
const QUIET_BUDGET_MS = 40_000;

export interface BenchOptions {
  scenarios: Scenario[];
  durationS: number;
  warmupS: number;
  brokers: BrokerKind[];
  transports: Transport[];
  idleConns: number;
  version: 4 | 5;
  repeat: number;
  jsonPath: string;
}

export interface RunRecord {
  scenario: string;
  transport: Transport;
  broker: BrokerKind;
  /** 1-based repetition (see --repeat). */
  repeat: number;
  ok: boolean;
  error: string | null;
  metrics: Record<string, number>;
  details: Details;
  wallSeconds: number;
}

export interface TableRow {
  scenario: string;
  metric: string;
  unit: string;
  lowerIsBetter: boolean;
  transport: Transport;
  /** Median over the repetitions that succeeded. */
  bastion: number | null;
  mosquitto: number | null;
  /** Bastion / Mosquitto. */
  ratio: number | null;
}

export interface BenchReport {
  generatedAt: string;
  host: { cpus: number; cpuModel: string; node: string; platform: string; mosquitto: string | null };
  options: { scenarios: string[]; durationS: number; warmupS: number; brokers: BrokerKind[]; transports: Transport[]; idleConns: number; mqttVersion: 4 | 5; repeat: number };
  skipped: string[];
  table: TableRow[];
  runs: RunRecord[];
}

const USAGE = `usage: npm run bench -- [options]
  --only <list>        scenarios by id or number, comma-separated (default: all)
                       ${SCENARIOS.map((s) => `${s.n}=${s.id}`).join(' ')}
  --duration <s>       measured seconds per run (default 5)
  --warmup <s>         warm-up seconds per run (default 1)
  --broker <b>         bastion | mosquitto | both (default both)
  --transport <t>      tcp | tls | both (default both)
  --idle-conns <K>     connections held in idle-memory (default 2000)
  --mqtt-version <v>   4 (3.1.1) | 5 (default 4)
  --repeat <n>         run every pair n times, alternating brokers, report medians (default 1)
  --json <file>        where to write the JSON report (default bench/results/latest.json)`;

function fail(message: string): never {
  process.stderr.write(`bench: ${message}\n${USAGE}\n`);
  process.exit(2);
}

function numberOption(value: string | undefined, name: string, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n < min || n > max) fail(`--${name} must be a number from ${min} to ${max}`);
  return n;
}

export function parseOptions(argv: string[]): BenchOptions {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        only: { type: 'string' },
        duration: { type: 'string' },
        warmup: { type: 'string' },
        broker: { type: 'string' },
        transport: { type: 'string' },
        'idle-conns': { type: 'string' },
        'mqtt-version': { type: 'string' },
        repeat: { type: 'string' },
        json: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: false,
    }).values;
  } catch (e) {
    fail((e as Error).message);
  }
  if (parsed.help === true) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  let scenarios = SCENARIOS;
  if (parsed.only !== undefined) {
    const wanted = parsed.only.split(',').map((s) => s.trim()).filter((s) => s !== '');
    scenarios = SCENARIOS.filter((s) => wanted.includes(s.id) || wanted.includes(String(s.n)));
    const unknown = wanted.filter((w) => !SCENARIOS.some((s) => s.id === w || String(s.n) === w));
    if (unknown.length > 0 || scenarios.length === 0) fail(`unknown scenario ${unknown.join(', ') || parsed.only}`);
  }
  const broker = parsed.broker ?? 'both';
  if (broker !== 'bastion' && broker !== 'mosquitto' && broker !== 'both') fail('--broker must be bastion, mosquitto or both');
  const transport = parsed.transport ?? 'both';
  if (transport !== 'tcp' && transport !== 'tls' && transport !== 'both') fail('--transport must be tcp, tls or both');
  const version = numberOption(parsed['mqtt-version'], 'mqtt-version', 4, 4, 5);
  if (version !== 4 && version !== 5) fail('--mqtt-version must be 4 or 5');
  return {
    scenarios,
    durationS: numberOption(parsed.duration, 'duration', 5, 0.5, 60),
    warmupS: numberOption(parsed.warmup, 'warmup', 1, 0, 10),
    brokers: broker === 'both' ? ['bastion', 'mosquitto'] : [broker],
    transports: transport === 'both' ? ['tcp', 'tls'] : [transport],
    idleConns: Math.round(numberOption(parsed['idle-conns'], 'idle-conns', 2000, 1, 10_000)),
    version,
    repeat: Math.round(numberOption(parsed.repeat, 'repeat', 1, 1, 9)),
    jsonPath: parsed.json ?? DEFAULT_JSON,
  };
}

// ---------------------------------------------------------------- formatting

function fmt(v: number | null, unit: string): string {
  if (v === null) return '—';
  if (unit === 'KB/conn') return v.toFixed(1);
  if (unit === 'ms') return v.toFixed(2);
  return Math.round(v).toLocaleString('en-US');
}

function fmtRatio(r: number | null): string {
  return r === null ? '—' : `${r.toFixed(2)}×`;
}

function renderTable(headers: string[], rows: string[][], alignRight: boolean[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => (alignRight[i] === true ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ');
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

function median(values: number[]): number | null {
  if (values.length === 0) return null;
  const v = [...values].sort((a, b) => a - b);
  const mid = Math.floor(v.length / 2);
  return v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

function buildTable(runs: RunRecord[], opts: BenchOptions): TableRow[] {
  const rows: TableRow[] = [];
  for (const s of opts.scenarios) {
    for (const m of s.metrics) {
      for (const t of opts.transports) {
        const value = (b: BrokerKind): number | null =>
          median(runs.filter((x) => x.scenario === s.id && x.transport === t && x.broker === b && x.ok).flatMap((x) => (x.metrics[m.key] === undefined ? [] : [x.metrics[m.key]!])));
        const bastion = value('bastion');
        const mosquitto = value('mosquitto');
        if (!runs.some((x) => x.scenario === s.id && x.transport === t)) continue;
        rows.push({
          scenario: `${s.n} ${s.title}: ${m.label}`,
          metric: m.key,
          unit: m.unit,
          lowerIsBetter: m.lowerIsBetter,
          transport: t,
          bastion: bastion === null ? null : round(bastion, 2),
          mosquitto: mosquitto === null ? null : round(mosquitto, 2),
          ratio: bastion !== null && mosquitto !== null && mosquitto > 0 ? round(bastion / mosquitto, 3) : null,
        });
      }
    }
  }
  return rows;
}

function printReport(report: BenchReport): void {
  const out: string[] = [];
  out.push('');
  out.push(
    renderTable(
      ['scenario', 'unit', 'transport', 'Bastion', 'Mosquitto', 'Bastion/Mosquitto'],
      report.table.map((r) => [r.scenario, r.unit + (r.lowerIsBetter ? ' (lower is better)' : ''), r.transport === 'tls' ? 'mTLS' : 'TCP', fmt(r.bastion, r.unit), fmt(r.mosquitto, r.unit), fmtRatio(r.ratio)]),
      [false, false, false, true, true, true],
    ),
  );
  out.push('');
  out.push('details (CPU in % of one core; other = used by neither broker nor generator: uncharged kernel loopback work and other processes on the machine):');
  for (const r of report.runs) {
    const head = `  ${r.scenario} ${r.transport} ${r.broker}${r.repeat > 1 || report.options.repeat > 1 ? ` #${r.repeat}` : ''}:`;
    if (!r.ok) {
      out.push(`${head} FAILED ${r.error ?? ''}`);
      continue;
    }
    const d = Object.entries(r.details)
      .filter(([, v]) => v !== null)
      .map(([k, v]) => `${k}=${typeof v === 'number' ? v : JSON.stringify(v)}`)
      .join(' ');
    out.push(`${head} ${d}`);
  }
  for (const s of report.skipped) out.push(`  skipped: ${s}`);
  process.stdout.write(`${out.join('\n')}\n`);
}

// ---------------------------------------------------------------- running

async function loadPki(dir: string): Promise<BenchPki> {
  // Imported lazily: the PKI module is Bastion's own and must not stop TCP-only runs.
  const { makeBenchPki } = await import('./certs.js');
  return makeBenchPki(dir);
}

async function mosquittoVersion(): Promise<string | null> {
  try {
    const { spawnSync } = await import('node:child_process');
    const r = spawnSync('/usr/sbin/mosquitto', ['-h'], { encoding: 'utf8', timeout: 5000 });
    return /mosquitto version (\S+)/.exec(`${r.stdout}${r.stderr}`)?.[1] ?? null;
  } catch {
    return null;
  }
}

let current: BrokerProcess | null = null;

async function runOne(s: Scenario, transport: Transport, kind: BrokerKind, repeat: number, pki: BenchPki | null, opts: BenchOptions): Promise<RunRecord> {
  const t0 = performance.now();
  const record = (ok: boolean, error: string | null, metrics: Record<string, number> = {}, details: Details = {}): RunRecord => ({
    scenario: s.id,
    transport,
    broker: kind,
    repeat,
    ok,
    error,
    metrics,
    details,
    wallSeconds: round((performance.now() - t0) / 1000, 1) ?? 0,
  });
  let broker: BrokerProcess;
  try {
    const serverPki = pki !== null && s.serverKey === 'rsa-2048' ? { ...pki, serverCert: pki.rsaServerCert, serverKey: pki.rsaServerKey } : pki;
    broker = await BrokerProcess.start({ kind, persistence: s.persistence, pki: transport === 'tls' ? serverPki : null });
  } catch (e) {
    return record(false, `broker did not start: ${(e as Error).message}`);
  }
  current = broker;
  try {
    const port = transport === 'tls' ? broker.tlsPort : broker.tcpPort;
    if (port === null) throw new Error('no TLS listener');
    const measured = await withTimeout(
      s.run({
        broker,
        transport,
        target: { host: '127.0.0.1', port, tls: transport === 'tls' && pki !== null ? pki.client : null },
        version: opts.version,
        warmupMs: opts.warmupS * 1000,
        durationMs: opts.durationS * 1000,
        idleConns: opts.idleConns,
      }),
      (opts.warmupS + opts.durationS) * 1000 + RUN_SLACK_MS,
      `${s.id} ${transport} ${kind}`,
    );
    const rss = broker.rssKb();
    return record(true, null, measured.metrics, { ...measured.details, brokerRssKbAtEnd: rss });
  } catch (e) {
    return record(false, (e as Error).message);
  } finally {
    current = null;
    await broker.stop();
  }
}

function describe(r: RunRecord, s: Scenario): string {
  if (!r.ok) return `FAILED: ${r.error ?? ''}`;
  return s.metrics.map((m) => `${m.label} ${fmt(r.metrics[m.key] ?? null, m.unit)} ${m.unit}`).join(', ');
}

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  const watchdog = setTimeout(() => {
    process.stderr.write(`bench: watchdog: still running after ${WATCHDOG_MS / 60000} minutes, giving up\n`);
    current?.killNow();
    process.exit(3);
  }, WATCHDOG_MS);
  const onSignal = (): void => {
    current?.killNow();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  // Whatever ends this process, the broker under test must not outlive it.
  process.once('exit', () => current?.killNow());

  const skipped: string[] = [];
  const brokers = opts.brokers.filter((b) => {
    const why = b === 'bastion' ? bastionAvailable() : mosquittoAvailable();
    if (why !== null) skipped.push(`${b}: ${why}`);
    return why === null;
  });
  if (brokers.length === 0) fail(`no broker to run (${skipped.join('; ')})`);

  const workDir = await mkdtemp(join(os.tmpdir(), 'bench-pki-'));
  let pki: BenchPki | null = null;
  let transports = opts.transports;
  if (transports.includes('tls')) {
    try {
      pki = await loadPki(workDir);
    } catch (e) {
      skipped.push(`mTLS runs: no certificates from src/pki (${(e as Error).message})`);
      transports = transports.filter((t) => t !== 'tls');
    }
  }

  const runs: RunRecord[] = [];
  const total = opts.scenarios.reduce((n, s) => n + transports.filter((t) => s.tlsOnly !== true || t === 'tls').length, 0) * brokers.length * opts.repeat;
  let i = 0;
  /** A broker that failed to start once is not tried again (its CLI is not ready). */
  const broken = new Map<BrokerKind, string>();
  let quietBudget = QUIET_BUDGET_MS;
  try {
    for (const s of opts.scenarios) {
      for (const t of transports) {
        if (s.tlsOnly === true && t !== 'tls') continue;
        for (let rep = 1; rep <= opts.repeat; rep++) {
          // Alternate which broker goes first, so slow drift on the machine favours neither.
          const order = rep % 2 === 1 ? brokers : [...brokers].reverse();
          for (const b of order) {
            i++;
            const known = broken.get(b);
            if (known !== undefined) {
              runs.push({ scenario: s.id, transport: t, broker: b, repeat: rep, ok: false, error: known, metrics: {}, details: {}, wallSeconds: 0 });
              continue;
            }
            process.stderr.write(`[${i}/${total}] ${s.id} ${t} ${b}${opts.repeat > 1 ? ` #${rep}` : ''} … `);
            const quiet = await waitForQuietMachine(QUIET_THRESHOLD_PCT, Math.min(QUIET_MAX_MS, quietBudget));
            quietBudget = Math.max(0, quietBudget - quiet.waitedMs);
            const r = await runOne(s, t, b, rep, pki, opts);
            r.details = { ...r.details, machineLoadBeforePct: quiet.loadPct, waitedForQuietMs: quiet.waitedMs };
            process.stderr.write(`${describe(r, s)} (${r.wallSeconds} s)\n`);
            if (!r.ok && r.error?.startsWith('broker did not start') === true) broken.set(b, `not run: ${r.error}`);
            runs.push(r);
          }
        }
      }
    }
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }

  const cpus = os.cpus();
  const report: BenchReport = {
    generatedAt: new Date().toISOString(),
    host: { cpus: cpus.length, cpuModel: cpus[0]?.model ?? 'unknown', node: process.version, platform: `${os.platform()} ${os.release()}`, mosquitto: brokers.includes('mosquitto') ? await mosquittoVersion() : null },
    options: {
      scenarios: opts.scenarios.map((s) => s.id),
      durationS: opts.durationS,
      warmupS: opts.warmupS,
      brokers,
      transports,
      idleConns: opts.idleConns,
      mqttVersion: opts.version,
      repeat: opts.repeat,
    },
    skipped,
    table: buildTable(runs, { ...opts, transports }),
    runs,
  };
  printReport(report);
  await mkdir(dirname(opts.jsonPath), { recursive: true });
  await writeFile(opts.jsonPath, `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(`\nJSON: ${opts.jsonPath}\n`);
  clearTimeout(watchdog);
  // Sockets of terminated workers or timers of a failed run must not keep the process up.
  process.exit(runs.some((r) => r.ok) ? 0 : 1);
}

main().catch((e: unknown) => {
  current?.killNow();
  process.stderr.write(`bench: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
