/**
 * `npm run bench -- --fleet`: fleet-scale figures (issue 17). Scenario A "hold"
 * (fleet-scale-hold.ts): N idle mTLS devices on one Bastion. Scenario B "storm"
 * (fleet-scale-storm.ts): M devices reconnecting at once after a restart, Bastion and
 * Mosquitto. Owns: the order of the scenarios, raising the open-file limit for the broker
 * and the generators (`prlimit`, checked before anything starts), the watchdog, the report
 * and its JSON. Must not: run without a bound, or leave a broker or generator behind.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MOSQUITTO_BIN, bastionAvailable, mosquittoAvailable } from './brokers.js';
import { makeFleetPki } from './fleet-scale-broker.js';
import { PRLIMIT } from './fleet-scale-generators.js';
import { runHold, type Running } from './fleet-scale-hold.js';
import { FD_MARGIN, FLEET_USAGE, parseFleetOptions } from './fleet-scale-options.js';
import { fleetOptionsJson, fleetReportText, ratioOf, type FleetReportJson } from './fleet-scale-report.js';
import { runStorm } from './fleet-scale-storm.js';
import { hostInfo } from './host-info.js';
import { guardRun } from './run-guard.js';

const DEFAULT_JSON = fileURLToPath(new URL('../../bench/results/fleet-latest.json', import.meta.url));
/** 19,500 + 19,500 devices took 6–6.5 minutes here (2 cores); nothing may take longer than this. */
const WATCHDOG_MS = 25 * 60_000;

function stop(line: string, code = 2): never {
  process.stderr.write(`bench --fleet: ${line}\n`);
  process.exit(code);
}

/** This process's hard open-file limit (`Max open files` in /proc/self/limits), or null. */
function hardNofile(): number | null {
  try {
    const m = /^Max open files\s+\S+\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m === null ? null : Number(m[1]);
  } catch {
    return null;
  }
}

/**
 * Proves `prlimit --nofile` works before any broker starts. Above the hard limit that takes
 * CAP_SYS_RESOURCE (root in most setups; a container may drop it): without it, say how many
 * devices one broker process can hold here.
 */
function checkPrlimit(nofile: number): void {
  try {
    execFileSync(PRLIMIT, [`--nofile=${nofile}:${nofile}`, '--', '/bin/true'], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 5_000 });
  } catch (e) {
    const why = ((e as { stderr?: Buffer }).stderr?.toString('utf8') ?? (e as Error).message).trim().split('\n')[0];
    const hard = hardNofile();
    const most = hard === null ? '' : `: the hard limit is ${hard}, so at most ${hard - FD_MARGIN} devices per broker here (--devices/--storm-devices ${hard - FD_MARGIN})`;
    stop(`cannot raise the open-file limit to ${nofile} with ${PRLIMIT} (${why}; raising the hard limit needs CAP_SYS_RESOURCE)${most}`);
  }
}

export async function runFleetScaleBench(argv: readonly string[]): Promise<void> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${FLEET_USAGE}\n`);
    return;
  }
  const o = parseFleetOptions(argv);
  if (typeof o === 'string') stop(`${o}\n${FLEET_USAGE}`);
  const t0 = performance.now();
  const missing = bastionAvailable();
  if (missing !== null) stop(missing);
  const storms = o.scenarios.includes('storm') ? o.brokers.filter((b) => b === 'bastion' || mosquittoAvailable() === null) : [];
  if (o.scenarios.includes('storm') && o.brokers.includes('mosquitto') && !storms.includes('mosquitto')) process.stderr.write(`bench --fleet: ${mosquittoAvailable() ?? ''}: storm without Mosquitto\n`);
  checkPrlimit(Math.max(o.scenarios.includes('hold') ? o.devices : 0, storms.length > 0 ? o.stormDevices : 0) + FD_MARGIN);
  process.stderr.write(`bench --fleet: Node ${process.version}, OpenSSL ${process.versions.openssl}\n`);

  const running: Running = { broker: null, gens: null };
  const watchdog = guardRun('bench --fleet', WATCHDOG_MS, () => {
    running.gens?.kill();
    running.broker?.killNow();
  });
  const workDir = await mkdtemp(join(os.tmpdir(), 'bench-fleet-'));
  const report: FleetReportJson = {
    generatedAt: new Date().toISOString(),
    host: hostInfo(storms.includes('mosquitto') ? MOSQUITTO_BIN : null),
    options: fleetOptionsJson(o),
    hold: null,
    storm: { bastion: null, mosquitto: null, to99Ratio: null },
    wallSeconds: 0,
  };
  try {
    const pki = await makeFleetPki(workDir);
    if (o.scenarios.includes('hold')) report.hold = await runHold(o, pki, workDir, running);
    for (const kind of storms) report.storm[kind] = await runStorm(kind, o, pki, workDir, running);
    report.storm.to99Ratio = ratioOf(report.storm.bastion?.to99Seconds, report.storm.mosquitto?.to99Seconds);
  } finally {
    running.gens?.kill();
    running.broker?.killNow();
    await rm(workDir, { recursive: true, force: true });
  }
  report.wallSeconds = (performance.now() - t0) / 1000;
  process.stdout.write(`\n${fleetReportText(report)}\n`);
  const jsonPath = o.jsonPath ?? DEFAULT_JSON;
  await mkdir(dirname(jsonPath), { recursive: true });
  await writeFile(jsonPath, `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(`\nJSON: ${jsonPath}\n`);
  clearTimeout(watchdog);
  const failed = [report.hold, report.storm.bastion, report.storm.mosquitto].some((x) => (x?.error ?? null) !== null);
  process.exit(failed ? 1 : 0);
}
