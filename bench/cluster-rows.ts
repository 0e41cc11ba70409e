/**
 * The rows of `npm run bench -- --cluster` (issue 12, "Measured"). Owns: which existing
 * scenario (scenarios.ts) each row runs, over which transport, against which brokers
 * (cluster-set.ts variants), which counter its per-message costs divide by, and the
 * targets the issue sets. Must not: start processes or generate load (the runner and the
 * scenarios do).
 */
import type { ClusterVariant } from './cluster-set.js';
import type { Details, Scenario, Transport } from './scenario-api.js';
import { SCENARIOS } from './scenarios.js';

/** A bar from the issue, checked on the row's first metric. */
export interface RowTarget {
  /** `second/first`: the "2 workers" column over the "1 worker" column; `first/mosquitto`: 1 worker over Mosquitto. */
  ratio: 'second/first' | 'first/mosquitto' | 'second/mosquitto';
  min: number;
  text: string;
}

export interface ClusterRow {
  n: number;
  id: string;
  title: string;
  /** The scenario whose load and metrics this row runs. */
  scenario: Scenario;
  /** Mosquitto's run in this row uses this scenario instead (the durable row: Mosquitto's non-durable QoS 1). */
  mosquittoScenario?: Scenario;
  transport: Transport;
  /** The table's columns, in order: "1 worker" (w1), "2 workers" (w2, or nodes2 for latency), Mosquitto, standalone Bastion. */
  first: ClusterVariant;
  second: ClusterVariant;
  mosquitto: boolean;
  /** Also run Bastion without a cluster section (same load, same limits): what cluster mode costs on top. */
  standalone: boolean;
  /** What the per-message costs count: the unit and its rate in a run's figures. */
  unit: 'connection' | 'delivery';
  unitRate(metrics: Record<string, number>, details: Details): number | null;
  targets: RowTarget[];
}

function scenario(id: string): Scenario {
  const s = SCENARIOS.find((x) => x.id === id);
  if (s === undefined) throw new Error(`no bench scenario ${id}`);
  return s;
}

const deliveries = (metrics: Record<string, number>): number | null => metrics.rate ?? null;
const received = (_m: Record<string, number>, d: Details): number | null => (typeof d.receivedPerSec === 'number' ? d.receivedPerSec : null);

export const CLUSTER_ROWS: ClusterRow[] = [
  {
    n: 1,
    id: 'connect-mtls',
    title: 'mTLS full handshake + CONNACK (scenario 5 over mTLS)',
    scenario: scenario('connect-rate'),
    transport: 'tls',
    first: 'w1',
    second: 'w2',
    mosquitto: true,
    standalone: true,
    unit: 'connection',
    unitRate: deliveries,
    targets: [{ ratio: 'second/first', min: 1.7, text: '2 workers ≥ 1.7× 1 worker' }],
  },
  {
    n: 2,
    id: 'qos0-fanin',
    title: 'QoS 0 fan-in 4→1 (scenario 1)',
    scenario: scenario('qos0-fanin'),
    transport: 'tcp',
    first: 'w1',
    second: 'w2',
    mosquitto: true,
    standalone: true,
    unit: 'delivery',
    unitRate: deliveries,
    targets: [],
  },
  {
    n: 3,
    id: 'qos1-fanin',
    title: 'QoS 1 fan-in 4→1 (scenario 2)',
    scenario: scenario('qos1-fanin'),
    transport: 'tcp',
    first: 'w1',
    second: 'w2',
    mosquitto: true,
    standalone: true,
    unit: 'delivery',
    unitRate: deliveries,
    targets: [],
  },
  {
    n: 4,
    id: 'fanout',
    title: 'QoS 0 fan-out 1→50 (scenario 3)',
    scenario: scenario('fanout'),
    transport: 'tcp',
    first: 'w1',
    second: 'w2',
    mosquitto: true,
    standalone: true,
    unit: 'delivery',
    unitRate: deliveries,
    targets: [],
  },
  {
    n: 5,
    id: 'latency-cross-node',
    title: 'latency @10k msg/s QoS 0 (scenario 4); 1 worker: publisher and subscriber on one node; 2 workers column: 2 nodes, publisher on one, subscriber on the other',
    scenario: scenario('latency'),
    transport: 'tcp',
    first: 'w1',
    second: 'nodes2',
    mosquitto: true,
    standalone: true,
    unit: 'delivery',
    unitRate: received,
    targets: [],
  },
  {
    n: 6,
    id: 'durable-qos1',
    title: 'durable QoS 1 fan-in 4→1 (scenario 7, persistent session in the cluster); Mosquitto: non-durable QoS 1 (scenario 2)',
    scenario: scenario('durable-qos1'),
    mosquittoScenario: scenario('qos1-fanin'),
    transport: 'tcp',
    first: 'w1',
    second: 'w2',
    mosquitto: true,
    standalone: true,
    unit: 'delivery',
    unitRate: deliveries,
    targets: [
      { ratio: 'first/mosquitto', min: 1, text: "1 worker ≥ Mosquitto's non-durable QoS 1" },
      { ratio: 'second/mosquitto', min: 1, text: "2 workers ≥ Mosquitto's non-durable QoS 1" },
    ],
  },
];

/** The rows named in `--only` (ids or numbers), or an error naming what is unknown. */
export function selectRows(only: string[] | null): ClusterRow[] | { unknown: string[] } {
  if (only === null) return CLUSTER_ROWS;
  const unknown = only.filter((w) => !CLUSTER_ROWS.some((r) => r.id === w || String(r.n) === w));
  if (unknown.length > 0) return { unknown };
  return CLUSTER_ROWS.filter((r) => only.includes(r.id) || only.includes(String(r.n)));
}
