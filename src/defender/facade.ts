/**
 * What apps (the admin API, the console) see of the defender: alerts, restrictions,
 * releases, the effective rules, and the security audit. Owns: this interface and its
 * plain, serializable views. Must not: hold state (server/defender-side.ts fills it in).
 */
import type { DefenderActionName } from '../core/defender-config.js';
import type { AuditReport } from './audit/report.js';
import type { Rule } from './detect/rules.js';
import type { AlertQuery, DefenderAlert, Restriction } from './response/alert-store.js';

export interface DefenderRulesView {
  /** `config`: the config file's rules; `api`: replaced at run time (kept in defender-rules.json until reset). */
  source: 'config' | 'api';
  /** Who replaced them and when (ms since the epoch), for `api`. */
  setBy?: string;
  setAt?: number;
  enabled: boolean;
  dryRun: boolean;
  windowSeconds: number;
  rules: Rule[];
  /** The actions each rule takes (alert always). */
  actions: Record<string, DefenderActionName[]>;
}

export interface DefenderFacade {
  listAlerts(query: AlertQuery): { total: number; alerts: DefenderAlert[] };
  getAlert(id: number): DefenderAlert | null;
  /** Restrictions in force (quarantine, throttle, ban), oldest first. */
  restrictions(): Restriction[];
  /**
   * Lifts every restriction of `identity`, marks its active alerts released and forgets
   * what detection learned about it being abnormal (its alarm states); audited with `actor`.
   */
  release(identity: string, actor: string): Promise<{ alerts: number; restrictions: Restriction[] }>;
  rules(): DefenderRulesView;
  /**
   * Replaces the rules and/or actions at run time (`{rules?, actions?, defaultActions?}`,
   * the config's schema; absent keys keep the config's). A bad document throws a
   * BastionError ERR_DEFENDER_RULES naming the key. In a cluster every node takes it.
   */
  setRules(document: unknown, actor: string): Promise<DefenderRulesView>;
  /** Back to the config's rules and actions. */
  resetRules(actor: string): Promise<DefenderRulesView>;
  /** The last security audit's report (null before the first). */
  lastAudit(): AuditReport | null;
  /** Runs the security audit now (also the live checks) and records it; `actor` is who asked. */
  runAudit(actor: string): Promise<AuditReport>;
}
