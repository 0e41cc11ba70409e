/**
 * Bastion's Prometheus metrics: one registry per broker (several brokers run in one test
 * process, so never prom-client's global one) with the families of state-metrics.ts,
 * event-metrics.ts and cert-expiry.ts (and, on a cluster node, cluster-metrics.ts),
 * followed by the process metrics every broker in the process shares. Owns: assembling a scrape. Must not: serve HTTP or authenticate (the
 * admin server does both, with the API's operator authentication).
 */
import { Registry } from 'prom-client';
import type { Logger } from '../../core/logger.js';
import type { SecurityEvents } from '../../core/security-events.js';
import { CertificateExpiry, type CertificateFile } from './cert-expiry.js';
import { ClusterMetrics, type ClusterStatusView } from './cluster-metrics.js';
import { EventMetrics } from './event-metrics.js';
import { OtaTransferMetrics, type OtaTransferCounts } from './ota-transfer-metrics.js';
import { processRegistry } from './process-metrics.js';
import { StateMetrics, type StateSources } from './state-metrics.js';

export type { CertificateFile } from './cert-expiry.js';
export type { StateSources } from './state-metrics.js';
export type { ClusterStatusView } from './cluster-metrics.js';
export type { OtaTransferCounts } from './ota-transfer-metrics.js';

/** What the admin server needs to answer GET /metrics. */
export interface MetricsEndpoint {
  /** `text/plain; version=0.0.4; charset=utf-8` (the Prometheus text format). */
  readonly contentType: string;
  render(): Promise<string>;
}

export interface BrokerMetricsOptions extends StateSources {
  events: SecurityEvents;
  /** The certificate files whose expiry is shown. */
  certificates: readonly CertificateFile[];
  /** TLS listeners and the key-exchange groups each offers, so their handshake series exist (at 0) from the start. */
  tlsListeners: ReadonlyArray<{ name: string; groups: readonly string[] }>;
  logger: Logger;
  /** On a cluster node: its status (the cluster families appear only then). */
  cluster?: () => ClusterStatusView;
  /** The OTA block transfer counters (null while the service is not running). */
  otaTransfer?: () => OtaTransferCounts | null;
  now?: () => number;
}

export class BrokerMetrics implements MetricsEndpoint {
  readonly contentType = Registry.PROMETHEUS_CONTENT_TYPE;
  private readonly registry = new Registry();
  private readonly state: StateMetrics;
  private readonly events: EventMetrics;
  private readonly certificates: CertificateExpiry;
  private readonly cluster: ClusterMetrics | null;
  private readonly otaTransfer: OtaTransferMetrics | null;
  private readonly now: () => number;

  constructor(opts: BrokerMetricsOptions) {
    this.now = opts.now ?? Date.now;
    this.state = new StateMetrics(this.registry, opts);
    this.events = new EventMetrics(this.registry, opts.events);
    for (const l of opts.tlsListeners) this.events.declareTlsListener(l.name, l.groups);
    this.certificates = new CertificateExpiry(this.registry, opts.certificates, opts.logger);
    this.cluster = opts.cluster !== undefined ? new ClusterMetrics(this.registry, opts.cluster) : null;
    this.otaTransfer = opts.otaTransfer !== undefined ? new OtaTransferMetrics(this.registry, opts.otaTransfer) : null;
  }

  async render(): Promise<string> {
    const now = this.now();
    await this.certificates.refresh(now);
    // Broker state last, right before the text is built (no I/O in between).
    this.state.refresh(now, this.events.droppedByLimits);
    this.cluster?.refresh();
    this.otaTransfer?.refresh();
    const own = await this.registry.metrics();
    const process = await processRegistry().metrics();
    return `${own}\n${process}`;
  }

  /** Stops counting events (the broker is stopping). */
  close(): void {
    this.events.close();
  }
}
