/**
 * The bench report cannot mislead (issue 17): a run that failed its own preconditions is
 * left out of the medians, a cell with only such runs says `invalid` with the reason and has
 * no ratio, the spread of repetitions is shown beside the median, and the limits profile is
 * named in the header. Built from run records, as the runner makes them; nothing is timed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildTable, reportText, type BenchReport, type RunRecord } from '../../bench/report.js';
import { SCENARIOS } from '../../bench/scenarios.js';
import { invalidWhen } from '../../bench/scenario-runs.js';

const latency = SCENARIOS.find((s) => s.id === 'latency')!;
const idle = SCENARIOS.find((s) => s.id === 'idle-memory')!;

function run(over: Partial<RunRecord>): RunRecord {
  return { scenario: 'latency', transport: 'tls', broker: 'bastion', limits: 'raised', repeat: 1, ok: true, error: null, invalid: null, metrics: {}, details: {}, wallSeconds: 1, ...over };
}

function report(runs: RunRecord[], repeat: number): BenchReport {
  const table = buildTable(runs, [latency, idle], ['tls'], ['raised']);
  return {
    generatedAt: 'now',
    host: { node: 'v26', openssl: '3.5', mosquitto: '2.0.11', systemOpenssl: '3.0', cpus: 2, cpuModel: 'cpu', platform: 'linux' },
    options: { scenarios: ['latency', 'idle-memory'], durationS: 5, warmupS: 1, brokers: ['bastion', 'mosquitto'], limits: ['raised'], transports: ['tls'], idleConns: 2000, mqttVersion: 4, repeat },
    skipped: [],
    table,
    runs,
  };
}

test('invalidWhen names every failed precondition, and nothing when all hold', () => {
  assert.deepEqual(invalidWhen([[false, 'a']]), {});
  assert.deepEqual(invalidWhen([[true, 'offered 1000 of 10000 msg/s'], [false, 'x'], [true, '3 lost']]), { invalid: 'offered 1000 of 10000 msg/s; 3 lost' });
});

test('an invalid run is never a value or a ratio; valid repetitions give a median and a spread', () => {
  const runs = [
    // Bastion idle memory: every repetition refused most connections.
    run({ scenario: 'idle-memory', metrics: { kbPerConn: 13.1 }, invalid: 'opened 30 of 246 connections (216 refused or failed)' }),
    run({ scenario: 'idle-memory', repeat: 2, metrics: { kbPerConn: 12.9 }, invalid: 'opened 30 of 246 connections (216 refused or failed)' }),
    run({ scenario: 'idle-memory', broker: 'mosquitto', limits: null, metrics: { kbPerConn: 23.4 } }),
    // Latency: one Bastion repetition fell behind, two are valid.
    run({ metrics: { p50: 100, p99: 900, p999: 2000 }, invalid: 'the generator offered 1000 of 10000 msg/s' }),
    run({ repeat: 2, metrics: { p50: 60, p99: 500, p999: 1200 } }),
    run({ repeat: 3, metrics: { p50: 70, p99: 700, p999: 1500 } }),
    run({ broker: 'mosquitto', limits: null, metrics: { p50: 90, p99: 600, p999: 1000 } }),
    run({ broker: 'mosquitto', limits: null, repeat: 2, metrics: { p50: 110, p99: 800, p999: 3000 } }),
  ];
  const r = report(runs, 3);
  const idleRow = r.table.find((x) => x.metric === 'kbPerConn')!;
  assert.equal(idleRow.bastion, null);
  assert.equal(idleRow.ratio, null);
  assert.match(idleRow.bastionByLimits[0]!.invalid ?? '', /opened 30 of 246/);
  const p99 = r.table.find((x) => x.metric === 'p99')!;
  assert.equal(p99.bastion, 600, 'median of the two valid runs only');
  assert.deepEqual(p99.bastionByLimits[0]!.spread, [500, 700]);
  assert.equal(p99.mosquitto, 700);
  assert.deepEqual(p99.mosquittoSpread, [600, 800]);
  assert.equal(p99.ratio, 0.857);
  assert.ok(r.table.some((x) => x.metric === 'p999'), 'p99.9 is reported');

  const text = reportText(r);
  assert.match(text, /Bastion's limits: raised: every limit on/);
  assert.match(text, /a value with a range: the median of its valid runs \(lowest–highest\)/);
  const idleLine = text.split('\n').find((l) => l.includes('idle') && l.includes('KB/conn'))!;
  assert.match(idleLine, /invalid/);
  assert.doesNotMatch(idleLine, /×/, 'no ratio for an invalid cell');
  assert.match(text, /invalid \(the run failed its own preconditions; no value, no ratio\):\n.*Bastion: opened 30 of 246 connections/);
  assert.match(text, /latency tls bastion #1: INVALID the generator offered 1000 of 10000 msg\/s/);
  assert.match(text, /600 \(500–700\)/);
});
