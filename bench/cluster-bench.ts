/**
 * `npm run bench -- --cluster` (issue 12, "Measured"): Bastion in cluster mode over NATS
 * JetStream, `serve --workers 1` against `serve --workers 2` on this machine, two nodes for
 * cross-node latency, Mosquitto and a standalone Bastion (no cluster section) as the
 * references, in one run. Owns: the order of runs (each row × broker on a fresh
 * nats-server and fresh broker processes, cluster-set.ts), deadlines and the watchdog, turning a run's CPU and JetStream figures into per-unit
 * costs, and writing the report (cluster-report.ts) and its JSON. Must not: generate load
 * itself (the scenarios of scenarios.ts do, unchanged), or leave a process behind.
 */
import { guardRun } from './run-guard.js';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { bastionAvailable, MOSQUITTO_BIN, mosquittoAvailable } from './brokers.js';
import type { BenchPki } from './certs.js';
import { buildClusterTable, printClusterReport, type ClusterReport, type ClusterRunRecord, type RunCosts } from './cluster-report.js';
import type { ClusterRow } from './cluster-rows.js';
import { ClusterSet, clusterVariantLabel, type ClusterVariant, type NatsCosts } from './cluster-set.js';
import { withTimeout } from './fleet.js';
import { waitForQuietMachine } from './host-cpu.js';
import { hostInfo, natsServerVersion } from './host-info.js';
import { NATS_SERVER_BIN, natsServerAvailable } from './nats-server.js';
import { figuresOf } from './report.js';
import { round } from './round.js';
import type { Details, Measured } from './scenario-api.js';
import type { BenchOptions } from './run.js';

/** Setup and teardown allowance per run (nats-server, one or two nodes), on top of warm-up + duration. */
const RUN_SLACK_MS = 60_000;
/** Nothing about this bench may take longer than this. */
const WATCHDOG_MS = 12 * 60_000;
const QUIET_THRESHOLD_PCT = 40;
const QUIET_MAX_MS = 5_000;
const QUIET_BUDGET_MS = 30_000;

let current: ClusterSet | null = null;

function num(d: Details, key: string): number | null {
  const v = d[key];
  return typeof v === 'number' ? v : null;
}

/** CPU % of one core over the window → ms per 1000 units at `unitsPerSec`. */
function msPer1k(cpuPct: number | null, unitsPerSec: number | null): number | null {
  return cpuPct === null || unitsPerSec === null || unitsPerSec <= 0 ? null : round((cpuPct * 10 * 1000) / unitsPerSec, 2);
}

function costsOf(row: ClusterRow, m: Measured, nats: NatsCosts | null): RunCosts {
  const unitsPerSec = row.unitRate(m.metrics, m.details);
  const perMsg = (bytes: number | null): number | null => (bytes !== null && nats !== null && nats.streamMessages !== null && nats.streamMessages > 0 ? round(bytes / nats.streamMessages, 1) : null);
  return {
    unit: row.unit,
    unitsPerSec: round(unitsPerSec, 0),
    brokerMsPer1k: msPer1k(num(m.details, 'brokerCpuPct'), unitsPerSec),
    natsMsPer1k: msPer1k(num(m.details, 'natsCpuPct'), unitsPerSec),
    publishedPerSec: row.unit === 'delivery' ? num(m.details, 'sentPerSec') : null,
    brokerMsPer1kPublished: row.unit === 'delivery' ? msPer1k(num(m.details, 'brokerCpuPct'), num(m.details, 'sentPerSec')) : null,
    streamMessages: nats?.streamMessages ?? null,
    streamBytes: nats?.streamBytes ?? null,
    streamBytesPerMsg: perMsg(nats?.streamBytes ?? null),
    storeDiskBytes: nats?.storeDiskBytes ?? null,
    storeDiskBytesPerMsg: perMsg(nats?.storeDiskBytes ?? null),
    natsRssKb: nats?.natsRssKb ?? null,
    natsSlowConsumers: nats?.natsSlowConsumers ?? null,
  };
}

async function runOne(row: ClusterRow, variant: ClusterVariant, repeat: number, pki: BenchPki | null, opts: BenchOptions): Promise<ClusterRunRecord> {
  const scenario = variant === 'mosquitto' && row.mosquittoScenario !== undefined ? row.mosquittoScenario : row.scenario;
  const t0 = performance.now();
  const record = (ok: boolean, error: string | null, metrics: Record<string, number> = {}, details: Details = {}, costs: RunCosts | null = null): ClusterRunRecord => ({
    row: row.id,
    scenario: scenario.id,
    transport: row.transport,
    variant,
    repeat,
    ok,
    error,
    metrics,
    details,
    costs,
    wallSeconds: round((performance.now() - t0) / 1000, 1) ?? 0,
  });
  let set: ClusterSet;
  try {
    set = await ClusterSet.start({ variant, transport: row.transport, pki, limits: opts.limits[0] ?? 'raised', persistence: scenario.persistence });
  } catch (e) {
    return record(false, `broker did not start: ${(e as Error).message}`);
  }
  current = set;
  try {
    const publisherTarget = set.publisherTarget(row.transport, pki);
    const measured = await withTimeout(
      scenario.run({
        broker: set,
        transport: row.transport,
        target: set.target(row.transport, pki),
        ...(publisherTarget !== undefined ? { publisherTarget } : {}),
        version: opts.version,
        warmupMs: opts.warmupS * 1000,
        durationMs: opts.durationS * 1000,
        idleConns: 0,
      }),
      (opts.warmupS + opts.durationS) * 1000 + RUN_SLACK_MS,
      `${row.id} ${clusterVariantLabel(variant)}`,
    );
    // A run that failed its own preconditions gives no figure (the cluster table has no invalid cell: it is a failed run with the reason).
    if (measured.invalid !== undefined) return record(false, `invalid: ${measured.invalid}`, {}, measured.details);
    let nats: NatsCosts | null = null;
    let natsError: string | null = null;
    try {
      nats = await withTimeout(set.natsCosts(), 10_000, 'JetStream stream info');
    } catch (e) {
      natsError = (e as Error).message;
    }
    return record(
      true,
      null,
      measured.metrics,
      {
        ...measured.details,
        ...(row.transport === 'tls' ? { serverGroups: set.serverGroups } : {}),
        brokerRssKbAtEnd: set.rssKb(),
        ...(natsError !== null ? { natsCostsError: natsError } : {}),
      },
      costsOf(row, measured, nats),
    );
  } catch (e) {
    return record(false, (e as Error).message);
  } finally {
    current = null;
    await set.stop();
  }
}

function describe(r: ClusterRunRecord, row: ClusterRow): string {
  if (!r.ok) return `FAILED: ${r.error ?? ''}`;
  const scenario = r.variant === 'mosquitto' && row.mosquittoScenario !== undefined ? row.mosquittoScenario : row.scenario;
  const figures = figuresOf(r.metrics, scenario.metrics);
  const c = r.costs;
  const cost = c === null ? '' : `; broker ${c.brokerMsPer1k ?? '—'} ms/1k${c.natsMsPer1k !== null ? `, nats ${c.natsMsPer1k} ms/1k` : ''}${c.streamBytesPerMsg !== null ? `, stream ${c.streamBytesPerMsg} B/msg` : ''}`;
  return figures + cost;
}

/** Runs the cluster rows and exits the process (0 when any run succeeded). */
export async function runClusterBench(opts: BenchOptions, rows: ClusterRow[]): Promise<never> {
  const started = performance.now();
  const fatal = (message: string): never => {
    process.stderr.write(`bench --cluster: ${message}\n`);
    process.exit(2);
  };
  const missing = [bastionAvailable(), natsServerAvailable()].filter((m) => m !== null);
  if (missing.length > 0) fatal(missing.join('; '));
  const skipped: string[] = [];
  let withMosquitto = opts.brokers.includes('mosquitto');
  const noMosquitto = withMosquitto ? mosquittoAvailable() : null;
  if (noMosquitto !== null) {
    skipped.push(`mosquitto: ${noMosquitto}`);
    withMosquitto = false;
  }
  process.stderr.write(`bench --cluster: Node ${process.version}, OpenSSL ${process.versions.openssl}, ${NATS_SERVER_BIN}\n`);
  const watchdog = guardRun('bench --cluster', WATCHDOG_MS, () => current?.killNow());

  const workDir = await mkdtemp(join(os.tmpdir(), 'bench-pki-'));
  let pki: BenchPki | null = null;
  let selected = rows;
  if (rows.some((r) => r.transport === 'tls')) {
    try {
      // Imported lazily: the PKI module is Bastion's own and must not stop TCP-only rows.
      const { makeBenchPki } = await import('./certs.js');
      pki = await makeBenchPki(workDir);
    } catch (e) {
      skipped.push(`mTLS rows: no certificates from src/pki (${(e as Error).message})`);
      selected = rows.filter((r) => r.transport !== 'tls');
    }
  }
  const plan = selected.flatMap((row) => {
    const variants: ClusterVariant[] = [row.first, row.second, ...(row.mosquitto && withMosquitto ? (['mosquitto'] as const) : []), ...(row.standalone ? (['standalone'] as const) : [])];
    return Array.from({ length: opts.repeat }, (_, i) => i + 1).flatMap((rep) => (rep % 2 === 1 ? variants : [...variants].reverse()).map((v) => ({ row, variant: v, rep })));
  });
  const runs: ClusterRunRecord[] = [];
  let quietBudget = QUIET_BUDGET_MS;
  try {
    for (const [i, p] of plan.entries()) {
      process.stderr.write(`[${i + 1}/${plan.length}] ${p.row.id} ${p.row.transport} ${clusterVariantLabel(p.variant)}${opts.repeat > 1 ? ` #${p.rep}` : ''} … `);
      const quiet = await waitForQuietMachine(QUIET_THRESHOLD_PCT, Math.min(QUIET_MAX_MS, quietBudget));
      quietBudget = Math.max(0, quietBudget - quiet.waitedMs);
      const r = await runOne(p.row, p.variant, p.rep, pki, opts);
      r.details = { ...r.details, machineLoadBeforePct: quiet.loadPct, waitedForQuietMs: quiet.waitedMs };
      process.stderr.write(`${describe(r, p.row)} (${r.wallSeconds} s)\n`);
      runs.push(r);
    }
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }

  const { table, targets } = buildClusterTable(runs, selected);
  const report: ClusterReport = {
    generatedAt: new Date().toISOString(),
    host: { ...hostInfo(withMosquitto ? MOSQUITTO_BIN : null), natsServer: natsServerVersion(NATS_SERVER_BIN) },
    options: { rows: selected.map((r) => r.id), durationS: opts.durationS, warmupS: opts.warmupS, limits: opts.limits[0] ?? 'raised', mqttVersion: opts.version, repeat: opts.repeat, mosquitto: withMosquitto },
    command: `node dist/bench/run.js ${process.argv.slice(2).join(' ')}`,
    skipped,
    table,
    targets,
    runs,
    totalSeconds: round((performance.now() - started) / 1000, 1) ?? 0,
  };
  printClusterReport(report, selected);
  await mkdir(dirname(opts.jsonPath), { recursive: true });
  await writeFile(opts.jsonPath, `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(`\nJSON: ${opts.jsonPath}\n`);
  clearTimeout(watchdog);
  process.exit(runs.some((r) => r.ok) ? 0 : 1);
}
