/**
 * The report of `npm run bench -- --cluster`: run records, the table (1 worker, 2 workers,
 * Mosquitto and their ratios per row and metric, medians over repetitions), the issue's
 * targets met or not, the per-message costs a capacity model can use, and a details line
 * per run. Owns: turning cluster run records into rows and printing them. Must not: run
 * anything.
 */
import type { HostInfo } from './host-info.js';
import type { LimitsMode } from './brokers.js';
import type { ClusterRow } from './cluster-rows.js';
import { clusterVariantLabel, type ClusterVariant } from './cluster-set.js';
import { fmt, fmtRatio, median, renderTable } from './report.js';
import { round } from './round.js';
import type { Details, Transport } from './scenario-api.js';

/** Per-message (or per-connection) costs of one run; per 1000 units of the row (see ClusterRow.unit). */
export interface RunCosts {
  unit: 'connection' | 'delivery';
  /** The unit's rate in the measured window, per second. */
  unitsPerSec: number | null;
  /** Broker CPU (every process: primary and workers, or Mosquitto) per 1000 units, ms. */
  brokerMsPer1k: number | null;
  /** nats-server CPU per 1000 units, ms (null for Mosquitto). */
  natsMsPer1k: number | null;
  /** Publish rows: messages published per second, and broker CPU per 1000 of them (QoS 0 fan-in drops some, fan-out delivers each 50 times). */
  publishedPerSec: number | null;
  brokerMsPer1kPublished: number | null;
  /** BMQ_MSGS at the end of the run (warm-up and settling included): messages, bytes, bytes per message. */
  streamMessages: number | null;
  streamBytes: number | null;
  streamBytesPerMsg: number | null;
  /** The JetStream store directory on disk (stream and KV buckets) at the end, and per stored message. */
  storeDiskBytes: number | null;
  storeDiskBytesPerMsg: number | null;
  natsRssKb: number | null;
  /** "Slow Consumer Detected" lines the nats-server printed (it dropped messages to a node); null without NATS. */
  natsSlowConsumers: number | null;
}

export interface ClusterRunRecord {
  row: string;
  /** The scenario the run's load came from (Mosquitto's run in the durable row: qos1-fanin). */
  scenario: string;
  transport: Transport;
  variant: ClusterVariant;
  repeat: number;
  ok: boolean;
  error: string | null;
  metrics: Record<string, number>;
  details: Details;
  costs: RunCosts | null;
  wallSeconds: number;
}

export interface ClusterTableRow {
  row: string;
  title: string;
  metric: string;
  unit: string;
  lowerIsBetter: boolean;
  transport: Transport;
  firstVariant: ClusterVariant;
  secondVariant: ClusterVariant;
  first: number | null;
  second: number | null;
  /** Mosquitto's figure (the durable row: its non-durable QoS 1 fan-in). */
  mosquitto: number | null;
  /** Bastion without a cluster section, same load (the durable row: persistence.enabled). */
  standalone: number | null;
  secondOverFirst: number | null;
  firstOverMosquitto: number | null;
  secondOverMosquitto: number | null;
  firstOverStandalone: number | null;
}

export interface TargetCheck {
  row: string;
  target: string;
  ratio: number | null;
  min: number;
  met: boolean | null;
}

export interface ClusterReport {
  generatedAt: string;
  host: HostInfo & { natsServer: string | null };
  options: { rows: string[]; durationS: number; warmupS: number; limits: LimitsMode; mqttVersion: 4 | 5; repeat: number; mosquitto: boolean };
  command: string;
  skipped: string[];
  table: ClusterTableRow[];
  targets: TargetCheck[];
  runs: ClusterRunRecord[];
  totalSeconds: number;
}

const ratio = (a: number | null, b: number | null): number | null => (a !== null && b !== null && b > 0 ? round(a / b, 3) : null);

export function buildClusterTable(runs: ClusterRunRecord[], rows: ClusterRow[]): { table: ClusterTableRow[]; targets: TargetCheck[] } {
  const table: ClusterTableRow[] = [];
  const targets: TargetCheck[] = [];
  for (const r of rows) {
    r.scenario.metrics.forEach((m, i) => {
      const value = (v: ClusterVariant): number | null => {
        const got = median(runs.filter((x) => x.row === r.id && x.variant === v && x.ok).flatMap((x) => (x.metrics[m.key] === undefined ? [] : [x.metrics[m.key]!])));
        return got === null ? null : round(got, 2);
      };
      const first = value(r.first);
      const second = value(r.second);
      const mosquitto = r.mosquitto ? value('mosquitto') : null;
      const standalone = r.standalone ? value('standalone') : null;
      const row: ClusterTableRow = {
        row: r.id,
        title: `${r.n} ${r.title}: ${m.label}`,
        metric: m.key,
        unit: m.unit,
        lowerIsBetter: m.lowerIsBetter,
        transport: r.transport,
        firstVariant: r.first,
        secondVariant: r.second,
        first,
        second,
        mosquitto,
        standalone,
        secondOverFirst: ratio(second, first),
        firstOverMosquitto: ratio(first, mosquitto),
        secondOverMosquitto: ratio(second, mosquitto),
        firstOverStandalone: ratio(first, standalone),
      };
      table.push(row);
      if (i !== 0) return;
      for (const t of r.targets) {
        const got = t.ratio === 'second/first' ? row.secondOverFirst : t.ratio === 'first/mosquitto' ? row.firstOverMosquitto : row.secondOverMosquitto;
        targets.push({ row: r.id, target: t.text, ratio: got, min: t.min, met: got === null ? null : got >= t.min });
      }
    });
  }
  return { table, targets };
}

const num = (v: number | null, digits: number): string => (v === null ? '—' : v.toFixed(digits));

export function printClusterReport(report: ClusterReport, rows: ClusterRow[]): void {
  const out: string[] = [];
  const h = report.host;
  out.push(
    `Node ${h.node} (OpenSSL ${h.openssl}): generator and Bastion; nats-server ${h.natsServer ?? '?'}` +
      `${h.mosquitto !== null ? `; Mosquitto ${h.mosquitto} (system OpenSSL ${h.systemOpenssl ?? '?'})` : ''}; ${h.cpus} × ${h.cpuModel}, ${h.platform}`,
  );
  out.push(`Bastion in cluster mode (one fresh nats-server per run, JetStream file store, replicas 1), limits ${report.options.limits}; 1w = serve --workers 1, 2w = serve --workers 2 (row 5: two nodes with --workers 1 each); standalone = Bastion without a cluster section, same load and limits`);
  out.push('');
  const headers = ['row', 'unit', 'transport', 'Bastion 1w', 'Bastion 2w', '2w/1w', 'Mosquitto', '1w/Mosq', '2w/Mosq', 'standalone', '1w/standalone'];
  out.push(
    renderTable(
      headers,
      report.table.map((r) => [
        r.title,
        r.unit + (r.lowerIsBetter ? ' (lower is better)' : ''),
        r.transport === 'tls' ? 'mTLS' : 'TCP',
        fmt(r.first, r.unit),
        fmt(r.second, r.unit),
        fmtRatio(r.secondOverFirst),
        fmt(r.mosquitto, r.unit),
        fmtRatio(r.firstOverMosquitto),
        fmtRatio(r.secondOverMosquitto),
        fmt(r.standalone, r.unit),
        fmtRatio(r.firstOverStandalone),
      ]),
      headers.map((_, i) => i >= 3),
    ),
  );
  if (report.targets.length > 0) {
    out.push('');
    out.push('targets (issue 12):');
    for (const t of report.targets) out.push(`  ${t.row}: ${t.target}: ${fmtRatio(t.ratio)} → ${t.met === null ? 'not measured' : t.met ? 'met' : 'NOT met'}`);
  }
  out.push('');
  out.push('per-unit costs (medians; CPU in ms per 1000 units of the row: connections in row 1, deliveries elsewhere, and per 1000 published messages; undelivered: messages published but never delivered, whole run; CPU % of one core; JetStream = BMQ_MSGS stream info at the end of the run):');
  const costHeaders = ['row', 'broker', 'units/s', 'broker ms/1k', 'nats ms/1k', 'published/s', 'broker ms/1k published', 'undelivered', 'broker %', 'per process %', 'nats %', 'generator %', 'other %', 'stream B/msg', 'store disk B/msg'];
  const costRows: string[][] = [];
  for (const r of rows) {
    for (const v of [r.first, r.second, ...(r.mosquitto ? (['mosquitto'] as const) : []), ...(r.standalone ? (['standalone'] as const) : [])]) {
      const ok = report.runs.filter((x) => x.row === r.id && x.variant === v && x.ok);
      if (ok.length === 0) continue;
      const med = (f: (x: ClusterRunRecord) => number | null | undefined): number | null => median(ok.flatMap((x) => {
        const got = f(x);
        return typeof got === 'number' ? [got] : [];
      }));
      const detail = (k: string) => (x: ClusterRunRecord): number | null => (typeof x.details[k] === 'number' ? x.details[k] : null);
      const parts = ok[Math.floor(ok.length / 2)]?.details.brokerProcessCpuPct;
      costRows.push([
        `${r.n} ${r.id}${v === 'mosquitto' && r.mosquittoScenario !== undefined ? ` (Mosquitto: ${r.mosquittoScenario.id})` : ''}`,
        clusterVariantLabel(v),
        fmt(med((x) => x.costs?.unitsPerSec), r.unit === 'connection' ? 'conn/s' : 'msg/s'),
        num(med((x) => x.costs?.brokerMsPer1k), 1),
        num(med((x) => x.costs?.natsMsPer1k), 1),
        fmt(med((x) => x.costs?.publishedPerSec), 'msg/s'),
        num(med((x) => x.costs?.brokerMsPer1kPublished), 1),
        fmt(med(detail('undelivered')), 'msg'),
        num(med(detail('brokerCpuPct')), 1),
        typeof parts === 'string' ? parts : '—',
        num(med(detail('natsCpuPct')), 1),
        num(med(detail('generatorCpuPct')), 1),
        num(med(detail('otherCpuPct')), 1),
        num(med((x) => x.costs?.streamBytesPerMsg), 1),
        num(med((x) => x.costs?.storeDiskBytesPerMsg), 1),
      ]);
    }
  }
  out.push(renderTable(costHeaders, costRows, costHeaders.map((_, i) => i >= 2 && i !== 9)));
  out.push('');
  out.push('details (CPU in % of one core; other = used by neither broker, nats-server nor generator: uncharged kernel loopback work and other processes):');
  for (const r of report.runs) {
    const head = `  ${r.row} ${r.transport} ${clusterVariantLabel(r.variant)}${report.options.repeat > 1 ? ` #${r.repeat}` : ''}:`;
    if (!r.ok) {
      out.push(`${head} FAILED ${r.error ?? ''}`);
      continue;
    }
    const c = r.costs;
    const costs = c === null ? {} : { streamMessages: c.streamMessages, streamBytes: c.streamBytes, storeDiskBytes: c.storeDiskBytes, natsRssKb: c.natsRssKb, natsSlowConsumers: c.natsSlowConsumers };
    const d = Object.entries({ ...r.details, ...costs })
      .filter(([, v]) => v !== null)
      .map(([k, v]) => `${k}=${typeof v === 'number' ? v : JSON.stringify(v)}`)
      .join(' ');
    out.push(`${head} ${d} (${r.wallSeconds} s)`);
  }
  for (const s of report.skipped) out.push(`  skipped: ${s}`);
  out.push(`total ${report.totalSeconds} s`);
  process.stdout.write(`${out.join('\n')}\n`);
}
