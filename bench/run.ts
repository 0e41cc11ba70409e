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
 *                          [--limits defaults|raised|off|both|all]
 *   node dist/bench/run.js --cluster [--only 1,3|connect-mtls,…] [--duration 5] [--warmup 1]
 *                          [--broker bastion|both] [--repeat 1] [--limits raised|off|defaults] [--json <file>]
 *   (cluster mode over NATS, 1 worker against 2: cluster-bench.ts)
 *   node dist/bench/run.js --provisioning [--count 200] [--concurrency 25] [--repeat 3] [--json <file>]
 *   (device provisioning from one claim certificate, bastion device simulate: provisioning-bench.ts)
 *   node dist/bench/run.js --ota [--devices 50] [--image-mb 10] [--repeat 3] [--transfer-budget <MiB/s>] [--json <file>]
 *   (a signed image to many devices at once, with telemetry latency during it: ota-bench.ts)
 *   node dist/bench/run.js --console [--runs 10] [--clients 2000]
 *   (the web console in Chromium: bundle size, first page, client listing: console-bench.ts)
 *   node dist/bench/run.js --defender [--devices 300] [--hours 8] [--attacks 20] [--seed N] [--repeat 6]
 *                          [--duration 5] [--warmup 1] [--json <file>]
 *   (behaviour detection end to end through the real broker, and throughput with it on vs off: defender-fleet.ts)
 *   node dist/bench/run.js --fleet [--devices 50000] [--storm-devices 20000] [--only hold|storm] … (fleet-scale.ts)
 */
import { guardRun } from './run-guard.js';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { BrokerProcess, bastionAvailable, LIMITS_MODES, MOSQUITTO_BIN, mosquittoAvailable, type BrokerKind, type LimitsMode } from './brokers.js';
import type { BenchPki } from './certs.js';
import { CLUSTER_ROWS, selectRows } from './cluster-rows.js';
import { DEFENDER_DEFAULTS, DEFENDER_USAGE, parseDefenderOptions, type DefenderOptions } from './defender-options.js';
import { withTimeout } from './fleet.js';
import { waitForQuietMachine } from './host-cpu.js';
import { hostInfo } from './host-info.js';
import { buildTable, figuresOf, printReport, variantLabel, type BenchReport, type RunRecord, type Variant } from './report.js';
import { round } from './round.js';
import type { Details, Scenario, Transport } from './scenario-api.js';
import { SCENARIOS } from './scenarios.js';

const DEFAULT_JSON = fileURLToPath(new URL('../../bench/results/latest.json', import.meta.url));
const DEFAULT_CLUSTER_JSON = fileURLToPath(new URL('../../bench/results/cluster-latest.json', import.meta.url));
const DEFAULT_PROVISIONING_JSON = fileURLToPath(new URL('../../bench/results/provisioning-latest.json', import.meta.url));
const DEFAULT_OTA_JSON = fileURLToPath(new URL('../../bench/results/ota-latest.json', import.meta.url));
const DEFAULT_DEFENDER_JSON = fileURLToPath(new URL('../../bench/results/defender-latest.json', import.meta.url));
/** `--ota` defaults (kept here: ota-bench.ts is imported only when --ota runs). */
const DEFAULT_OTA_DEVICES = 50;
const DEFAULT_OTA_IMAGE_MIB = 10;
const DEFAULT_OTA_REPEAT = 3;
/** `--provisioning`: devices per run, devices in progress at once, runs. */
const DEFAULT_DEVICES = 200;
const DEFAULT_CONCURRENCY = 25;
const DEFAULT_PROVISIONING_REPEAT = 3;
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
  /** Bastion's limits modes; each is a separate Bastion run beside the same Mosquitto run. */
  limits: LimitsMode[];
  transports: Transport[];
  idleConns: number;
  version: 4 | 5;
  repeat: number;
  jsonPath: string;
  /** `--cluster`: the cluster rows (cluster-bench.ts) instead of the scenarios. */
  cluster: boolean;
  /** `--only` as given (the cluster runner resolves it against its rows); null: all. */
  only: string[] | null;
  /** `--provisioning`: device provisioning (provisioning-bench.ts) instead of the scenarios. */
  provisioning: boolean;
  /** `--provisioning`: devices per run (`--count`) and devices in progress at once (`--concurrency`). */
  provisioningDevices: number;
  provisioningConcurrency: number;
  /** `--ota`: image delivery to many devices (ota-bench.ts) instead of the scenarios. */
  ota: boolean;
  otaDevices: number;
  /** `--image-mb`: the image's size in MiB. */
  otaImageMib: number;
  /** `--transfer-budget` in bytes a second (ota.transfer.maxBytesPerSecond); null: the broker's default. */
  otaMaxBytesPerSecond: number | null;
  /** `--defender`: the end-to-end detection simulation and the detection on/off throughput (defender-fleet.ts); null: not this mode. */
  defender: DefenderOptions | null;
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
  --repeat <n>         run every pair n times, alternating brokers, report medians with their spread
                       (default 1; latency runs at least 3 times)
  --limits <m>         Bastion's limits: raised (the default: all on, rates and caps above the load)
                       | defaults (the config's own, which refuse a bench's connection bursts from
                       one address: their own question) | off (limits.enabled false) | both
                       (defaults,off) | all, or a comma list; each mode is its own Bastion run,
                       reported against the same Mosquitto runs
  --json <file>        where to write the JSON report (default bench/results/latest.json)
  --cluster            cluster mode (issue 12): Bastion with a cluster section on a fresh
                       nats-server, serve --workers 1 against --workers 2, Mosquitto and Bastion
                       without a cluster section as references; rows ${CLUSTER_ROWS.map((r) => `${r.n}=${r.id}`).join(' ')} (--only picks
                       among them); --limits one mode (default raised); no --transport, --idle-conns;
                       JSON in bench/results/cluster-latest.json unless --json
  --provisioning       device provisioning (issue 13): a real \`bastion serve\` with its own PKI, one
                       claim certificate, \`bastion device simulate\` --repeat times (default 3) with
                       fresh identities; devices/s, broker CPU per device; no Mosquitto (it has no
                       provisioning); only --count, --concurrency, --repeat, --json apply;
                       JSON in bench/results/provisioning-latest.json unless --json
  --count <n>          --provisioning: devices per run (default ${DEFAULT_DEVICES})
  --concurrency <c>    --provisioning: devices in progress at once (default ${DEFAULT_CONCURRENCY})
  --ota                OTA delivery (issue 14): a real \`bastion serve\` (mTLS, its own PKI), a signed
                       random image released and one job for --devices OtaAgents downloading at once,
                       --repeat runs (default ${DEFAULT_OTA_REPEAT}); MB/s, broker CPU and RSS, and the latency of a
                       1,000 msg/s QoS 1 telemetry pair without and during the downloads, and against
                       Mosquitto (telemetry alone); only --devices, --image-mb, --transfer-budget,
                       --repeat, --json apply; JSON in bench/results/ota-latest.json unless --json
  --devices <n>        --ota: devices (default ${DEFAULT_OTA_DEVICES})
  --image-mb <MiB>     --ota: image size in MiB (default ${DEFAULT_OTA_IMAGE_MIB})
  --transfer-budget <MiB/s>  --ota: the broker's ota.transfer.maxBytesPerSecond (default: its default, 32)
${DEFENDER_USAGE}`;

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
        limits: { type: 'string' },
        json: { type: 'string' },
        cluster: { type: 'boolean' },
        provisioning: { type: 'boolean' },
        count: { type: 'string' },
        concurrency: { type: 'string' },
        ota: { type: 'boolean' },
        devices: { type: 'string' },
        'image-mb': { type: 'string' },
        'transfer-budget': { type: 'string' },
        defender: { type: 'boolean' },
        hours: { type: 'string' },
        attacks: { type: 'string' },
        seed: { type: 'string' },
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
  const cluster = parsed.cluster === true;
  const provisioning = parsed.provisioning === true;
  const ota = parsed.ota === true;
  const defender = parsed.defender === true;
  if (defender) {
    if (cluster || provisioning || ota) fail('--defender, --ota, --provisioning and --cluster are separate modes: one at a time');
    const notHere = (['only', 'broker', 'transport', 'idle-conns', 'mqtt-version', 'limits', 'count', 'concurrency', 'image-mb', 'transfer-budget'] as const).filter((k) => parsed[k] !== undefined);
    if (notHere.length > 0) fail(`--${notHere.join(', --')} ${notHere.length === 1 ? 'does' : 'do'} not apply to --defender (it takes --devices, --hours, --attacks, --seed, --repeat, --duration, --warmup)`);
  } else if (parsed.hours !== undefined || parsed.attacks !== undefined || parsed.seed !== undefined) {
    fail('--hours, --attacks and --seed go with --defender');
  }
  if (ota) {
    if (cluster || provisioning) fail('--ota, --provisioning and --cluster are separate modes: one at a time');
    const notHere = (['only', 'duration', 'warmup', 'broker', 'transport', 'idle-conns', 'mqtt-version', 'limits', 'count', 'concurrency'] as const).filter((k) => parsed[k] !== undefined);
    if (notHere.length > 0) fail(`--${notHere.join(', --')} ${notHere.length === 1 ? 'does' : 'do'} not apply to --ota (it takes --devices, --image-mb, --transfer-budget, --repeat)`);
  } else if ((parsed.devices !== undefined && !defender) || parsed['image-mb'] !== undefined || parsed['transfer-budget'] !== undefined) {
    fail('--devices, --image-mb and --transfer-budget go with --ota (--devices also with --defender)');
  }
  if (provisioning) {
    if (cluster) fail('--provisioning and --cluster are separate modes: one at a time');
    if (parsed.broker === 'mosquitto') fail('--provisioning measures Bastion: Mosquitto has no provisioning');
    const notHere = (['only', 'duration', 'warmup', 'transport', 'idle-conns', 'mqtt-version', 'limits'] as const).filter((k) => parsed[k] !== undefined);
    if (notHere.length > 0) fail(`--${notHere.join(', --')} ${notHere.length === 1 ? 'does' : 'do'} not apply to --provisioning (it runs --count devices per run, --repeat runs)`);
  } else if (parsed.count !== undefined || parsed.concurrency !== undefined) {
    fail('--count and --concurrency go with --provisioning');
  }
  let defenderOpts: DefenderOptions | null = null;
  if (defender) {
    const d = parseDefenderOptions(parsed, numberOption);
    if (typeof d === 'string') fail(d);
    defenderOpts = d;
  }
  const only = parsed.only === undefined ? null : parsed.only.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (cluster) {
    if (parsed.transport !== undefined) fail('--transport does not apply to --cluster (row 1 runs over mTLS, the others over TCP)');
    if (parsed['idle-conns'] !== undefined) fail('--idle-conns does not apply to --cluster');
    if (parsed.broker === 'mosquitto') fail('--cluster measures Bastion: --broker bastion or both');
  }
  let scenarios = SCENARIOS;
  if (parsed.only !== undefined && !cluster) {
    const wanted = only ?? [];
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
  // Cluster runs measure the broker with every limit checked but none biting (see README).
  // The default measures the broker: every limit on, above the offered load (so they cost what they cost and never bite).
  const limitsArg = parsed.limits ?? 'raised';
  const limits: LimitsMode[] =
    limitsArg === 'all' ? [...LIMITS_MODES] : limitsArg === 'both' ? ['defaults', 'off'] : limitsArg.split(',').map((m) => m.trim()).filter((m) => m !== '').map((m) => (m === 'on' ? 'defaults' : m) as LimitsMode);
  const badMode = limits.find((m) => !LIMITS_MODES.includes(m));
  if (badMode !== undefined || limits.length === 0) fail(`--limits: unknown mode ${badMode ?? limitsArg}`);
  if (cluster && new Set(limits).size !== 1) fail('--cluster takes one --limits mode');
  return {
    scenarios,
    limits: [...new Set(limits)],
    durationS: numberOption(parsed.duration, 'duration', 5, 0.5, 60),
    warmupS: numberOption(parsed.warmup, 'warmup', 1, 0, 10),
    brokers: broker === 'both' ? ['bastion', 'mosquitto'] : [broker],
    transports: transport === 'both' ? ['tcp', 'tls'] : [transport],
    idleConns: Math.round(numberOption(parsed['idle-conns'], 'idle-conns', 2000, 1, 10_000)),
    version,
    repeat: Math.round(numberOption(parsed.repeat, 'repeat', provisioning ? DEFAULT_PROVISIONING_REPEAT : ota ? DEFAULT_OTA_REPEAT : defender ? DEFENDER_DEFAULTS.repeat : 1, 1, 9)),
    jsonPath: parsed.json ?? (provisioning ? DEFAULT_PROVISIONING_JSON : ota ? DEFAULT_OTA_JSON : defender ? DEFAULT_DEFENDER_JSON : cluster ? DEFAULT_CLUSTER_JSON : DEFAULT_JSON),
    cluster,
    only,
    provisioning,
    provisioningDevices: Math.round(numberOption(parsed.count, 'count', DEFAULT_DEVICES, 1, 5000)),
    provisioningConcurrency: Math.round(numberOption(parsed.concurrency, 'concurrency', DEFAULT_CONCURRENCY, 1, 500)),
    ota,
    otaDevices: Math.round(numberOption(ota ? parsed.devices : undefined, 'devices', DEFAULT_OTA_DEVICES, 1, 500)),
    otaImageMib: numberOption(parsed['image-mb'], 'image-mb', DEFAULT_OTA_IMAGE_MIB, 0.01, 256),
    // 64 KiB/s to 1 GiB/s: the range the broker's config takes.
    otaMaxBytesPerSecond: parsed['transfer-budget'] === undefined ? null : Math.round(numberOption(parsed['transfer-budget'], 'transfer-budget', 32, 0.0625, 1024) * 1024 * 1024),
    defender: defenderOpts,
  };
}

// ---------------------------------------------------------------- running

async function loadPki(dir: string): Promise<BenchPki> {
  // Imported lazily: the PKI module is Bastion's own and must not stop TCP-only runs.
  const { makeBenchPki } = await import('./certs.js');
  return makeBenchPki(dir);
}

let current: BrokerProcess | null = null;

async function runOne(s: Scenario, transport: Transport, variant: Variant, repeat: number, pki: BenchPki | null, opts: BenchOptions): Promise<RunRecord> {
  const kind = variant.kind;
  const t0 = performance.now();
  const record = (ok: boolean, error: string | null, metrics: Record<string, number> = {}, details: Details = {}, invalid: string | null = null): RunRecord => ({
    scenario: s.id,
    transport,
    broker: kind,
    limits: variant.limits,
    repeat,
    ok,
    error,
    invalid,
    metrics,
    details,
    wallSeconds: round((performance.now() - t0) / 1000, 1) ?? 0,
  });
  let broker: BrokerProcess;
  try {
    const serverPki = pki !== null && s.serverKey === 'rsa-2048' ? { ...pki, serverCert: pki.rsaServerCert, serverKey: pki.rsaServerKey } : pki;
    broker = await BrokerProcess.start({
      kind,
      persistence: s.persistence,
      pki: transport === 'tls' ? serverPki : null,
      ...(variant.limits !== null ? { limits: variant.limits } : {}),
      raiseConnectionLimits: s.raiseConnectionLimits === true,
    });
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
      `${s.id} ${transport} ${variantLabel(variant)}`,
    );
    const rss = broker.rssKb();
    const raised = kind === 'bastion' && variant.limits === 'defaults' && s.raiseConnectionLimits === true;
    return record(true, null, measured.metrics, {
      ...measured.details,
      ...(transport === 'tls' ? { serverGroups: broker.serverGroups } : {}),
      ...(raised ? { connectionLimits: 'per-address limits raised above the load' } : {}),
      brokerRssKbAtEnd: rss,
    }, measured.invalid ?? null);
  } catch (e) {
    return record(false, (e as Error).message);
  } finally {
    current = null;
    await broker.stop();
  }
}

function describe(r: RunRecord, s: Scenario): string {
  if (!r.ok) return `FAILED: ${r.error ?? ''}`;
  return `${r.invalid !== null ? `INVALID (${r.invalid}): ` : ''}${figuresOf(r.metrics, s.metrics)}`;
}

async function main(): Promise<void> {
  // The console bench is a mode of its own with its own two options (console-bench.ts).
  if (process.argv.includes('--console')) {
    const { runConsoleBench } = await import('./console-bench.js');
    const numberAfter = (flag: string, fallback: number): number => {
      const i = process.argv.indexOf(flag);
      return i < 0 ? fallback : Number(process.argv[i + 1]);
    };
    return runConsoleBench({ runs: numberAfter('--runs', 10), clients: numberAfter('--clients', 2000) });
  }
  // Fleet scale (issue 17): a mode with its own options (fleet-scale-options.ts).
  if (process.argv.includes('--fleet')) {
    const { runFleetScaleBench } = await import('./fleet-scale.js');
    return runFleetScaleBench(process.argv.slice(2));
  }
  const opts = parseOptions(process.argv.slice(2));
  if (opts.provisioning) {
    // Imported lazily, as the cluster runner is.
    const { runProvisioningBench } = await import('./provisioning-bench.js');
    return runProvisioningBench(opts);
  }
  if (opts.defender !== null) {
    // Imported lazily: it starts a broker in this process and loads the test fleet model.
    const { runDefenderBench } = await import('./defender-fleet.js');
    return runDefenderBench(opts, opts.defender);
  }
  if (opts.ota) {
    // Imported lazily: it loads the device SDK, which the other modes never need.
    const { runOtaBench } = await import('./ota-bench.js');
    return runOtaBench(opts);
  }
  if (opts.cluster) {
    const rows = selectRows(opts.only);
    if ('unknown' in rows) fail(`unknown cluster row ${rows.unknown.join(', ')}`);
    // Imported lazily: the cluster runner loads the NATS client and src/cluster, which the scenarios never need.
    const { runClusterBench } = await import('./cluster-bench.js');
    return runClusterBench(opts, rows);
  }
  // Which Node measured: the generator and Bastion run on this one (process.execPath).
  process.stderr.write(`bench: Node ${process.version}, OpenSSL ${process.versions.openssl}\n`);
  const watchdog = guardRun('bench', WATCHDOG_MS, () => current?.killNow());

  const skipped: string[] = [];
  const brokers = opts.brokers.filter((b) => {
    const why = b === 'bastion' ? bastionAvailable() : mosquittoAvailable();
    if (why !== null) skipped.push(`${b}: ${why}`);
    return why === null;
  });
  if (brokers.length === 0) fail(`no broker to run (${skipped.join('; ')})`);
  const variants: Variant[] = brokers.flatMap((kind): Variant[] => (kind === 'bastion' ? opts.limits.map((limits) => ({ kind, limits })) : [{ kind, limits: null }]));

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
  const repeatsOf = (s: Scenario): number => Math.max(opts.repeat, s.minRepeat ?? 1);
  const total = opts.scenarios.reduce((n, s) => n + transports.filter((t) => s.tlsOnly !== true || t === 'tls').length * repeatsOf(s), 0) * variants.length;
  let i = 0;
  /** A broker that failed to start once is not tried again (its CLI is not ready). */
  const broken = new Map<BrokerKind, string>();
  let quietBudget = QUIET_BUDGET_MS;
  try {
    for (const s of opts.scenarios) {
      for (const t of transports) {
        if (s.tlsOnly === true && t !== 'tls') continue;
        for (let rep = 1; rep <= repeatsOf(s); rep++) {
          // Alternate which broker goes first, so slow drift on the machine favours neither.
          const order = rep % 2 === 1 ? variants : [...variants].reverse();
          for (const v of order) {
            const b = v.kind;
            i++;
            const known = broken.get(b);
            if (known !== undefined) {
              runs.push({ scenario: s.id, transport: t, broker: b, limits: v.limits, repeat: rep, ok: false, error: known, invalid: null, metrics: {}, details: {}, wallSeconds: 0 });
              continue;
            }
            process.stderr.write(`[${i}/${total}] ${s.id} ${t} ${variantLabel(v)}${repeatsOf(s) > 1 ? ` #${rep}` : ''} … `);
            const quiet = await waitForQuietMachine(QUIET_THRESHOLD_PCT, Math.min(QUIET_MAX_MS, quietBudget));
            quietBudget = Math.max(0, quietBudget - quiet.waitedMs);
            const r = await runOne(s, t, v, rep, pki, opts);
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

  const report: BenchReport = {
    generatedAt: new Date().toISOString(),
    host: hostInfo(brokers.includes('mosquitto') ? MOSQUITTO_BIN : null),
    options: {
      scenarios: opts.scenarios.map((s) => s.id),
      durationS: opts.durationS,
      warmupS: opts.warmupS,
      brokers,
      limits: opts.limits,
      transports,
      idleConns: opts.idleConns,
      mqttVersion: opts.version,
      repeat: opts.repeat,
    },
    skipped,
    table: buildTable(runs, opts.scenarios, transports, brokers.includes('bastion') ? opts.limits : []),
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
