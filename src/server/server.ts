/**
 * The composition root: config → adapters → broker → listeners, and graceful shutdown.
 * Only this module (and the CLI) picks adapters.
 */
import { mkdirSync } from 'node:fs';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { Broker } from '../broker/broker.js';
import type { EnhancedAuthMethod, SessionStore } from '../broker/ports.js';
import type { BastionConfig } from '../core/config.js';
import type { Logger } from '../core/logger.js';
import { silentLogger } from '../core/logger.js';
import type { PasswordHasher } from '../security/authn/password-hash.js';
import { buildAuthn } from './authn-runtime.js';
import { SqliteStore } from '../store/sqlite/sqlite-store.js';
import { startListener, type RunningListener } from '../transport/listener.js';
import { startPkiDuties, type PkiDuties } from './pki-runtime.js';
import { startWebSocketListener } from '../transport/websocket.js';
import { RevocationEnforcer } from './revocation.js';
import { configuredPkiDir } from './pki-layout.js';
import { revocationFinding } from './listener-lint.js';
import { startAuthz } from './authz-side.js';
import type { PolicyService } from '../security/authz/policy-service.js';
import { startAdminSide, type AdminSide } from './admin-side.js';
import type { RunningAdminApi } from '../admin/api/admin-server.js';
import { SecurityEvents } from '../core/security-events.js';
import { ConnectionGuard } from '../security/limits/connection-guard.js';
import { publishQuotaFactory } from '../security/limits/client-limits.js';
import { createMetricsSide } from './metrics-side.js';
import { startAuditSide, type AuditSide } from './audit-side.js';
import { acquireDataDirLock } from './data-dir-lock.js';
import { startPendingChangesDrain, type PendingChangesDrain } from './pending-changes-drain.js';
import { connectClusterSide } from './cluster-side.js';
import { startClusterSharedState, type ClusterSharedState } from './cluster-shared-state.js';
import { ClusterTicketKeys, ticketKeyFiles } from './cluster-tickets.js';
import { ClusterPki } from './cluster-pki.js';
import { openProvisioningSide } from './provisioning-side.js';
import { openOtaSide } from './ota-side.js';
import type { ClusterNode } from '../cluster/cluster-node.js';
import { ClusterAccess } from './cluster-access.js';
import { openDefenderSide, type DefenderSide } from './defender-side.js';
import { DefenderAudits } from './defender-audits.js';

/** How often the CRLs in use are checked for (impending) expiry. */
const CRL_FRESHNESS_CHECK_MS = 3600_000;

export interface ServerOptions {
  config: BastionConfig;
  /** Relative paths in the config resolve against this directory. */
  baseDir: string;
  logger?: Logger;
  /** MQTT 5 enhanced authentication methods to offer (AUTH packet exchange). */
  enhancedAuth?: EnhancedAuthMethod[];
  /** The password hasher of the password provider (tests count its scrypt calls). */
  passwordHasher?: PasswordHasher;
  /**
   * Simulations drive behaviour detection's clock and windows themselves (the fleet
   * simulator compresses hours into minutes; `server.defender.tick(at)` closes a window).
   */
  defenderClock?: { now: () => number; manualWindows: boolean };
}

export interface BastionServer {
  readonly broker: Broker;
  readonly listeners: RunningListener[];
  /** Where persistent sessions are kept: the SQLite store, or in a cluster the cluster's. */
  readonly store: SessionStore | null;
  /** CRL renewal and the OCSP responder, when config `pki` asks for them. */
  readonly pki: PkiDuties | null;
  /** Roles, rules and bindings (config + store), explain and lint: the authorization facade. */
  readonly authz: PolicyService;
  /** The HTTPS admin API, when config `admin` asks for it. */
  readonly admin: RunningAdminApi | null;
  /** The tamper-evident audit log (audit-side.ts). */
  readonly audit: AuditSide;
  /** This node's place in the cluster, when config `cluster` asks for one. */
  readonly cluster: ClusterNode | null;
  /** Behaviour detection, its alerts and actions, and the security audits (defender-side.ts). */
  readonly defender: DefenderSide;
  /** Graceful stop: stop accepting, DISCONNECT 0x8B, wills, flush, close the store. */
  stop(): Promise<void>;
}

export async function startServer(opts: ServerOptions): Promise<BastionServer> {
  const { config } = opts;
  const logger = opts.logger ?? silentLogger;
  const dataDir = resolve(opts.baseDir, config.dataDir);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  // SECURITY: one broker per data directory, decided before any store opens: a second
  // writer would fork the audit chain and interleave the session store's batches.
  const lock = acquireDataDirLock(dataDir, logger, shownPath(dataDir));
  try {
    return await startLocked(opts, dataDir, logger, lock.release);
  } catch (err) {
    lock.release();
    throw err;
  }
}

/** The directory as an operator would type it: `./data` inside the working directory, else absolute. */
function shownPath(dir: string): string {
  const rel = relative(process.cwd(), dir);
  return rel === '' ? '.' : rel.startsWith('..') || isAbsolute(rel) ? dir : `./${rel}`;
}

/** Everything after the data directory lock; `unlock` runs last at stop. */
async function startLocked(opts: ServerOptions, dataDir: string, logger: Logger, unlock: () => void): Promise<BastionServer> {
  const { config } = opts;
  // Device provisioning's records first: the provision-token provider reads them.
  const provisioning = openProvisioningSide(config, opts.baseDir, dataDir, logger, (p) => resolve(opts.baseDir, p));
  // Before the store: a bad JWT key file fails the start with nothing to close but this.
  let authn: ReturnType<typeof buildAuthn>;
  try {
    authn = buildAuthn(config, dataDir, (p) => resolve(opts.baseDir, p), logger, {
      ...(opts.passwordHasher !== undefined ? { hasher: opts.passwordHasher } : {}),
      ...(provisioning.tokenProvider !== null ? { provisionTokens: provisioning.tokenProvider } : {}),
    });
  } catch (err) {
    provisioning.stop();
    throw err;
  }
  // A failed background write keeps its batch and withholds the acknowledgements that
  // wait on it (nothing is confirmed that is not stored); it is logged, and retried on the
  // next write.
  // In a cluster, persistent sessions and retained messages live in the cluster instead.
  const store = config.persistence.enabled && config.cluster === undefined
    ? new SqliteStore({
        path: join(dataDir, 'bastion.db'),
        synchronous: config.persistence.synchronous,
        onError: (err) => logger.error({ code: err.code, err: err.message }, 'store write failed; acknowledgements are held until it succeeds'),
      })
    : null;
  let cluster: ClusterNode | null;
  try {
    // Before the broker, which is built with it; a NATS that cannot be reached fails the start.
    cluster = await connectClusterSide(config, opts.baseDir, logger);
  } catch (err) {
    store?.close();
    authn.close();
    provisioning.stop();
    throw err;
  }
  // One stream of security events for the audit log, the metrics and the automatic bans.
  const events = new SecurityEvents(logger);
  let authz: ReturnType<typeof startAuthz> | null = null;
  let ota: ReturnType<typeof openOtaSide> | null = null;
  let defender: DefenderSide;
  try {
    authz = startAuthz(config, dataDir, logger);
    // OTA jobs (<dataDir>/ota-jobs.db) and block transfer: their guards go in front of the ACL below.
    ota = openOtaSide(dataDir, logger, config.ota);
    // Behaviour detection: the broker is built with its activity port, quarantine guard and throttle.
    defender = openDefenderSide({ config, dataDir, logger, events, nodeId: cluster?.nodeId ?? 'node-1', ...(opts.defenderClock !== undefined ? { now: opts.defenderClock.now, manualWindows: opts.defenderClock.manualWindows } : {}) });
  } catch (err) {
    // An unreadable rule store or database fails the start, with the NATS connection closed (or the process would not exit).
    ota?.stop();
    authz?.close();
    await cluster?.close();
    store?.close();
    authn.close();
    provisioning.stop();
    throw err;
  }
  return startWithParts(opts, dataDir, logger, unlock, { provisioning, authn, store, cluster, authz, ota, defender, events });
}

interface Parts {
  provisioning: ReturnType<typeof openProvisioningSide>;
  authn: ReturnType<typeof buildAuthn>;
  store: SqliteStore | null;
  cluster: ClusterNode | null;
  authz: ReturnType<typeof startAuthz>;
  ota: ReturnType<typeof openOtaSide>;
  defender: DefenderSide;
  events: SecurityEvents;
}

/** The broker, the shared state, the audit log, the admin side and the listeners, over the parts opened before. */
async function startWithParts(opts: ServerOptions, dataDir: string, logger: Logger, unlock: () => void, parts: Parts): Promise<BastionServer> {
  const { config } = opts;
  const { provisioning, authn, store, cluster, authz, ota, defender, events } = parts;
  if (!config.limits.enabled) logger.warn({}, 'limits.enabled is false: connection, rate, ban and slow-client protection are OFF');
  const broker = new Broker({
    events,
    limits: config.limits,
    publishQuota: publishQuotaFactory(config.limits),
    mqtt: config.mqtt,
    // In a cluster, sessions live in the cluster so any node resumes them; retained messages too.
    store: cluster !== null ? cluster.sessionStore : store,
    retainStore: cluster !== null ? null : store,
    authenticator: authn.authenticator,
    // SECURITY: provisioning's own rules (claims confined, a device's certificate topics its own), then OTA's (a device's jobs and image downloads its own), before the ACL.
    // SECURITY: the defender's quarantine comes first: a quarantined device is confined whatever the rest allows.
    authorizer: defender.guard(provisioning.guard(ota.guard(authz.engine))),
    // The same engine gives a client its role's quota (publish rates, subscriptions, queue); a defender throttle overrides it.
    quotas: defender.quotas(authz.engine),
    activity: defender.activity,
    enhancedAuth: [...(opts.enhancedAuth ?? []), ...authn.enhancedAuth],
    logger,
    cluster,
    ...(cluster !== null ? { nodeId: cluster.nodeId } : {}),
  });
  const recovered = broker.recover();
  // Provisioning answers on its $bastion/ topics from the first client on.
  provisioning.attach(broker, events, authz.service);
  ota.attach(broker, events);
  if (store !== null) logger.info(recovered, 'state recovered');

  const revocation = new RevocationEnforcer(broker, logger);
  const crlFreshness = setInterval(() => revocation.checkFreshness(), CRL_FRESHNESS_CHECK_MS);
  crlFreshness.unref();
  const listeners: RunningListener[] = [];
  let pki: PkiDuties | null = null;
  let adminSide: AdminSide | null = null;
  // Prometheus metrics (served by the admin API) and $SYS: they read the broker, the listeners and the ban list.
  const metricsSide = createMetricsSide({ config, baseDir: opts.baseDir, broker, listeners, logger, bans: () => adminSide?.bans.list() ?? null, cluster, otaTransfer: () => ota.transfer?.stats ?? null });
  let audit: AuditSide | null = null;
  let cliChanges: PendingChangesDrain | null = null;
  let shared: ClusterSharedState | null = null;
  // In a cluster the ACL rules, the users and the admin tokens are shared (read with the bans, below).
  let access: ClusterAccess | null = null;
  // In a cluster one TLS session ticket key serves every node, so a device resumes with any of them.
  let tickets: ClusterTicketKeys | null = null;
  // In a cluster the built-in PKI's leaf certificates are known to every node (cluster-pki.ts).
  let clusterPki: ClusterPki | null = null;
  let audits: DefenderAudits | null = null;
  try {
    // Retained messages of the cluster are in the broker before any client can ask for them.
    await cluster?.attach(broker);
    // SECURITY: the cluster's revocations and bans are read (or the start fails) before anyone is admitted.
    if (cluster !== null) {
      access = new ClusterAccess(dataDir, logger);
      tickets = new ClusterTicketKeys(ticketKeyFiles(config, opts.baseDir, dataDir), logger);
      clusterPki = await ClusterPki.open(configuredPkiDir(config.pki.dir, opts.baseDir, dataDir), logger);
      shared = await startClusterSharedState({ cluster, config, baseDir: opts.baseDir, dataDir, broker, revocation, logger, kinds: [access, tickets, ...(provisioning.replica !== null ? [provisioning.replica] : []), ...(clusterPki !== null ? [clusterPki] : []), ...ota.clusterKinds(cluster.conn, config.cluster?.replicas ?? 1), defender.clusterKind()] });
      access.attach(authz.service);
      provisioning.replica?.attach();
      ota.attachCluster();
    }
    // The audit log first: everything from here on (admin changes, connections) is recorded.
    audit = await startAuditSide({ audit: config.audit, baseDir: opts.baseDir, dataDir, events, logger, ...(cluster !== null ? { nodeId: cluster.nodeId } : {}) });
    // Changes the CLI made while no broker ran (or since the last poll) are recorded
    // before anything is admitted; then within a second of being made.
    cliChanges = startPendingChangesDrain({ dataDir, events, audit, logger });
    // The ban list at every start (automatic bans need it; the admin API only when
    // configured), before the listeners: a banned client never slips in at start.
    // The listeners (started below) add what lint says about them: no way to revoke client certificates.
    const setupFindings = (): unknown[] => listeners.flatMap((l) => (l.tls !== null ? [revocationFinding(l.config.name, l.tls.revocation)].filter((f) => f !== null) : []));
    adminSide = await startAdminSide({ config, baseDir: opts.baseDir, dataDir, broker, logger, policy: authz.service, provisioning, users: access?.users() ?? authn.users, setupFindings, cluster, defender: defender.facade, auditFlush: () => audit?.flush(), ...(shared !== null ? { banStore: shared.banStore } : {}), ...(access !== null ? { tokenStore: access.tokenStore.bind(access) } : {}) });
    shared?.enforceBans(adminSide.bans);
    // Restrictions recorded in defender.db hold again before the listeners open.
    defender.attach({ broker, api: adminSide.brokerApi, bans: adminSide.bans, roleOf: (client) => authz.engine.rolesOf(client)[0] ?? 'device' });
    // In a cluster: restrictions, releases, learned baselines and alerts are shared from now on.
    defender.attachCluster();
    // Security audits of the running broker: on their schedule, and when an operator asks.
    audits = new DefenderAudits({ config, baseDir: opts.baseDir, dataDir, api: adminSide.brokerApi, events, logger, takeovers: () => defender.detector?.takeovers() ?? [] });
    defender.useAudits(audits);
    audits.start();
    // Before the listeners: they load crl.pem, which should be fresh when they do.
    pki = await startPkiDuties(config, opts.baseDir, dataDir, logger);
    // One guard for every listener: maxTotal and the per-address counts span them all.
    // SECURITY: runtime IP/CIDR bans (and the ban list's address allow entries) are asked at
    // accept too, so a banned address is cut before its TLS handshake costs anything.
    const bans = adminSide?.bans ?? null;
    // SECURITY: where a client certificate is required every client proves itself, so there
    // automatic address bans (which anybody sharing a NAT address can earn) do not apply.
    const proofRequired = new Set(config.listeners.filter((l) => l.tls?.clientCerts === 'required').map((l) => l.name));
    const guard = new ConnectionGuard(config.limits, bans !== null ? { addressCheck: (ip, listener) => bans.addressRefusal(ip, proofRequired.has(listener)) } : {});
    // The built-in PKI's CRLs apply to every listener that trusts its CA (tls-revocation.ts).
    const pkiDir = configuredPkiDir(config.pki.dir, opts.baseDir, dataDir);
    for (const l of config.listeners) {
      const start = l.protocol === 'ws' || l.protocol === 'wss' ? startWebSocketListener : startListener;
      const running = await start(l, broker, logger, (p) => resolve(opts.baseDir, p), { dataDir, pkiDir }, guard);
      listeners.push(running);
      running.tls?.onCrlLoaded((crlPem) => {
        try {
          revocation.applyCrl(l.name, crlPem);
        } catch (err) {
          logger.error({ listener: l.name, err: err instanceof Error ? err.message : String(err) }, 'cannot read the revocations of the loaded CRL; live sessions were not re-checked');
        }
      });
      logger.info({ listener: l.name, protocol: l.protocol, host: running.host, port: running.port }, 'listening');
    }
    metricsSide.start(adminSide?.api ?? null);
    authz.announce();
    audit.announce();
  } catch (err) {
    metricsSide.stop();
    clearInterval(crlFreshness);
    for (const l of listeners) await l.stopAccepting();
    await pki?.stop();
    await adminSide?.stop();
    access?.stop();
    shared?.stop();
    tickets?.stop();
    clusterPki?.stop();
    await cluster?.close();
    store?.close();
    provisioning.stop();
    ota.stop();
    await audits?.stop();
    defender.stop();
    authn.close();
    authz.close();
    cliChanges?.stop();
    await audit?.stop();
    throw err;
  }

  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      clearInterval(crlFreshness);
      metricsSide.stop();
      for (const l of listeners) await l.stopAccepting();
      broker.shutdown();
      await Promise.all(listeners.map((l) => l.closeConnections(2000)));
      // After the wills and the last acknowledgements went through it.
      shared?.stop();
      tickets?.stop();
      clusterPki?.stop();
      await cluster?.close();
      await pki?.stop();
      await adminSide?.stop();
      access?.stop();
      store?.close();
      provisioning.stop();
      ota.stop();
      await audits?.stop();
      defender.stop();
      authn.close();
      authz.close();
      // Changes the CLI made up to now, then (last) the shutdown's own events are
      // recorded and a final signed checkpoint written; then the directory is free.
      cliChanges.stop();
      await audit.stop();
      unlock();
      logger.info({}, 'stopped');
    })();
    return stopping;
  };
  return { broker, listeners, store: broker.store, pki, authz: authz.service, admin: adminSide?.api ?? null, audit, cluster, defender, stop };
}
