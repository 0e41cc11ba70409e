/**
 * The shapes the bench scenarios share with the runner. Owns: what a scenario is, what it
 * is given to run and what it reports. Must not: hold any logic.
 */
import type { MqttVersion } from './packets.js';
import type { Target } from './worker-api.js';

export type Transport = 'tcp' | 'tls';
export type ServerKey = 'ec-p256' | 'rsa-2048';

/**
 * What a scenario watches of the broker under test: a BrokerProcess, or in cluster runs
 * (cluster-set.ts) a nats-server with one or two Bastion nodes (or Mosquitto alone).
 */
export interface BrokerUnderTest {
  /** Resolves with a description when the broker (any of its processes) exits. */
  readonly exited: Promise<string>;
  readonly alive: boolean;
  /** The last lines it printed, on one line. */
  log(): string;
  /** Resident set size in KB (every broker process). */
  rssKb(): number | null;
  /** User + system CPU ms of every broker process (a `--workers` primary and its workers). */
  cpuMs(): number | null;
  /** Cluster runs: the nats-server's CPU ms, sampled with the broker's; absent otherwise. */
  natsCpuMs?(): number | null;
  /** Cluster runs: CPU ms per broker process, by label (`a.primary`, `a.w1`…), sampled with the rest. */
  cpuParts?(): Record<string, number>;
}

export interface ScenarioContext {
  broker: BrokerUnderTest;
  transport: Transport;
  target: Target;
  /** Latency: where the publisher connects when not `target` (cluster: another node). */
  publisherTarget?: Target;
  version: MqttVersion;
  warmupMs: number;
  durationMs: number;
  idleConns: number;
}

export interface MetricDef {
  key: string;
  label: string;
  unit: string;
  lowerIsBetter: boolean;
}

export type Details = Record<string, number | string | null>;

export interface Measured {
  metrics: Record<string, number>;
  details: Details;
  /**
   * Why the run failed its own preconditions (connections refused, messages the limits
   * dropped, a generator that fell behind): its figures are then reported as invalid, with
   * this reason, never as a value or a ratio. Absent: the run measured what it claims.
   */
  invalid?: string;
}

export interface Scenario {
  n: number;
  id: string;
  title: string;
  metrics: MetricDef[];
  /** Bastion's persistence.enabled for this scenario. */
  persistence: boolean;
  /** Runs over mTLS only (TLS handshake scenarios); skipped for `--transport tcp`. */
  tlsOnly?: boolean;
  /** The key of the brokers' server certificate; default ECDSA P-256. */
  serverKey?: ServerKey;
  /**
   * Measures connection setup: Bastion's per-address connection limits are raised above
   * the load even in limits mode `defaults` (see BrokerOptions.raiseConnectionLimits).
   */
  raiseConnectionLimits?: boolean;
  /** Runs at least this many times per broker even without --repeat (a figure that moves a lot from run to run). */
  minRepeat?: number;
  run(ctx: ScenarioContext): Promise<Measured>;
}
