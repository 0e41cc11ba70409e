/**
 * `npm run bench -- --ota` (issue 14, "Done when"): the delivery of a signed image (10 MiB)
 * to 50 devices at once, what it costs the broker, and what it costs concurrent telemetry.
 * A real `bastion serve` (child process) with an mTLS listener on a data directory whose
 * PKI, firmware keys and releases the CLI made (ota-setup.ts); 50 OtaAgents on
 * BastionDevices in this process (ota-fleet.ts); a QoS 1 telemetry pair at a fixed rate in
 * a worker thread (ota-telemetry.ts). Each run: a baseline window of telemetry with no
 * download, then `bastion ota job create --clients <all 50>` and the wait until every device
 * installed the image and its SUCCEEDED report was accepted, with the broker's CPU (its
 * process tree, /proc) and RSS (sampled) over it, and the telemetry's latency over the
 * downloads. Mosquitto (same certificates, mTLS) runs beside it with a second telemetry
 * pair, measured over the same windows: the control, what the machine's load alone does to
 * telemetry; once Bastion is stopped, that pair alone gives Mosquitto's idle latency.
 * Owns: that sequence, its deadlines and watchdog, the figures and the JSON report.
 * Must not: leave a process or directory behind, or run anything off loopback.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { BrokerProcess, bastionAvailable, freePort, MOSQUITTO_BIN, mosquittoAvailable } from './brokers.js';
import type { BenchPki } from './certs.js';
import { hostCpu, waitForQuietMachine, type HostCpu } from './host-cpu.js';
import { hostInfo } from './host-info.js';
import { OtaFleet, type JobOutcome } from './ota-fleet.js';
import { printOtaReport, ratio, spread, type MosquittoRun, type OtaReport, type OtaRun } from './ota-report.js';
import { bastionCli, CLASS_ID, killSetupChildren, makeOtaWorld, TELEMETRY_TOPIC, VENDOR, type OtaWorld } from './ota-setup.js';
import { monoMs, TelemetryProbe, type TelemetrySetup, type WindowSummary } from './ota-telemetry.js';
import { descendants, processRssKb, treeCpuParts } from './proc-tree.js';
import { round } from './round.js';
import { guardRun } from './run-guard.js';
import type { BenchOptions } from './run.js';
import { sleep } from './sleep.js';

const TELEMETRY_RATE = 1000;
const BASELINE_MS = 5_000;
/** Telemetry sent at a window's end gets this long to arrive before the window is summed. */
const GRACE_MS = 1_000;
const SETUP_MS = 180_000;
/** A run: this much, plus a floor of 4 MiB/s for the whole delivery. */
const RUN_BASE_MS = 30_000;
const RUN_MIB_PER_S_FLOOR = 4;
const QUIET_THRESHOLD_PCT = 60;
const QUIET_MAX_MS = 5_000;
const QUIET_BUDGET_MS = 15_000;
const RSS_SAMPLE_MS = 100;

let broker: BrokerProcess | null = null;
let probe: TelemetryProbe | null = null;
/** Mosquitto and its telemetry pair: the control while Bastion downloads, then alone. */
let mosq: BrokerProcess | null = null;
let control: TelemetryProbe | null = null;

function killNow(): void {
  killSetupChildren();
  probe?.kill();
  control?.kill();
  broker?.killNow();
  mosq?.killNow();
}

const rounded = (x: WindowSummary): WindowSummary => ({ ...x, p50Us: round(x.p50Us, 0), p90Us: round(x.p90Us, 0), p99Us: round(x.p99Us, 0), maxUs: round(x.maxUs, 0), meanUs: round(x.meanUs, 0), seconds: round(x.seconds, 2) ?? 0 });

function treeCpuMs(pid: number): number | null {
  const parts = treeCpuParts(pid);
  return parts === null ? null : parts.reduce((a, p) => a + p.cpuMs, 0);
}

function busyPct(a: HostCpu | null, b: HostCpu | null): number | null {
  if (a === null || b === null || b.total <= a.total) return null;
  return (100 * os.availableParallelism() * (b.busy - a.busy)) / (b.total - a.total);
}

/**
 * The broker's tree RSS every 100 ms: the peak since the last reset. The tree is found at
 * each reset (a walk of all of /proc, too dear for every sample on the devices' thread);
 * between resets only its processes' status files are read.
 */
class RssSampler {
  peak: number | null = null;
  private pids: number[];
  private readonly timer: NodeJS.Timeout;
  constructor(private readonly pid: number) {
    this.pids = [pid, ...descendants(pid)];
    this.timer = setInterval(() => this.sample(), RSS_SAMPLE_MS);
  }
  sample(): number | null {
    const own = processRssKb(this.pid);
    if (own === null) return null;
    const kb = this.pids.slice(1).reduce((sum, p) => sum + (processRssKb(p) ?? 0), own);
    if (this.peak === null || kb > this.peak) this.peak = kb;
    return kb;
  }
  reset(): void {
    this.pids = [this.pid, ...descendants(this.pid)];
    this.peak = null;
    this.sample();
  }
  stop(): void {
    clearInterval(this.timer);
  }
}

function telemetrySetup(w: OtaWorld, port: number): TelemetrySetup {
  return {
    host: '127.0.0.1',
    port,
    ca: w.caPem,
    publisher: w.telemetry.publisher,
    subscriber: w.telemetry.subscriber,
    topic: TELEMETRY_TOPIC,
    rate: TELEMETRY_RATE,
    capacity: TELEMETRY_RATE * 900,
  };
}

/** The machine's busy CPU neither the broker nor this process was charged for (kernel loopback work, other programs), % of a core. */
function otherPct(machine: number | null, brokerPct: number | null, generatorPct: number): number | null {
  return machine === null || brokerPct === null ? null : round(Math.max(0, machine - brokerPct - generatorPct), 0);
}

/** `ota job show --json`: devices whose latest execution is SUCCEEDED. */
async function succeededOf(w: OtaWorld, jobId: string): Promise<number> {
  const shown = JSON.parse(await bastionCli(['ota', 'job', 'show', jobId, '--json', '--data-dir', w.dataDir])) as { executions: { identity: string; status: string }[] };
  const latest = new Map<string, string>();
  for (const e of shown.executions) latest.set(e.identity, e.status);
  return [...latest.values()].filter((s) => s === 'SUCCEEDED').length;
}

async function oneRun(n: number, w: OtaWorld, b: BrokerProcess, fleet: OtaFleet, tel: TelemetryProbe, ctl: TelemetryProbe | null, rss: RssSampler, imageBytes: number, waitedForQuietMs: number): Promise<OtaRun> {
  const release = w.releases[n - 1]!;
  const devices = fleet.size;
  const totalMib = (devices * imageBytes) / 1024 / 1024;
  // Baseline: the devices connected and idle, the telemetry flowing.
  const cpuB0 = treeCpuMs(b.pid);
  const hostB0 = hostCpu();
  const b0 = monoMs();
  await sleep(BASELINE_MS);
  const b1 = monoMs();
  const cpuB1 = treeCpuMs(b.pid);
  const hostB1 = hostCpu();
  const rssBaseline = rss.sample();
  rss.reset();

  const watch = fleet.watchJob(`1.0.${n}`, RUN_BASE_MS + (totalMib / RUN_MIB_PER_S_FLOOR) * 1000);
  const cpu0 = treeCpuMs(b.pid);
  const host0 = hostCpu();
  const gen0 = process.cpuUsage();
  const t0 = monoMs();
  let jobId: string | null = null;
  let error: string | null = null;
  try {
    const out = await bastionCli(['ota', 'job', 'create', '--release', release.id, '--clients', fleet.ids().join(','), '--data-dir', w.dataDir]);
    jobId = /job (job-[0-9a-f]+)/.exec(out)?.[1] ?? null;
  } catch (e) {
    error = (e as Error).message;
    watch.cancel();
  }
  const outcome: JobOutcome = await watch.done;
  const t1 = monoMs();
  const cpu1 = treeCpuMs(b.pid);
  const host1 = hostCpu();
  const gen = process.cpuUsage(gen0);
  rss.sample();
  const peak = rss.peak;
  await sleep(GRACE_MS);
  const from = outcome.firstJobAtMs ?? t0;
  const to = outcome.lastInstalledAtMs ?? t1;
  const [base, during] = await Promise.all([tel.window(b0, b1), tel.window(from, to)]);
  // The same windows through Mosquitto: what the machine's load alone does to telemetry.
  const [ctlBase, ctlDuring] = ctl !== null ? await Promise.all([ctl.window(b0, b1), ctl.window(from, to)]) : [null, null];
  const telError = base.failure ?? during.failure;
  jobId ??= outcome.jobIds[0] ?? null;
  let succeeded: number | null = null;
  if (jobId !== null) succeeded = await succeededOf(w, jobId).catch(() => null);
  const wallS = outcome.lastInstalledAtMs !== null && outcome.ok ? (outcome.lastInstalledAtMs - t0) / 1000 : null;
  const downloadS = outcome.lastInstalledAtMs !== null && outcome.firstJobAtMs !== null && outcome.ok ? (outcome.lastInstalledAtMs - outcome.firstJobAtMs) / 1000 : null;
  const brokerCpuMs = cpu0 !== null && cpu1 !== null ? cpu1 - cpu0 : null;
  const spanS = (t1 - t0) / 1000;
  const per = spread(outcome.perDeviceMs.map((x) => x / 1000));
  error ??= outcome.error ?? telError ?? (succeeded !== null && succeeded !== devices ? `ota job show: ${succeeded} of ${devices} SUCCEEDED` : null);
  return {
    run: n,
    ok: error === null,
    error,
    jobId,
    releaseId: release.id,
    succeeded,
    devices,
    imageBytes,
    wallSeconds: round(wallS, 3),
    downloadSeconds: round(downloadS, 3),
    jobStartSeconds: round(outcome.firstJobAtMs !== null ? (outcome.firstJobAtMs - t0) / 1000 : null, 3),
    mbPerSecond: round(wallS !== null ? (devices * imageBytes) / 1e6 / wallS : null, 1),
    mibPerSecond: round(wallS !== null ? totalMib / wallS : null, 1),
    downloadMibPerSecond: round(downloadS !== null ? totalMib / downloadS : null, 1),
    perDeviceSeconds: { median: round(per.median, 2), min: round(per.min, 2), max: round(per.max, 2) },
    brokerCpuSeconds: round(brokerCpuMs !== null ? brokerCpuMs / 1000 : null, 2),
    brokerCpuPct: round(brokerCpuMs !== null ? brokerCpuMs / 10 / spanS : null, 0),
    brokerCpuMsPerMib: round(brokerCpuMs !== null ? brokerCpuMs / totalMib : null, 2),
    brokerRssKbBaseline: rssBaseline,
    brokerRssKbPeak: peak,
    generatorCpuPct: round((gen.user + gen.system) / 1000 / 10 / spanS, 0),
    machineCpuPct: round(busyPct(host0, host1), 0),
    otherCpuPct: otherPct(busyPct(host0, host1), brokerCpuMs !== null ? brokerCpuMs / 10 / spanS : null, (gen.user + gen.system) / 1000 / 10 / spanS),
    baselineMachineCpuPct: round(busyPct(hostB0, hostB1), 0),
    baselineBrokerCpuPct: round(cpuB0 !== null && cpuB1 !== null ? (cpuB1 - cpuB0) / 10 / ((b1 - b0) / 1000) : null, 0),
    blocksWritten: outcome.blocksWritten,
    blocksRefused: outcome.blocksRefused,
    getRequests: outcome.getRequests,
    agentErrors: outcome.agentErrors,
    telemetryBaseline: rounded(base.summary),
    telemetryDuring: rounded(during.summary),
    controlBaseline: ctlBase !== null ? rounded(ctlBase.summary) : null,
    controlDuring: ctlDuring !== null ? rounded(ctlDuring.summary) : null,
    p50Ratio: ratio(during.summary.p50Us, base.summary.p50Us),
    p99Ratio: ratio(during.summary.p99Us, base.summary.p99Us),
    waitedForQuietMs,
  };
}

/** Mosquitto with the same server certificate and CA chain (mTLS), and the telemetry pair through it. */
async function startMosquitto(w: OtaWorld): Promise<void> {
  const f = w.files;
  const pki: BenchPki = {
    caCert: f.caChain,
    serverCert: f.serverCert,
    serverKey: f.serverKey,
    rsaServerCert: f.serverCert,
    rsaServerKey: f.serverKey,
    clientCert: '',
    clientKey: '',
    client: { ca: w.caPem, cert: w.telemetry.publisher.cert, key: w.telemetry.publisher.key },
  };
  mosq = await BrokerProcess.start({ kind: 'mosquitto', persistence: false, pki });
  control = await TelemetryProbe.start(telemetrySetup(w, mosq.tlsPort!));
}

/** Once Bastion is stopped: the telemetry through Mosquitto alone, `repeat` windows. */
async function mosquittoRuns(tel: TelemetryProbe, repeat: number, say: (s: string) => void): Promise<MosquittoRun[]> {
  const runs: MosquittoRun[] = [];
  let quietBudget = QUIET_BUDGET_MS;
  for (let n = 1; n <= repeat; n++) {
    const quiet = await waitForQuietMachine(QUIET_THRESHOLD_PCT, Math.min(QUIET_MAX_MS, quietBudget));
    quietBudget = Math.max(0, quietBudget - quiet.waitedMs);
    say(`Mosquitto [${n}/${repeat}] telemetry alone, ${BASELINE_MS / 1000} s … `);
    const host0 = hostCpu();
    const a = monoMs();
    await sleep(BASELINE_MS);
    const z = monoMs();
    const machineCpuPct = round(busyPct(host0, hostCpu()), 0);
    await sleep(GRACE_MS);
    const r = await tel.window(a, z);
    const t = r.summary;
    runs.push({ run: n, telemetry: rounded(t), error: r.failure, machineCpuPct, waitedForQuietMs: quiet.waitedMs });
    say(`p50 ${round((t.p50Us ?? 0) / 1000, 2)} ms, p99 ${round((t.p99Us ?? 0) / 1000, 2)} ms\n`);
  }
  return runs;
}

/** Runs the OTA bench and exits the process (0 when every run delivered to every device). */
export async function runOtaBench(opts: BenchOptions): Promise<never> {
  const started = performance.now();
  const say = (s: string): void => void process.stderr.write(s);
  const missing = bastionAvailable();
  if (missing !== null) {
    say(`bench --ota: ${missing}\n`);
    process.exit(2);
  }
  const devices = opts.otaDevices;
  const imageBytes = Math.round(opts.otaImageMib * 1024 * 1024);
  const totalMib = (devices * imageBytes) / 1024 / 1024;
  const runMs = RUN_BASE_MS + (totalMib / RUN_MIB_PER_S_FLOOR) * 1000;
  say(`bench --ota: Node ${process.version}, OpenSSL ${process.versions.openssl}; ${devices} devices × ${opts.otaImageMib} MiB × ${opts.repeat} run(s)\n`);
  const watchdog = guardRun('bench --ota', SETUP_MS + opts.repeat * (runMs + BASELINE_MS + QUIET_MAX_MS + 10_000) + 60_000 + opts.repeat * (BASELINE_MS + GRACE_MS), killNow);

  const work = await mkdtemp(join(os.tmpdir(), 'bench-ota-'));
  const runs: OtaRun[] = [];
  let mosquitto: MosquittoRun[] = [];
  let mosquittoSkipped = mosquittoAvailable();
  let setupSeconds = 0;
  let fleet: OtaFleet | null = null;
  let rss: RssSampler | null = null;
  let world: OtaWorld | null = null;
  try {
    const port = await freePort();
    say('setup: ');
    world = await makeOtaWorld(work, port, { devices, imageBytes, runs: opts.repeat, maxBytesPerSecond: opts.otaMaxBytesPerSecond }, say);
    if (mosquittoSkipped === null) {
      say('mosquitto … ');
      try {
        await startMosquitto(world);
      } catch (e) {
        mosquittoSkipped = `failed: ${(e as Error).message}`;
        await control?.stop();
        control = null;
        await mosq?.stop();
        mosq = null;
      }
    }
    say('serve … ');
    broker = await BrokerProcess.start({ kind: 'bastion', persistence: false, pki: null, configFile: { path: world.configFile, port } });
    rss = new RssSampler(broker.pid);
    say('telemetry … ');
    probe = await TelemetryProbe.start(telemetrySetup(world, port));
    say(`${devices} devices … `);
    fleet = await OtaFleet.start({ url: `mqtts://127.0.0.1:${port}`, caPem: world.caPem, devices: world.devices, rootKeys: world.rootKeys, keySet: world.keySet, vendorId: VENDOR, classId: CLASS_ID, dir: join(work, 'devices'), readyTimeoutMs: 60_000 });
    setupSeconds = round((performance.now() - started) / 1000, 1) ?? 0;
    say(`${setupSeconds} s\n`);
    let quietBudget = QUIET_BUDGET_MS;
    for (let n = 1; n <= opts.repeat; n++) {
      const quiet = await waitForQuietMachine(QUIET_THRESHOLD_PCT, Math.min(QUIET_MAX_MS, quietBudget));
      quietBudget = Math.max(0, quietBudget - quiet.waitedMs);
      say(`[${n}/${opts.repeat}] baseline ${BASELINE_MS / 1000} s, then ${devices} × ${opts.otaImageMib} MiB … `);
      if (!broker.alive) throw new Error(`the broker is gone: ${broker.log()}`);
      const r = await oneRun(n, world, broker, fleet, probe, control, rss, imageBytes, quiet.waitedMs);
      runs.push(r);
      say(
        r.ok
          ? `${r.wallSeconds} s, ${r.mibPerSecond} MiB/s, broker ${r.brokerCpuMsPerMib} ms/MiB; telemetry p99 ${round((r.telemetryBaseline?.p99Us ?? 0) / 1000, 2)} → ${round((r.telemetryDuring?.p99Us ?? 0) / 1000, 2)} ms\n`
          : `FAILED: ${r.error ?? ''}\n`,
      );
      if (!r.ok) break;
    }
  } catch (e) {
    say(`\nbench --ota: ${(e as Error).message}\n`);
  } finally {
    rss?.stop();
    await fleet?.close();
    await probe?.stop();
    probe = null;
    await broker?.stop();
    broker = null;
  }
  if (control !== null) {
    try {
      mosquitto = await mosquittoRuns(control, opts.repeat, say);
    } catch (e) {
      mosquittoSkipped = `failed: ${(e as Error).message}`;
      say(`\nbench --ota: Mosquitto: ${mosquittoSkipped}\n`);
    }
  }
  await control?.stop();
  control = null;
  await mosq?.stop();
  mosq = null;
  await rm(work, { recursive: true, force: true });

  const ok = runs.filter((r) => r.ok);
  const mq = mosquitto.filter((m) => m.error === null && m.telemetry !== null);
  const pick = (fn: (r: OtaRun) => number | null): ReturnType<typeof spread> => spread(ok.map(fn));
  const mq50 = spread(mq.map((m) => m.telemetry!.p50Us));
  const mq99 = spread(mq.map((m) => m.telemetry!.p99Us));
  const d50 = pick((r) => r.telemetryDuring?.p50Us ?? null);
  const d99 = pick((r) => r.telemetryDuring?.p99Us ?? null);
  const b50 = pick((r) => r.telemetryBaseline?.p50Us ?? null);
  const b99 = pick((r) => r.telemetryBaseline?.p99Us ?? null);
  const report: OtaReport = {
    generatedAt: new Date().toISOString(),
    host: hostInfo(mosquittoSkipped === null ? MOSQUITTO_BIN : null),
    command: `node dist/bench/run.js ${process.argv.slice(2).join(' ')}`,
    options: {
      devices,
      imageBytes,
      repeat: opts.repeat,
      telemetryRate: TELEMETRY_RATE,
      telemetryQos: 1,
      baselineSeconds: BASELINE_MS / 1000,
      maxBytesPerSecond: opts.otaMaxBytesPerSecond,
      blockSize: "the broker's suggestion (ota.transfer.defaultBlockSize, 16384), 32 blocks per get",
      agents: 'OtaAgent on BastionDevice, all in the bench process (main thread); telemetry in a worker thread',
    },
    setupSeconds,
    summary: {
      runsOk: ok.length,
      wallSeconds: pick((r) => r.wallSeconds),
      mbPerSecond: pick((r) => r.mbPerSecond),
      mibPerSecond: pick((r) => r.mibPerSecond),
      brokerCpuSeconds: pick((r) => r.brokerCpuSeconds),
      brokerCpuMsPerMib: pick((r) => r.brokerCpuMsPerMib),
      brokerRssKbPeak: pick((r) => r.brokerRssKbPeak),
      bastionBaselineP50Us: b50,
      bastionBaselineP99Us: b99,
      bastionDuringP50Us: d50,
      bastionDuringP99Us: d99,
      duringOverBaselineP50: pick((r) => r.p50Ratio),
      duringOverBaselineP99: pick((r) => r.p99Ratio),
      mosquittoIdleP50Us: mq50,
      mosquittoIdleP99Us: mq99,
      duringOverMosquittoIdleP50: ratio(d50.median, mq50.median),
      duringOverMosquittoIdleP99: ratio(d99.median, mq99.median),
      baselineOverMosquittoIdleP50: ratio(b50.median, mq50.median),
      baselineOverMosquittoIdleP99: ratio(b99.median, mq99.median),
      controlBaselineP50Us: pick((r) => r.controlBaseline?.p50Us ?? null),
      controlBaselineP99Us: pick((r) => r.controlBaseline?.p99Us ?? null),
      controlDuringP50Us: pick((r) => r.controlDuring?.p50Us ?? null),
      controlDuringP99Us: pick((r) => r.controlDuring?.p99Us ?? null),
    },
    runs,
    mosquitto: { version: mosquittoSkipped === null ? hostInfo(MOSQUITTO_BIN).mosquitto : null, runs: mosquitto, skipped: mosquittoSkipped },
    totalSeconds: round((performance.now() - started) / 1000, 1) ?? 0,
  };
  printOtaReport(report);
  await mkdir(dirname(opts.jsonPath), { recursive: true });
  await writeFile(opts.jsonPath, `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(`\nJSON: ${opts.jsonPath}\n`);
  clearTimeout(watchdog);
  process.exit(runs.length === opts.repeat && ok.length === runs.length ? 0 : 1);
}
