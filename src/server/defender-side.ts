/**
 * The defender half of the composition root (issue 15): behaviour detection on the
 * broker's activity and security events, its window timer, the responder with its store
 * (`<dataDir>/defender.db`) and enforcement, the alerts topic and webhook, and the facade
 * the admin API serves. Owns: building those, their timers and their order. Must not:
 * decide anything (src/defender/ does).
 *
 * Order: `openDefenderSide` before the broker (the broker is built with its activity port,
 * its authorizer guard and its quota source), `attach` once the broker, its facade and the
 * ban list exist (restrictions in the store are enforced again before listeners open).
 *
 * SECURITY: the quarantine guard sits in front of every other authorizer, so a quarantined
 * device is confined whatever the ACL, provisioning or OTA would allow it.
 */
import type { BrokerApi } from '../broker/api.js';
import type { Broker } from '../broker/broker.js';
import type { AuthorizedClient, ClientActivity, ClientQuotaSource, DeliveryAuthorizer } from '../broker/ports.js';
import type { BastionConfig } from '../core/config.js';
import type { Logger } from '../core/logger.js';
import type { SecurityEvents } from '../core/security-events.js';
import type { AuditReport } from '../defender/audit/report.js';
import type { DefenderFacade, DefenderRulesView } from '../defender/facade.js';
import type { DefenderAlert, DefenderStore } from '../defender/response/alert-store.js';
import { BrokerEnforcement } from '../defender/response/enforcement.js';
import { Responder } from '../defender/response/responder.js';
import { actionsByRule } from '../defender/response/rule-actions.js';
import { Detector } from '../defender/runtime/detector.js';
import type { BanList } from '../security/limits/ban-list.js';
import { openDefenderStore } from '../store/sqlite/defender-store.js';
import { ClusterDefender, mergedAlerts } from './cluster-defender.js';
import { AlertPublisher } from './defender-alerts.js';
import { LiveRules } from './defender-rules.js';

/** How often the store is checked for the CLI's releases and for expired restrictions. */
const RECONCILE_MS = 1000;
/** How often alerts past `retentionDays` are pruned. */
const PRUNE_MS = 6 * 3600_000;

/** The security audits as the facade needs them (server/defender-audits.ts). */
export interface AuditRunner {
  readonly last: AuditReport | null;
  runAudit(trigger: 'schedule' | 'operator', actor?: string): Promise<AuditReport>;
}

export interface DefenderSide {
  /** The broker's activity port; null with detection off. */
  readonly activity: ClientActivity | null;
  /** The quarantine guard, then `next`. */
  guard(next: DeliveryAuthorizer): DeliveryAuthorizer;
  /** The throttle in front of the role quotas. */
  quotas(next: ClientQuotaSource | null): ClientQuotaSource;
  /** Once the broker exists: restrictions re-applied, events followed, the timers run. */
  attach(deps: { broker: Broker; api: BrokerApi; bans: BanList | null; roleOf: (client: AuthorizedClient) => string }): void;
  /** Where the scheduled and asked-for audits come from, once they exist. */
  useAudits(audits: AuditRunner): void;
  /** In a cluster: the shared state kind carrying restrictions, releases, learned state and alerts (made on the first call). */
  clusterKind(): ClusterDefender;
  /** In a cluster, after the shared state was read and `attach` ran: start sharing. */
  attachCluster(): void;
  readonly facade: DefenderFacade;
  /** The detector (tests and the live audit's takeover counts); null with detection off. */
  readonly detector: Detector | null;
  /** Closes the current window now and acts on it (the timer does this every window). */
  tick(now?: number): void;
  stop(): void;
}

export interface DefenderSideOptions {
  config: BastionConfig;
  dataDir: string;
  logger: Logger;
  events: SecurityEvents;
  nodeId: string;
  now?: () => number;
  /** Tests and simulations close windows themselves (tick); the timer is not started. */
  manualWindows?: boolean;
}

export function openDefenderSide(opts: DefenderSideOptions): DefenderSide {
  const { config, logger, events } = opts;
  const now = opts.now ?? Date.now;
  const settings = config.defender.detect;
  // The config's rules and actions, or those an operator set through the API since.
  const live = new LiveRules(settings, opts.dataDir, logger);
  const store: DefenderStore = openDefenderStore(opts.dataDir);
  let roleOf: (client: AuthorizedClient) => string = () => 'device';
  const detector = settings.enabled
    ? new Detector({ rules: live.rules, windowMs: settings.windowSeconds * 1000, topicLevels: settings.topicLevels, maxIdentities: settings.maxIdentities, maxAddresses: settings.maxAddresses, roleOf: (c) => roleOf(c), now })
    : null;
  live.onRules = (rules) => detector?.evaluator.replaceRules(rules);
  const enforcement = new BrokerEnforcement({ settings, limits: config.limits, now, liveClient: (identity) => detector?.liveClient(identity) ?? null });
  const publisher = new AlertPublisher({ settings, logger, onWebhook: (alert, outcome) => responder.record(alert.id, alert.rule, alert.identity, outcome) });
  const responder = new Responder({
    store,
    enforcement,
    settings: live.settings,
    events,
    notifier: publisher,
    nodeId: opts.nodeId,
    now,
    resetAlarms: (identity) => detector?.evaluator.resetAlarms(identity),
  });
  let audits: AuditRunner | null = null;
  let cluster: ClusterDefender | null = null;
  const timers: Array<ReturnType<typeof setInterval>> = [];
  let unsubscribe: (() => void) | null = null;

  const tick = (at = now()): void => {
    if (detector === null) return;
    try {
      responder.handle(detector.tick(at));
    } catch (err) {
      logger.error({ err: err instanceof Error ? err.message : String(err) }, 'defender window failed');
    }
  };

  const rulesView = (): DefenderRulesView => {
    const o = live.overridden;
    return {
      source: o === null ? 'config' : 'api',
      ...(o !== null ? { setBy: o.by, setAt: o.at } : {}),
      enabled: settings.enabled,
      dryRun: settings.dryRun,
      windowSeconds: settings.windowSeconds,
      rules: live.rules,
      actions: actionsByRule(live.settings, live.rules),
    };
  };

  const facade: DefenderFacade = {
    listAlerts: (query) => (cluster === null ? store.listAlerts(query) : mergedAlerts((q) => store.listAlerts(q), cluster.remote(query), query)),
    getAlert: (id) => store.getAlert(id),
    restrictions: () => store.activeRestrictions(),
    release: (identity, actor) => Promise.resolve(responder.release(identity, actor)),
    rules: rulesView,
    setRules: async (document, actor) => {
      const next = await live.set(document, actor, now());
      cluster?.rulesChanged(next);
      logger.info({ actor, rules: live.rules.length }, 'detection rules replaced');
      return rulesView();
    },
    resetRules: (actor) => {
      live.reset();
      cluster?.rulesChanged(null);
      logger.info({ actor }, 'detection rules reset to the config');
      return Promise.resolve(rulesView());
    },
    lastAudit: () => audits?.last ?? null,
    runAudit: (actor) => {
      if (audits === null) return Promise.reject(new Error('security audits are not running'));
      return audits.runAudit('operator', actor);
    },
  };

  return {
    activity: detector,
    detector,
    facade,
    guard: (next) => enforcement.guard(next),
    quotas: (next) => enforcement.quotas(next),
    attach({ broker, api, bans, roleOf: role }) {
      roleOf = role;
      enforcement.attach(api, bans);
      publisher.attach(broker);
      // SECURITY: what the store says is restricted is restricted again before anyone connects.
      responder.restore();
      if (detector !== null) {
        unsubscribe = events.on(detector.onEvent);
        // Deliveries are counted on the sessions and read once per window.
        const drain = (read: (client: AuthorizedClient, messages: number, bytes: number) => void): void => api.drainDeliveries(read);
        detector.drainDeliveries = drain;
        if (opts.manualWindows !== true) {
          const windows = setInterval(() => tick(), settings.windowSeconds * 1000);
          windows.unref();
          timers.push(windows);
        }
      }
      const reconcile = setInterval(() => {
        try {
          if (store.changedElsewhere() || responder.hasExpiring(now())) responder.reconcile();
        } catch (err) {
          logger.error({ err: err instanceof Error ? err.message : String(err) }, 'defender could not follow defender.db');
        }
      }, RECONCILE_MS);
      reconcile.unref();
      const prune = setInterval(() => store.prune(now() - settings.retentionDays * 86_400_000), PRUNE_MS);
      prune.unref();
      timers.push(reconcile, prune);
      if (settings.dryRun) logger.warn({}, 'defender.detect.dryRun is true: alarms are recorded and alerted, their actions are NOT taken');
    },
    useAudits(a) {
      audits = a;
    },
    clusterKind() {
      cluster ??= new ClusterDefender({ nodeId: opts.nodeId, store, responder, detector, rules: live, logger, now });
      return cluster;
    },
    attachCluster() {
      cluster?.attach();
    },
    tick,
    stop() {
      for (const t of timers) clearInterval(t);
      timers.length = 0;
      unsubscribe?.();
      publisher.stop();
      store.close();
    },
  };
}

export type { DefenderAlert };
