/**
 * Composition of the metrics side: the Prometheus registry the admin API serves at
 * /metrics (config `metrics.enabled`, only when the admin API runs) and the `$SYS/broker/...`
 * publisher (config `sys.intervalSeconds`, 0: off). Owns: what the metrics read (broker
 * state, listeners, the ban list, certificate files, the cluster node's status, the OTA
 * block transfer's counters, the package version, the heap) and
 * the $SYS timer's life. Must not: serve HTTP (admin/api does) or compute a value.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { RunningAdminApi } from '../admin/api/admin-server.js';
import { BrokerMetrics, type CertificateFile, type OtaTransferCounts } from '../admin/metrics/metrics.js';
import type { Broker } from '../broker/broker.js';
import type { ClusterNode } from '../cluster/cluster-node.js';
import { brokerStats } from '../broker/sys/broker-stats.js';
import { SysTopics } from '../broker/sys/sys-topics.js';
import type { BastionConfig } from '../core/config.js';
import type { Logger } from '../core/logger.js';
import { offeredGroups } from '../core/tls-config.js';
import type { RunningListener } from '../transport/listener.js';

export interface MetricsSideOptions {
  config: BastionConfig;
  baseDir: string;
  broker: Broker;
  /** The running listeners (filled in as they start). */
  listeners: readonly RunningListener[];
  logger: Logger;
  /** The ban and allow-list entries, or null while no ban list runs. */
  bans: () => ReadonlyArray<{ kind: string; list?: string; expiresAt: number | null }> | null;
  /** This node's place in a cluster (its metrics are served too), or null. */
  cluster?: ClusterNode | null;
  /** The OTA block transfer counters (null while the service is not running). */
  otaTransfer?: () => OtaTransferCounts | null;
}

export interface MetricsSide {
  /** Serves /metrics on the admin API (when both are on) and starts $SYS (when on). */
  start(admin: RunningAdminApi | null): void;
  /** Stops $SYS and the event counting; safe to call twice. */
  stop(): void;
}

/** The version the package says, for `$SYS/broker/version`. */
export function bastionVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}

/** Every certificate file the listeners (and the admin API) present or trust. */
function certificateFiles(config: BastionConfig, baseDir: string): CertificateFile[] {
  const files: CertificateFile[] = [];
  const add = (listener: string, tls: { cert: string; ca?: string | undefined } | undefined): void => {
    if (tls === undefined) return;
    files.push({ listener, cert: 'server', path: resolve(baseDir, tls.cert) });
    if (tls.ca !== undefined) files.push({ listener, cert: 'ca', path: resolve(baseDir, tls.ca) });
  };
  for (const l of config.listeners) add(l.name, l.tls);
  if (config.admin !== undefined) add('admin', config.admin.tls);
  return files;
}

export function createMetricsSide(opts: MetricsSideOptions): MetricsSide {
  const { config, broker } = opts;
  const cluster = opts.cluster ?? null;
  const wantMetrics = config.metrics.enabled && config.admin !== undefined;
  const metrics = wantMetrics
    ? new BrokerMetrics({
        events: broker.events,
        stats: () => brokerStats(broker),
        listeners: () => opts.listeners.map((l) => ({ name: l.config.name, connections: l.connections.size })),
        bans: opts.bans,
        certificates: certificateFiles(config, opts.baseDir),
        tlsListeners: config.listeners.flatMap((l) => (l.tls !== undefined ? [{ name: l.name, groups: offeredGroups(l.tls) }] : [])),
        logger: opts.logger,
        ...(cluster !== null ? { cluster: () => cluster.status() } : {}),
        ...(opts.otaTransfer !== undefined ? { otaTransfer: opts.otaTransfer } : {}),
      })
    : null;
  let sys: SysTopics | null = null;
  return {
    start(admin) {
      if (metrics !== null) admin?.serveMetrics(metrics);
      if (config.sys.intervalSeconds > 0 && sys === null) {
        sys = new SysTopics({ broker, intervalSeconds: config.sys.intervalSeconds, version: `bastion version ${bastionVersion()}`, heapBytes: () => process.memoryUsage().heapUsed });
        sys.start();
      }
    },
    stop() {
      sys?.stop();
      metrics?.close();
    },
  };
}
