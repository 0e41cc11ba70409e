/**
 * `npm run bench -- --provisioning` (issue 13, "Measured"): how fast one claim certificate
 * provisions a fleet. A real `bastion serve` (child process) on a fresh data directory
 * whose PKI the CLI made as an operator would (`ca init`, `ca intermediate`, `cert issue
 * --profile server`), a claim from `cert issue --profile claim`, then `bastion device
 * simulate --count N --concurrency C` (a child process) `--repeat` times, each run with
 * fresh identities (serial numbers `R<run>-<i>`). Owns: that setup, the runs' deadlines and
 * the watchdog, the figures (devices/s from simulate's own summary, broker CPU per device
 * from /proc, the simulate process's CPU, the machine's load), and the report and its JSON.
 * Must not: provision anything itself (everything goes through the CLI and MQTT), or leave
 * a process or directory behind.
 *
 * There is no Mosquitto run: Mosquitto has no provisioning.
 */
import type { SimulationSummary as Summary } from '../src/cli/device.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { stringify } from 'yaml';
import type { input } from 'zod';
import type { configSchema } from '../src/core/config.js';
import { BASTION_MAIN, bastionAvailable, BrokerProcess, freePort } from './brokers.js';
import { hostCpu, waitForQuietMachine, type HostCpu } from './host-cpu.js';
import { hostInfo, type HostInfo } from './host-info.js';
import { median } from './report.js';
import { round } from './round.js';
import { guardRun } from './run-guard.js';
import type { BenchOptions } from './run.js';

const TEMPLATE = 'bench';
/** One CLI step of the setup (ca init, cert issue…). */
const SETUP_STEP_MS = 60_000;
/** A simulate run: this much plus RUN_MS_PER_DEVICE per device. */
const RUN_BASE_MS = 60_000;
const RUN_MS_PER_DEVICE = 500;
const QUIET_THRESHOLD_PCT = 40;
const QUIET_MAX_MS = 5_000;
const QUIET_BUDGET_MS = 20_000;

/** Printed by the simulate child at exit (preloaded with --import): its own CPU, all threads. */
const CPU_MARKER = 'bench-simulate-cpu-us ';
const CPU_PRELOAD = `data:text/javascript,process.on('exit',()=>{const u=process.cpuUsage();process.stderr.write(${JSON.stringify(CPU_MARKER)}+(u.user+u.system)+'\\n')})`;

type BastionConfigInput = input<typeof configSchema>;

export interface ProvisioningRun {
  run: number;
  ok: boolean;
  error: string | null;
  requested: number;
  provisioned: number;
  published: number;
  failed: number;
  /** simulate's `failed` groups (stage, reason, count). */
  reasons: Array<{ stage: string; reason: string; count: number }>;
  /** simulate's own clock: first device started to last device done. */
  seconds: number | null;
  devicesPerSecond: number | null;
  /** The simulate process from spawn to exit (Node start and key generation included). */
  wallSeconds: number;
  brokerCpuMs: number | null;
  brokerCpuMsPerDevice: number | null;
  /** Broker CPU over the process's wall time, % of one core. */
  brokerCpuPct: number | null;
  simulateCpuMs: number | null;
  simulateCpuMsPerDevice: number | null;
  /** The whole machine's busy CPU over the run, % of one core (200 = both of two cores). */
  machineCpuPct: number | null;
  brokerRssKbAtEnd: number | null;
  machineLoadBeforePct: number | null;
  waitedForQuietMs: number;
}

export interface ProvisioningReport {
  generatedAt: string;
  host: HostInfo;
  command: string;
  options: { devices: number; concurrency: number; repeat: number; template: string; keyType: string };
  mosquitto: string;
  setupSeconds: number;
  summary: {
    runsOk: number;
    devicesPerSecond: { median: number | null; min: number | null; max: number | null };
    brokerCpuMsPerDevice: { median: number | null; min: number | null; max: number | null };
    simulateCpuMsPerDevice: { median: number | null; min: number | null; max: number | null };
  };
  runs: ProvisioningRun[];
  totalSeconds: number;
}

interface Proc {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

const children = new Set<ChildProcess>();
let broker: BrokerProcess | null = null;

function killNow(): void {
  for (const c of children) c.kill('SIGKILL');
  broker?.killNow();
}

/** `node <args>` with a deadline (SIGKILL past it), output collected. */
function node(args: string[], timeoutMs: number, env: NodeJS.ProcessEnv = process.env): Promise<Proc> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      children.delete(child);
      reject(e);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** `bastion <args>`; throws with its output unless it exits 0. */
async function bastion(args: string[]): Promise<string> {
  // An empty passphrase: the bench root key is not encrypted (and no prompt can block).
  const r = await node([BASTION_MAIN, ...args], SETUP_STEP_MS, { ...process.env, BASTION_ROOT_KEY_PASSPHRASE: '' });
  if (r.code !== 0) throw new Error(`bastion ${args.slice(0, 3).join(' ')} failed (${r.signal ?? r.code}): ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ')}`);
  return r.stdout;
}

function field(out: string, name: string): string {
  const m = new RegExp(`^\\s+${name}:\\s+(.+)$`, 'm').exec(out);
  if (m === null) throw new Error(`no "${name}" in: ${out}`);
  return m[1]!.trim();
}

function brokerConfig(dataDir: string, port: number): BastionConfigInput {
  const pki = join(dataDir, 'pki');
  return {
    dataDir,
    listeners: [
      {
        name: 'devices',
        protocol: 'mqtts',
        host: '127.0.0.1',
        port,
        // Claim and device certificates both verified against the built-in PKI (revocation: auto, its CRLs).
        tls: { cert: join(pki, 'issued', 'localhost.crt'), key: join(pki, 'issued', 'localhost.key'), ca: join(pki, 'ca-chain.crt'), clientCerts: 'required' },
        auth: { providers: ['certificate'] },
      },
    ],
    // N devices × 2 connections from 127.0.0.1 in seconds: a real fleet comes from many addresses.
    limits: { connections: { perIpMax: 100_000, perIpRate: { perSecond: 100_000, burst: 100_000 } } },
    log: { level: 'warn' },
    persistence: { enabled: false },
    authz: { policy: 'rules', roles: { device: { rules: [{ effect: 'allow', action: 'all', topic: 'devices/${cert.cn}/#' }] } }, bindings: [] },
    provisioning: {
      // Every device makes 2 requests from the one claim: not Throttled.
      ratePerMinute: 100_000,
      templates: {
        [TEMPLATE]: {
          commonName: 'bench-${serialNumber}',
          roles: ['device'],
          days: 30,
          parameters: { serialNumber: { pattern: '[A-Z0-9-]{1,32}' } },
        },
      },
    },
  };
}

function spread(values: number[]): { median: number | null; min: number | null; max: number | null } {
  if (values.length === 0) return { median: null, min: null, max: null };
  return { median: median(values), min: Math.min(...values), max: Math.max(...values) };
}

function busyPct(a: HostCpu | null, b: HostCpu | null): number | null {
  if (a === null || b === null || b.total <= a.total) return null;
  return (100 * os.availableParallelism() * (b.busy - a.busy)) / (b.total - a.total);
}


async function runOnce(n: number, opts: BenchOptions, url: string, caFile: string, claim: { cert: string; key: string }, b: BrokerProcess): Promise<Omit<ProvisioningRun, 'machineLoadBeforePct' | 'waitedForQuietMs'>> {
  const devices = opts.provisioningDevices;
  const cpu0 = b.cpuMs();
  const host0 = hostCpu();
  const t0 = performance.now();
  const r = await node(
    ['--import', CPU_PRELOAD, BASTION_MAIN, 'device', 'simulate', '--url', url, '--ca', caFile, '--template', TEMPLATE, '--claim-cert', claim.cert, '--claim-key', claim.key,
      '--count', String(devices), '--concurrency', String(opts.provisioningConcurrency), '--parameter', `serialNumber=R${n}-{i}`, '--json'],
    RUN_BASE_MS + devices * RUN_MS_PER_DEVICE,
  );
  const wallSeconds = (performance.now() - t0) / 1000;
  const cpu1 = b.cpuMs();
  const host1 = hostCpu();
  const brokerCpuMs = cpu0 !== null && cpu1 !== null ? cpu1 - cpu0 : null;
  const cpuLine = r.stderr.split('\n').find((l) => l.startsWith(CPU_MARKER));
  const simulateCpuMs = cpuLine !== undefined ? Number(cpuLine.slice(CPU_MARKER.length)) / 1000 : null;
  let summary: Summary | null = null;
  try {
    summary = JSON.parse(r.stdout) as Summary;
  } catch {
    // Reported below with the process's own output.
  }
  const provisioned = summary?.provisioned ?? 0;
  const perDevice = (ms: number | null): number | null => (ms !== null && provisioned > 0 ? round(ms / provisioned, 2) : null);
  const stderr = r.stderr.split('\n').filter((l) => l !== '' && !l.startsWith(CPU_MARKER)).slice(-3).join(' | ');
  const error =
    summary === null
      ? `simulate ended ${r.signal ?? `with code ${r.code ?? '?'}`} without a summary${stderr !== '' ? `: ${stderr}` : ''}`
      : summary.failed > 0
        ? `${summary.failed} of ${devices} devices failed: ${summary.reasons.map((x) => `${x.count} at ${x.stage}: ${x.reason}`).join('; ')}`
        : null;
  return {
    run: n,
    ok: summary !== null && summary.failed === 0 && summary.provisioned === devices,
    error,
    requested: devices,
    provisioned,
    published: summary?.published ?? 0,
    failed: summary?.failed ?? devices,
    reasons: (summary?.reasons ?? []).map((x) => ({ stage: x.stage, reason: x.reason, count: x.count })),
    seconds: round(summary?.seconds ?? null, 2),
    devicesPerSecond: round(summary?.devicesPerSecond ?? null, 1),
    wallSeconds: round(wallSeconds, 2) ?? 0,
    brokerCpuMs: round(brokerCpuMs, 0),
    brokerCpuMsPerDevice: perDevice(brokerCpuMs),
    brokerCpuPct: round(brokerCpuMs !== null ? brokerCpuMs / 10 / wallSeconds : null, 0),
    simulateCpuMs: round(simulateCpuMs, 0),
    simulateCpuMsPerDevice: perDevice(simulateCpuMs),
    machineCpuPct: round(busyPct(host0, host1), 0),
    brokerRssKbAtEnd: b.rssKb(),
  };
}

const fmt = (v: number | null, unit = ''): string => (v === null ? '—' : `${v}${unit}`);
const fmtSpread = (s: { median: number | null; min: number | null; max: number | null }, unit = ''): string =>
  s.median === null ? '—' : `${round(s.median, 2)}${unit} (min–max ${s.min}–${s.max}${unit})`;

function printReport(rep: ProvisioningReport): void {
  const o = rep.options;
  const out = [
    '',
    `Provisioning (issue 13): ${o.devices} devices per run from one claim certificate, ${o.concurrency} at a time, ${o.repeat} run(s), fresh identities each run`,
    `Node ${rep.host.node}, OpenSSL ${rep.host.openssl}, ${rep.host.cpus} × ${rep.host.cpuModel}; setup (PKI, broker start, claim) ${rep.setupSeconds} s`,
    `  devices/s               ${fmtSpread(rep.summary.devicesPerSecond)}   [${rep.summary.runsOk}/${rep.runs.length} runs ok]`,
    `  broker CPU per device   ${fmtSpread(rep.summary.brokerCpuMsPerDevice, ' ms')}`,
    `  simulate CPU per device ${fmtSpread(rep.summary.simulateCpuMsPerDevice, ' ms')}`,
    `  Mosquitto: ${rep.mosquitto}`,
    '',
    'per run:',
  ];
  for (const r of rep.runs) {
    out.push(
      `  #${r.run}: ${r.provisioned}/${r.requested} provisioned, ${r.published} published, ${fmt(r.devicesPerSecond)} devices/s in ${fmt(r.seconds, ' s')} (process ${r.wallSeconds} s); ` +
        `broker ${fmt(r.brokerCpuMsPerDevice, ' ms')}/device (${fmt(r.brokerCpuPct, '%')} of a core), simulate ${fmt(r.simulateCpuMsPerDevice, ' ms')}/device, machine ${fmt(r.machineCpuPct, '%')}, ` +
        `broker RSS ${fmt(r.brokerRssKbAtEnd, ' KB')}, load before ${fmt(r.machineLoadBeforePct, '%')}${r.error !== null ? `; ${r.error}` : ''}`,
    );
  }
  process.stdout.write(`${out.join('\n')}\n`);
}

/** Runs the provisioning bench and exits the process (0 when every run provisioned every device). */
export async function runProvisioningBench(opts: BenchOptions): Promise<never> {
  const started = performance.now();
  const missing = bastionAvailable();
  if (missing !== null) {
    process.stderr.write(`bench --provisioning: ${missing}\n`);
    process.exit(2);
  }
  const devices = opts.provisioningDevices;
  const runMs = RUN_BASE_MS + devices * RUN_MS_PER_DEVICE;
  process.stderr.write(`bench --provisioning: Node ${process.version}, OpenSSL ${process.versions.openssl}; ${devices} devices × ${opts.repeat} run(s), concurrency ${opts.provisioningConcurrency}\n`);
  const watchdog = guardRun('bench --provisioning', 5 * SETUP_STEP_MS + opts.repeat * (runMs + QUIET_MAX_MS), killNow);

  const work = await mkdtemp(join(os.tmpdir(), 'bench-provisioning-'));
  const runs: ProvisioningRun[] = [];
  let setupSeconds = 0;
  try {
    const dataDir = join(work, 'data');
    process.stderr.write('setup: ca init, ca intermediate, cert issue --profile server … ');
    await bastion(['ca', 'init', '--data-dir', dataDir, '--cn', 'Bastion Bench Root CA']);
    await bastion(['ca', 'intermediate', '--data-dir', dataDir, '--cn', 'Bastion Bench Issuing CA']);
    await bastion(['cert', 'issue', '--data-dir', dataDir, '--profile', 'server', '--cn', 'localhost', '--san', 'DNS:localhost,IP:127.0.0.1']);
    const port = await freePort();
    const configFile = join(work, 'bastion.yaml');
    await writeFile(configFile, stringify(brokerConfig(dataDir, port)), { mode: 0o600 });
    process.stderr.write('serve … ');
    broker = await BrokerProcess.start({ kind: 'bastion', persistence: false, pki: null, configFile: { path: configFile, port } });
    process.stderr.write('claim … ');
    const claimOut = await bastion(['cert', 'issue', '--profile', 'claim', '--template', TEMPLATE, '--out', join(work, 'claim'), '-c', configFile]);
    const claim = { cert: field(claimOut, 'certificate'), key: field(claimOut, 'key') };
    setupSeconds = round((performance.now() - started) / 1000, 1) ?? 0;
    process.stderr.write(`${setupSeconds} s\n`);
    const url = `mqtts://127.0.0.1:${port}`;
    const caFile = join(dataDir, 'pki', 'root.crt');
    let quietBudget = QUIET_BUDGET_MS;
    for (let n = 1; n <= opts.repeat; n++) {
      process.stderr.write(`[${n}/${opts.repeat}] ${devices} devices, concurrency ${opts.provisioningConcurrency} … `);
      const quiet = await waitForQuietMachine(QUIET_THRESHOLD_PCT, Math.min(QUIET_MAX_MS, quietBudget));
      quietBudget = Math.max(0, quietBudget - quiet.waitedMs);
      if (!broker.alive) throw new Error(`the broker is gone: ${broker.log()}`);
      const r = { ...(await runOnce(n, opts, url, caFile, claim, broker)), machineLoadBeforePct: quiet.loadPct, waitedForQuietMs: quiet.waitedMs };
      runs.push(r);
      process.stderr.write(`${fmt(r.devicesPerSecond)} devices/s, broker ${fmt(r.brokerCpuMsPerDevice, ' ms')}/device${r.error !== null ? ` (${r.error})` : ''}\n`);
    }
  } catch (e) {
    process.stderr.write(`\nbench --provisioning: ${(e as Error).message}\n`);
  } finally {
    await broker?.stop();
    broker = null;
    await rm(work, { recursive: true, force: true });
  }

  const ok = runs.filter((r) => r.ok);
  const report: ProvisioningReport = {
    generatedAt: new Date().toISOString(),
    host: hostInfo(null),
    command: `node dist/bench/run.js ${process.argv.slice(2).join(' ')}`,
    options: { devices, concurrency: opts.provisioningConcurrency, repeat: opts.repeat, template: TEMPLATE, keyType: 'ec-p256 (the SDK default)' },
    mosquitto: 'not run: Mosquitto has no provisioning (no claim certificates, no CSR signing, no templates), so there is no equivalent to compare',
    setupSeconds,
    summary: {
      runsOk: ok.length,
      devicesPerSecond: spread(ok.flatMap((r) => (r.devicesPerSecond !== null ? [r.devicesPerSecond] : []))),
      brokerCpuMsPerDevice: spread(ok.flatMap((r) => (r.brokerCpuMsPerDevice !== null ? [r.brokerCpuMsPerDevice] : []))),
      simulateCpuMsPerDevice: spread(ok.flatMap((r) => (r.simulateCpuMsPerDevice !== null ? [r.simulateCpuMsPerDevice] : []))),
    },
    runs,
    totalSeconds: round((performance.now() - started) / 1000, 1) ?? 0,
  };
  printReport(report);
  await mkdir(dirname(opts.jsonPath), { recursive: true });
  await writeFile(opts.jsonPath, `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(`\nJSON: ${opts.jsonPath}\n`);
  clearTimeout(watchdog);
  process.exit(runs.length === opts.repeat && ok.length === runs.length ? 0 : 1);
}
