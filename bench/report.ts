/**
 * The bench report: the shapes of runs and table rows, the medians over repetitions, and
 * the table on stdout. Owns: turning run records into rows (one value per broker variant,
 * each Bastion variant as a ratio against Mosquitto from the same bench run) and printing
 * them. Must not: run anything.
 */
import type { HostInfo } from './host-info.js';
import type { BrokerKind, LimitsMode } from './brokers.js';
import { round } from './round.js';
import type { Details, Scenario, Transport } from './scenario-api.js';

/** One broker process configuration under test: Mosquitto, or Bastion with a limits mode. */
export interface Variant {
  kind: BrokerKind;
  /** Bastion only: which `limits` section it runs with; null for Mosquitto. */
  limits: LimitsMode | null;
}

export function variantLabel(v: Variant): string {
  return v.kind === 'bastion' && v.limits !== null ? `bastion[limits ${v.limits}]` : v.kind;
}

export interface RunRecord {
  scenario: string;
  transport: Transport;
  broker: BrokerKind;
  /** Bastion: the limits mode of this run; null for Mosquitto. */
  limits: LimitsMode | null;
  /** 1-based repetition (see --repeat). */
  repeat: number;
  ok: boolean;
  error: string | null;
  /** The run completed but failed its own preconditions (Measured.invalid): left out of every median. */
  invalid: string | null;
  metrics: Record<string, number>;
  details: Details;
  wallSeconds: number;
}

export interface VariantValue {
  limits: LimitsMode;
  /** Median over the repetitions that succeeded. */
  value: number | null;
  /** This value / Mosquitto's. */
  ratio: number | null;
  /** Lowest and highest of those repetitions (the spread behind the median); null with fewer than two. */
  spread: [number, number] | null;
  /** Why no value: every repetition that completed was invalid (their reasons). */
  invalid: string | null;
}

export interface TableRow {
  scenario: string;
  metric: string;
  unit: string;
  lowerIsBetter: boolean;
  transport: Transport;
  /** Median over the repetitions that succeeded, for the first Bastion limits mode asked for. */
  bastion: number | null;
  mosquitto: number | null;
  mosquittoSpread: [number, number] | null;
  /** Why Mosquitto has no value: its completed repetitions were all invalid. */
  mosquittoInvalid: string | null;
  /** Bastion / Mosquitto (first limits mode). */
  ratio: number | null;
  /** Every Bastion limits mode that ran, in the order asked for. */
  bastionByLimits: VariantValue[];
}

export interface BenchReport {
  generatedAt: string;
  host: HostInfo;
  options: { scenarios: string[]; durationS: number; warmupS: number; brokers: BrokerKind[]; limits: LimitsMode[]; transports: Transport[]; idleConns: number; mqttVersion: 4 | 5; repeat: number };
  skipped: string[];
  table: TableRow[];
  runs: RunRecord[];
}

export function fmt(v: number | null, unit: string): string {
  if (v === null) return '—';
  if (unit === 'KB/conn') return v.toFixed(1);
  if (unit === 'ms') return v.toFixed(2);
  return Math.round(v).toLocaleString('en-US');
}

/** A run's figures as one phrase: `label value unit, …` in the scenario's metric order. */
export function figuresOf(metrics: Record<string, number | null | undefined>, scenarioMetrics: ReadonlyArray<{ key: string; label: string; unit: string }>): string {
  return scenarioMetrics.map((m) => `${m.label} ${fmt(metrics[m.key] ?? null, m.unit)} ${m.unit}`).join(', ');
}

export function fmtRatio(r: number | null): string {
  return r === null ? '—' : `${r.toFixed(2)}×`;
}

export function renderTable(headers: string[], rows: string[][], alignRight: boolean[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => (alignRight[i] === true ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ');
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export function median(values: number[]): number | null {
  if (values.length === 0) return null;
  const v = [...values].sort((a, b) => a - b);
  const mid = Math.floor(v.length / 2);
  return v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

/** The median, spread and invalid reasons of one table cell's repetitions. */
interface Cell {
  value: number | null;
  spread: [number, number] | null;
  invalid: string | null;
}

function cellOf(runs: RunRecord[], key: string): Cell {
  const valid = runs.filter((x) => x.ok && x.invalid === null).flatMap((x) => (x.metrics[key] === undefined ? [] : [x.metrics[key]!]));
  const reasons = [...new Set(runs.filter((x) => x.ok && x.invalid !== null).map((x) => x.invalid!))];
  const value = median(valid);
  return {
    value: value === null ? null : round(value, 2),
    spread: valid.length >= 2 ? [round(Math.min(...valid), 2) ?? 0, round(Math.max(...valid), 2) ?? 0] : null,
    // Only when nothing valid is left: a mix reports the median of the valid ones (the details list every run).
    invalid: value === null && reasons.length > 0 ? `${reasons[0]!}${reasons.length > 1 ? ` (and ${reasons.length - 1} more run(s): see the details)` : ''}` : null,
  };
}

export function buildTable(runs: RunRecord[], scenarios: Scenario[], transports: Transport[], limits: LimitsMode[]): TableRow[] {
  const rows: TableRow[] = [];
  for (const s of scenarios) {
    for (const m of s.metrics) {
      for (const t of transports) {
        if (!runs.some((x) => x.scenario === s.id && x.transport === t)) continue;
        const cell = (b: BrokerKind, mode: LimitsMode | null): Cell => cellOf(runs.filter((x) => x.scenario === s.id && x.transport === t && x.broker === b && (mode === null || x.limits === mode)), m.key);
        const mosquitto = cell('mosquitto', null);
        // A ratio only between two valid medians: an invalid side makes no comparison.
        const ratioOf = (v: number | null): number | null => (v !== null && mosquitto.value !== null && mosquitto.value > 0 ? round(v / mosquitto.value, 3) : null);
        const bastionByLimits = limits.map((mode): VariantValue => {
          const c = cell('bastion', mode);
          return { limits: mode, value: c.value, ratio: ratioOf(c.value), spread: c.spread, invalid: c.invalid };
        });
        const first = bastionByLimits[0];
        rows.push({
          scenario: `${s.n} ${s.title}: ${m.label}`,
          metric: m.key,
          unit: m.unit,
          lowerIsBetter: m.lowerIsBetter,
          transport: t,
          bastion: first?.value ?? null,
          mosquitto: mosquitto.value,
          mosquittoSpread: mosquitto.spread,
          mosquittoInvalid: mosquitto.invalid,
          ratio: first?.ratio ?? null,
          bastionByLimits,
        });
      }
    }
  }
  return rows;
}

/** A cell: the median with its spread (`612 (540–880)`), or `invalid` (its reason is listed under the table). */
function cellText(value: number | null, spread: [number, number] | null, invalid: string | null, unit: string): string {
  if (value === null) return invalid !== null ? 'invalid' : '—';
  return spread === null ? fmt(value, unit) : `${fmt(value, unit)} (${fmt(spread[0], unit)}–${fmt(spread[1], unit)})`;
}

export function printReport(report: BenchReport): void {
  process.stdout.write(reportText(report));
}

/** The report as printed: host line, table, invalid cells with their reasons, one details line per run. */
export function reportText(report: BenchReport): string {
  const out: string[] = [];
  const h = report.host;
  out.push(`Node ${h.node} (OpenSSL ${h.openssl}): generator and Bastion${h.mosquitto !== null ? `; Mosquitto ${h.mosquitto} (system OpenSSL ${h.systemOpenssl ?? '?'})` : ''}; ${h.cpus} × ${h.cpuModel}, ${h.platform}`);
  const modes = report.options.brokers.includes('bastion') ? report.options.limits : [];
  // One limits mode keeps the historical three columns; several get a value and a ratio each.
  const single = modes.length <= 1;
  const profile: Record<LimitsMode, string> = {
    raised: 'every limit on, each rate and cap above the offered load (they cost what they cost and never bite)',
    defaults: "the config's defaults (per-address connection limits refuse a bench's bursts from 127.0.0.1: a question of its own)",
    off: 'limits.enabled false',
  };
  if (single && modes[0] !== undefined) out.push(`Bastion's limits: ${modes[0]}: ${profile[modes[0]]}`);
  const headers = ['scenario', 'unit', 'transport'];
  if (single) headers.push(modes.length === 1 && modes[0] !== 'defaults' ? `Bastion (limits ${modes[0]})` : 'Bastion', 'Mosquitto', 'Bastion/Mosquitto');
  else {
    for (const mode of modes) headers.push(`Bastion limits ${mode}`, `${mode}/Mosq`);
    headers.push('Mosquitto');
  }
  out.push('');
  out.push(
    renderTable(
      headers,
      report.table.map((r) => {
        const cells = [r.scenario, r.unit + (r.lowerIsBetter ? ' (lower is better)' : ''), r.transport === 'tls' ? 'mTLS' : 'TCP'];
        const mosq = cellText(r.mosquitto, r.mosquittoSpread, r.mosquittoInvalid, r.unit);
        if (single) {
          const b = r.bastionByLimits[0];
          cells.push(b === undefined ? '—' : cellText(b.value, b.spread, b.invalid, r.unit), mosq, fmtRatio(r.ratio));
        } else {
          for (const v of r.bastionByLimits) cells.push(cellText(v.value, v.spread, v.invalid, r.unit), fmtRatio(v.ratio));
          cells.push(mosq);
        }
        return cells;
      }),
      headers.map((_, i) => i >= 3),
    ),
  );
  if (!single) out.push('limits: defaults = the config defaults; raised = every limit on, rates and caps above the offered load; off = limits.enabled false.');
  if (report.table.some((r) => r.mosquittoSpread !== null || r.bastionByLimits.some((v) => v.spread !== null))) out.push('a value with a range: the median of its valid runs (lowest–highest); a ratio compares medians.');
  const invalid = report.table.flatMap((r) => [
    ...r.bastionByLimits.filter((v) => v.invalid !== null).map((v) => `  ${r.scenario} ${r.transport === 'tls' ? 'mTLS' : 'TCP'} ${single ? 'Bastion' : `Bastion limits ${v.limits}`}: ${v.invalid}`),
    ...(r.mosquittoInvalid !== null ? [`  ${r.scenario} ${r.transport === 'tls' ? 'mTLS' : 'TCP'} Mosquitto: ${r.mosquittoInvalid}`] : []),
  ]);
  if (invalid.length > 0) out.push('', 'invalid (the run failed its own preconditions; no value, no ratio):', ...[...new Set(invalid)]);
  out.push('');
  out.push('details (CPU in % of one core; other = used by neither broker nor generator: uncharged kernel loopback work and other processes on the machine):');
  for (const r of report.runs) {
    const who = r.broker === 'bastion' && !single && r.limits !== null ? `bastion[limits ${r.limits}]` : r.broker;
    const head = `  ${r.scenario} ${r.transport} ${who}${r.repeat > 1 || report.runs.some((x) => x.scenario === r.scenario && x.repeat > 1) ? ` #${r.repeat}` : ''}:`;
    if (!r.ok) {
      out.push(`${head} FAILED ${r.error ?? ''}`);
      continue;
    }
    if (r.invalid !== null) out.push(`${head} INVALID ${r.invalid}`);
    const d = Object.entries(r.details)
      .filter(([, v]) => v !== null)
      .map(([k, v]) => `${k}=${typeof v === 'number' ? v : JSON.stringify(v)}`)
      .join(' ');
    out.push(`${head} ${d}`);
  }
  for (const s of report.skipped) out.push(`  skipped: ${s}`);
  return `${out.join('\n')}\n`;
}
