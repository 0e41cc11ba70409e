/**
 * Metrics counted from the security event stream (core/security-events.ts): refused
 * connections, authentication failures, authorization denials, limit hits and the messages
 * they dropped, bans added, TLS handshakes and their failures. Owns: those counters and
 * their label values. Must not: count what broker state already holds (read at scrape
 * time by state-metrics.ts), or keep a label value that a client chooses.
 *
 * SECURITY: every label value comes from a fixed set (listener names from the config,
 * provider and limit names from the code, TLS failures mapped to a fixed vocabulary), so a
 * flood of odd connections cannot grow the number of series.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { LimitName, SecurityEvent, SecurityEvents } from '../../core/security-events.js';
import { tlsFailureReason } from './tls-failure-reason.js';

/** Distinct provider names kept as labels; past this (or for an odd name) they count as "other". */
const MAX_PROVIDERS = 32;
const PROVIDER_NAME = /^[A-Za-z0-9._:-]{1,40}$/;

/** Limits whose hits are messages not delivered, and the `cause` they count under. */
const DROP_CAUSE: Partial<Record<LimitName, string>> = {
  'publish-rate': 'rate_limit',
  bandwidth: 'bandwidth',
  'slow-client': 'slow_client',
  inflight: 'inflight',
  // queue-full and packet-size drops of deliveries are counted by the broker's own counters
  // (state-metrics.ts), not twice.
};

export class EventMetrics {
  private readonly refused: Counter<'stage'>;
  private readonly authFailures: Counter<'provider'>;
  private readonly authzDenials: Counter<'action'>;
  private readonly limitHits: Counter<'limit' | 'action'>;
  /** Messages refused by a limit; state-metrics adds the broker's own drop counters to the same family. */
  readonly droppedByLimits = new Map<string, number>();
  private readonly bansAdded: Counter<'origin'>;
  private readonly provisioning: Counter<'action' | 'outcome' | 'code'>;
  private readonly jobs: Counter<'status' | 'actor'>;
  private readonly handshakes: Counter<'listener' | 'kind' | 'group'>;
  private readonly handshakeFailures: Counter<'listener' | 'reason'>;
  private readonly alarms: Counter<'rule'>;
  private readonly activeAlarms: Gauge;
  private readonly defenderActions: Counter<'action' | 'outcome'>;
  private readonly auditFindings: Gauge<'severity'>;
  private readonly audits: Counter<'trigger'>;
  private readonly unsubscribe: () => void;
  private readonly providers = new Set<string>();

  constructor(registry: Registry, events: SecurityEvents) {
    const registers = [registry];
    this.refused = new Counter({ name: 'bastion_connections_refused_total', help: 'Connections refused before a session opened, by stage (accept, tls, connect, auth, admission).', labelNames: ['stage'], registers });
    this.authFailures = new Counter({ name: 'bastion_auth_failures_total', help: 'Authentication failures, by the provider that refused.', labelNames: ['provider'], registers });
    this.authzDenials = new Counter({ name: 'bastion_authz_denials_total', help: 'Authorization denials, by action (publish, subscribe, will, receive).', labelNames: ['action'], registers });
    this.limitHits = new Counter({ name: 'bastion_limit_hits_total', help: 'Times a limit refused, dropped, rejected or disconnected something.', labelNames: ['limit', 'action'], registers });
    this.bansAdded = new Counter({ name: 'bastion_bans_added_total', help: 'Ban and allow-list entries added, by origin (auto: brute force or flapping; operator).', labelNames: ['origin'], registers });
    this.handshakes = new Counter({
      name: 'bastion_tls_handshakes_total',
      help: 'TLS handshakes completed, by listener, kind (full or resumed) and key-exchange group (X25519MLKEM768: hybrid post-quantum).',
      labelNames: ['listener', 'kind', 'group'],
      registers,
    });
    this.handshakeFailures = new Counter({ name: 'bastion_tls_handshake_failures_total', help: 'TLS handshakes that failed, by listener and reason.', labelNames: ['listener', 'reason'], registers });
    for (const origin of ['auto', 'operator']) this.bansAdded.inc({ origin }, 0);
    // Rule names come from the config (or the built-in set), not from clients.
    this.alarms = new Counter({ name: 'bastion_defender_alarms_total', help: 'Behaviour alarms raised, by rule.', labelNames: ['rule'], registers });
    this.activeAlarms = new Gauge({ name: 'bastion_defender_active_alarms', help: 'Behaviour alarms raised on this node and not yet cleared or released.', registers });
    this.defenderActions = new Counter({
      name: 'bastion_defender_actions_total',
      help: 'Defender actions (quarantine, throttle, disconnect, ban, webhook) by outcome (applied, dry-run, failed, released).',
      labelNames: ['action', 'outcome'],
      registers,
    });
    this.auditFindings = new Gauge({ name: 'bastion_defender_audit_findings', help: 'Findings of the last security audit, by severity.', labelNames: ['severity'], registers });
    this.audits = new Counter({ name: 'bastion_defender_audits_total', help: 'Security audits run, by trigger (schedule, operator).', labelNames: ['trigger'], registers });
    this.provisioning = new Counter({
      name: 'bastion_provisioning_total',
      help: 'Device provisioning and renewal: certificates from CSRs, registrations, renewals, superseded and expired certificates, by outcome and refusal code.',
      labelNames: ['action', 'outcome', 'code'],
      registers,
    });
    this.jobs = new Counter({ name: 'bastion_ota_job_executions_total', help: 'OTA job execution state changes, by new status and who made it (device or service).', labelNames: ['status', 'actor'], registers });
    this.unsubscribe = events.on((event) => this.count(event));
  }

  /**
   * A TLS listener's handshake series exist at 0 before its first handshake (so rate() sees
   * the start). SECURITY (cardinality): a negotiated group is always one the listener
   * offered, so the `group` label has at most that many values.
   */
  declareTlsListener(listener: string, groups: readonly string[]): void {
    for (const kind of ['full', 'resumed']) for (const group of groups) this.handshakes.inc({ listener, kind, group }, 0);
  }

  close(): void {
    this.unsubscribe();
  }

  /**
   * SECURITY: a provider name may echo what a client asked for (an enhanced-auth method it
   * made up); only plain, few names become label values.
   */
  private providerLabel(provider: string): string {
    if (this.providers.has(provider)) return provider;
    if (!PROVIDER_NAME.test(provider) || this.providers.size >= MAX_PROVIDERS) return 'other';
    this.providers.add(provider);
    return provider;
  }

  private count(event: SecurityEvent): void {
    switch (event.type) {
      case 'connection.refused':
        this.refused.inc({ stage: event.stage });
        return;
      case 'auth.failure':
        this.authFailures.inc({ provider: this.providerLabel(event.provider) });
        return;
      case 'authz.denied':
        this.authzDenials.inc({ action: event.action });
        return;
      case 'limit.hit': {
        const n = event.count > 0 ? event.count : 1;
        this.limitHits.inc({ limit: event.limit, action: event.action }, n);
        const cause = DROP_CAUSE[event.limit];
        if (cause !== undefined && (event.action === 'dropped' || event.action === 'rejected')) this.droppedByLimits.set(cause, (this.droppedByLimits.get(cause) ?? 0) + n);
        return;
      }
      case 'ban.added':
        this.bansAdded.inc({ origin: event.auto ? 'auto' : 'operator' });
        return;
      case 'tls.handshake':
        if (event.ok) this.handshakes.inc({ listener: event.listener, kind: event.resumed ? 'resumed' : 'full', group: event.group ?? 'none' });
        else this.handshakeFailures.inc({ listener: event.listener, reason: tlsFailureReason(event.reason) });
        return;
      case 'provisioning':
        this.provisioning.inc({ action: event.action, outcome: event.outcome, code: event.errorCode ?? 'none' });
        return;
      case 'job':
        this.jobs.inc({ status: event.action, actor: event.actor });
        return;
      case 'defender.alarm':
        if (event.state === 'ALARM') {
          this.alarms.inc({ rule: event.rule });
          this.activeAlarms.inc();
        } else this.activeAlarms.dec();
        return;
      case 'defender.action':
        this.defenderActions.inc({ action: event.action, outcome: event.outcome });
        return;
      case 'defender.audit':
        this.audits.inc({ trigger: event.trigger });
        for (const severity of ['low', 'medium', 'high', 'critical'] as const) this.auditFindings.set({ severity }, event.counts[severity]);
        return;
      case 'connection.accepted':
      case 'client.disconnected':
      case 'ban.removed':
      case 'revocation.applied':
      case 'admin.change':
      case 'campaign':
        // Counted from broker state (sessions, connections) or not a metric.
        return;
      default: {
        const unknown: never = event;
        void unknown;
      }
    }
  }
}
