/**
 * The console overview's live data: once a second, the broker's connections, sessions and
 * subscriptions, and the rates of messages in and out, drops, authentication failures,
 * refusals and ACL denials since the second before, with the behaviour alerts in force and,
 * in a cluster, the live nodes. Keeps the last five minutes so a page that opens sees
 * history at once. Owns: the sampling timer and the rate arithmetic. Must not: serve HTTP
 * (admin/api/overview-routes.ts does) or walk the sessions more than once a second.
 */
import type { OverviewSample, OverviewSource } from '../admin/api/services.js';
import type { Broker } from '../broker/broker.js';
import { brokerCounts } from '../broker/sys/broker-stats.js';
import type { ClusterNode } from '../cluster/cluster-node.js';
import type { Logger } from '../core/logger.js';
import type { SecurityEvent } from '../core/security-events.js';
import { bastionVersion } from './metrics-side.js';

const SAMPLE_MS = 1000;
/** Five minutes of one-second samples. */
const HISTORY = 300;

interface Totals {
  at: number;
  received: number;
  sent: number;
  dropped: number;
  authFailures: number;
  refusals: number;
  denials: number;
}

export interface OverviewOptions {
  broker: Broker;
  logger: Logger;
  cluster?: ClusterNode | null;
  /** Behaviour alerts in force; null without behaviour detection. */
  activeAlerts?: () => number | null;
  now?: () => number;
}

export class ConsoleOverview implements OverviewSource {
  private readonly samples: OverviewSample[] = [];
  private readonly listeners = new Set<(s: OverviewSample) => void>();
  private readonly counted = { authFailures: 0, refusals: 0, denials: 0 };
  private last: Totals | null = null;
  private timer: NodeJS.Timeout | null = null;
  private detach: (() => void) | null = null;
  private readonly startedAt: number;
  private readonly now: () => number;

  constructor(private readonly opts: OverviewOptions) {
    this.now = opts.now ?? Date.now;
    this.startedAt = this.now();
  }

  start(): void {
    this.detach = this.opts.broker.events.on((e) => this.count(e));
    this.last = this.totals();
    this.timer = setInterval(() => this.tick(), SAMPLE_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.detach?.();
    this.detach = null;
    this.listeners.clear();
  }

  info(): object {
    const cluster = this.opts.cluster ?? null;
    const status = cluster?.status();
    return {
      node: cluster?.nodeId ?? null,
      version: bastionVersion(),
      startedAt: new Date(this.startedAt).toISOString(),
      cluster: status === undefined ? null : { nodeId: status.nodeId, connected: status.connected, server: status.server, liveNodes: status.liveNodes, nodes: status.nodeIds.map((id) => ({ id, self: id === status.nodeId })) },
    };
  }

  history(): OverviewSample[] {
    return [...this.samples];
  }

  subscribe(listener: (sample: OverviewSample) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private count(e: SecurityEvent): void {
    // Aggregated events (the audit log's) carry how many they stand for.
    if (e.type === 'auth.failure') this.counted.authFailures += 1;
    else if (e.type === 'connection.refused') this.counted.refusals += e.count ?? 1;
    else if (e.type === 'authz.denied') this.counted.denials += e.count ?? 1;
  }

  private totals(): Totals {
    const c = this.opts.broker.counters;
    return {
      at: this.now(),
      received: c.received[0] + c.received[1] + c.received[2],
      sent: c.sent[0] + c.sent[1] + c.sent[2],
      dropped: c.droppedQueueFull + c.droppedExpired + c.droppedTooLarge + c.droppedQuota,
      ...this.counted,
    };
  }

  private tick(): void {
    try {
      const now = this.totals();
      const before = this.last ?? now;
      this.last = now;
      const seconds = Math.max(0.001, (now.at - before.at) / 1000);
      const rate = (k: keyof Omit<Totals, 'at'>): number => Math.round(((now[k] - before[k]) / seconds) * 10) / 10;
      const stats = brokerCounts(this.opts.broker);
      const sample: OverviewSample = {
        t: now.at,
        connections: stats.connected,
        sessions: stats.sessions,
        subscriptions: stats.subscriptions,
        messagesInPerSec: rate('received'),
        messagesOutPerSec: rate('sent'),
        dropsPerSec: rate('dropped'),
        authFailuresPerSec: rate('authFailures'),
        refusalsPerSec: rate('refusals'),
        denialsPerSec: rate('denials'),
        alertsActive: this.opts.activeAlerts?.() ?? null,
      };
      this.samples.push(sample);
      if (this.samples.length > HISTORY) this.samples.shift();
      for (const l of this.listeners) l(sample);
    } catch (err) {
      this.opts.logger.error({ err: (err as Error).message }, 'console overview sample failed');
    }
  }
}
