/**
 * The security audit of a running broker (issue 15 part 4): on a schedule
 * (`defender.audit.intervalSeconds`) and on demand, the static checks over the same input
 * as `bastion defender audit` plus the live checks over the connected clients of the whole
 * cluster, plus the claim certificates refused outside provisioning since the last audit.
 * Each run is kept as `last` and emitted as a `defender.audit` security event, which the
 * audit log records and the metrics turn into `bastion_defender_audit_findings{severity}`
 * and `bastion_defender_audits_total{trigger}`. Owns: the schedule, the live snapshot and
 * the claim-use counts' lifetime. Must not: decide findings (defender/audit/ does) or
 * change anything it audits (a finding suggests a fix; it never applies one).
 */
import { MAX_CLIENT_PAGE, type BrokerApi } from '../broker/api.js';
import type { BastionConfig } from '../core/config.js';
import { silentLogger, type Logger } from '../core/logger.js';
import type { SecurityEvents } from '../core/security-events.js';
import { claimUseFindings } from '../defender/audit/claim-use.js';
import { runAudit as staticChecks } from '../defender/audit/index.js';
import { liveChecks, type LiveClient, type LiveTakeover } from '../defender/audit/live.js';
import { buildReport, type AuditReport } from '../defender/audit/report.js';
import { ClaimUseWatch } from './claim-use-watch.js';
import { auditSourceOf, buildAuditSources, DEBIAN_BLACKLIST_DIR } from './defender-audit-input.js';

/** The first scheduled run comes this soon after start (or after one interval, when that is shorter). */
export const FIRST_AUDIT_DELAY_MS = 5000;
/** The `checks` of a `defender.audit` event: at most this many names. */
const MAX_EVENT_CHECKS = 20;

export type AuditTrigger = 'schedule' | 'operator';

export interface DefenderAuditsOptions {
  config: BastionConfig;
  /** Relative paths in the config resolve against this directory. */
  baseDir: string;
  /** The broker's data directory (absolute). */
  dataDir: string;
  /** Where the connected clients are listed (the cluster's directory once one is set). */
  api: BrokerApi;
  /** The broker's security events: `defender.audit` goes out on it, `authz.denied` comes in. */
  events: SecurityEvents;
  /** Milliseconds since the epoch (tests may fix it). */
  now?: () => number;
  logger?: Logger;
  /** Client ids taken over repeatedly, from behaviour detection; absent: none. */
  takeovers?: () => Array<{ clientId: string; count: number; windowMs: number }>;
  /** Where Debian's weak-key lists are looked for (tests). */
  blacklistDir?: string;
}

export class DefenderAudits {
  private readonly now: () => number;
  private readonly logger: Logger;
  private readonly takeovers: () => LiveTakeover[];
  private readonly claimUse: ClaimUseWatch;
  private lastReport: AuditReport | null = null;
  /** Runs go one after another (a scheduled one and an operator's never interleave). */
  private queue: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private scheduled: Promise<void> | null = null;
  private stopped = false;

  constructor(private readonly opts: DefenderAuditsOptions) {
    this.now = opts.now ?? Date.now;
    this.logger = opts.logger ?? silentLogger;
    this.takeovers = opts.takeovers ?? (() => []);
    this.claimUse = new ClaimUseWatch(opts.events, opts.api);
  }

  /** The last audit's report (null before the first). */
  get last(): AuditReport | null {
    return this.lastReport;
  }

  /**
   * Runs the audit now (after a run in progress), keeps it as `last` and emits it.
   * `actor` is who asked (an operator's run), logged with the result.
   */
  runAudit(trigger: AuditTrigger, actor?: string): Promise<AuditReport> {
    const run = this.queue.then(() => this.runOnce(trigger, actor));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async runOnce(trigger: AuditTrigger, actor: string | undefined): Promise<AuditReport> {
    const { config, baseDir, dataDir } = this.opts;
    const { input, revokedSerials } = await buildAuditSources(auditSourceOf(config, baseDir, dataDir), new Date(this.now()), this.opts.blacklistDir ?? DEBIAN_BLACKLIST_DIR);
    const clients = await this.connectedClients();
    // Taken last, once nothing can fail: a failed run leaves the counts to the next one.
    const claims = this.claimUse.take();
    const findings = [...staticChecks(input), ...liveChecks({ clients, takeovers: this.takeovers(), revokedSerials }), ...claimUseFindings(claims)];
    const report = buildReport(findings, new Date(this.now()));
    this.lastReport = report;
    const checks: string[] = [];
    for (const f of report.findings) if (!checks.includes(f.check)) checks.push(f.check);
    this.opts.events.emit({ type: 'defender.audit', trigger, findings: report.findings.length, counts: { ...report.counts }, checks: checks.slice(0, MAX_EVENT_CHECKS) });
    this.logger.info({ trigger, ...(actor !== undefined ? { actor } : {}), findings: report.findings.length, ...report.counts, clients: clients.length }, 'security audit done');
    return report;
  }

  /** Every connected client of the cluster (or this broker), paged through the directory. */
  private async connectedClients(): Promise<LiveClient[]> {
    const out: LiveClient[] = [];
    const unreachable = new Set<string>();
    let offset = 0;
    for (;;) {
      const page = await this.opts.api.directory.listClients(offset, MAX_CLIENT_PAGE);
      for (const n of page.unreachableNodes ?? []) unreachable.add(n);
      for (const c of page.clients) {
        out.push({
          clientId: c.clientId,
          ...(c.certificate !== null ? { certSerial: c.certificate.serialNumber, certFingerprint: c.certificate.fingerprint256 } : {}),
          remote: c.remoteAddress,
          connectedAt: new Date(c.connectedSince),
        });
      }
      offset += page.clients.length;
      // Clients come and go between pages; an empty page or the end of the total ends it.
      if (page.clients.length === 0 || offset >= page.total) break;
    }
    if (unreachable.size > 0) this.logger.warn({ nodes: [...unreachable] }, 'security audit: some cluster nodes did not answer; their clients were not checked');
    return out;
  }

  /** Schedules audits every `defender.audit.intervalSeconds` (0: only on demand). */
  start(): void {
    const intervalMs = this.opts.config.defender.audit.intervalSeconds * 1000;
    if (intervalMs === 0 || this.stopped || this.timer !== undefined) return;
    this.arm(Math.min(FIRST_AUDIT_DELAY_MS, intervalMs), intervalMs);
  }

  private arm(delayMs: number, intervalMs: number): void {
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.scheduled = this.runAudit('schedule')
        .then(
          () => undefined,
          (err: unknown) => this.logger.error({ err: err instanceof Error ? err.message : String(err) }, 'scheduled security audit failed'),
        )
        .finally(() => {
          this.scheduled = null;
          // The next run is counted from the end of this one: runs never overlap.
          if (!this.stopped) this.arm(intervalMs, intervalMs);
        });
    }, delayMs);
    this.timer.unref();
  }

  /** Cancels the schedule and waits for a run in progress; stops counting claim use. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    await this.scheduled;
    await this.queue;
    this.claimUse.stop();
  }
}
