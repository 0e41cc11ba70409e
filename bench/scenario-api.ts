/**
 * The shapes the bench scenarios share with the runner. Owns: what a scenario is, what it
 * is given to run and what it reports. Must not: hold any logic.
 */
import type { BrokerProcess } from './brokers.js';
import type { MqttVersion } from './packets.js';
import type { Target } from './worker-api.js';

export type Transport = 'tcp' | 'tls';
export type ServerKey = 'ec-p256' | 'rsa-2048';

export interface ScenarioContext {
  broker: BrokerProcess;
  transport: Transport;
  target: Target;
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
  run(ctx: ScenarioContext): Promise<Measured>;
}
