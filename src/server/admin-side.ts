/**
 * Composition of the admin side: the admin database (tokens, bans), the ban list with its
 * guards and automatic bans (brute force, flapping), and the HTTPS admin API when config
 * `admin` asks for it, with EST for devices beside it (provisioning/est.ts). Owns: picking
 * the adapters behind the ban list's and the admin API's ports, and the expiry sweep's
 * timer. Must not: implement endpoints (admin/api and provisioning/est.ts do) or decide
 * what a ban matches (security/limits does).
 *
 * SECURITY: the ban list runs at every start, with or without the admin API: automatic
 * bans need it, and operator bans stay enforced when the API is switched off.
 *
 * In a cluster every node answers the others' admin requests about its clients (also
 * without an admin API of its own), and this node's API lists and kicks the clients of
 * every node (cluster/cluster-admin.ts).
 */
import { readFile } from 'node:fs/promises';
import type http from 'node:http';
import { join, resolve } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { startAdminApi, type PrefixHandler, type RunningAdminApi } from '../admin/api/admin-server.js';
import { adminChangeEvent } from '../admin/api/admin-change.js';
import type { AdminServices, AuditFacade, CertificatesFacade, DefenderFacade as AdminDefenderFacade, PolicyFacade, TokenStore } from '../admin/api/services.js';
import { ConsoleAudit } from './console-audit.js';
import { ConsoleFleet } from './console-fleet.js';
import { ConsoleOverview } from './console-overview.js';
import { ConsolePki } from './console-pki.js';
import { usersFacade } from '../admin/api/users-facade.js';
import { BrokerApi } from '../broker/api.js';
import { ClusterAdmin } from '../cluster/cluster-admin.js';
import type { ClusterNode } from '../cluster/cluster-node.js';
import type { Broker } from '../broker/broker.js';
import type { BastionConfig } from '../core/config.js';
import type { Logger } from '../core/logger.js';
import { BanList, type BanStore } from '../security/limits/ban-list.js';
import { BruteForceProtection, type AutoBanDeps } from '../security/limits/brute-force.js';
import { FlappingProtection } from '../security/limits/flapping.js';
import { subjectIsProvisioningOnly } from '../provisioning/claim-identity.js';
import { PasswordHasher } from '../security/authn/password-hash.js';
import type { UserAdmin } from '../security/authn/user-store.js';
import { ADMIN_DB_FILE, SqliteAdminStore } from '../store/sqlite/admin-store.js';
import { SqliteUserStore, USERS_DB_FILE } from '../store/sqlite/user-store.js';
import { createEstHandler, EST_PREFIX, type EstPeer } from '../provisioning/est.js';
import { describeCertificate } from '../transport/tls-identity.js';
import { configuredPkiDir, pkiLayout } from './pki-layout.js';
import type { ProvisioningSide } from './provisioning-side.js';
import type { AdminConfig } from '../core/admin-config.js';
import { BastionError } from '../core/errors.js';
import { tlsSchema } from '../core/tls-config.js';
import { TlsContextManager } from '../transport/tls-context.js';

/** The admin database file inside the data directory (tokens and bans). */
export function adminDbPath(dataDir: string): string {
  return join(dataDir, ADMIN_DB_FILE);
}

export interface AdminSide {
  readonly api: RunningAdminApi | null;
  readonly bans: BanList;
  /** The broker facade apps use (in a cluster its directory spans every node). */
  readonly brokerApi: BrokerApi;
  stop(): Promise<void>;
}

export interface AdminSideOptions {
  config: BastionConfig;
  baseDir: string;
  dataDir: string;
  broker: Broker;
  logger: Logger;
  /** Roles, bindings, explain and lint (security/authz's PolicyService); null: those routes answer 501. */
  policy?: PolicyFacade | null;
  /** The user store the login providers already hold open, to share rather than open users.db twice. */
  users?: UserAdmin | null;
  /** Lint findings about the running setup (listener-lint.ts), answered with the rule findings. */
  setupFindings?: () => unknown[];
  /** This node's place in a cluster: the admin API then sees the clients of every node. */
  cluster?: ClusterNode | null;
  /** In a cluster: the store the ban list keeps its entries in, given admin.db's (cluster-bans.ts). */
  banStore?: (local: BanStore) => BanStore;
  /** Alerts, releases, rules and audits (defender-side.ts); absent: those routes answer 501. */
  defender?: AdminDefenderFacade | null;
  /** In a cluster: the admin API's tokens, given admin.db's (cluster-tokens.ts). */
  tokenStore?: (local: SqliteAdminStore) => TokenStore;
  /** Device provisioning: EST (`/.well-known/est/…`) is served beside the operator API. */
  provisioning?: ProvisioningSide | null;
  /** Writes what the audit writer holds, so the console's audit page shows what just happened; absent: no audit routes. */
  auditFlush?: () => void;
}

/** The console's overview, PKI and audit log (console-overview.ts, console-pki.ts, console-audit.ts). */
function consoleParts(opts: AdminSideOptions): { overview: ConsoleOverview; certificates: CertificatesFacade; audit: AuditFacade | null } {
  const defender = opts.defender ?? null;
  const overview = new ConsoleOverview({
    broker: opts.broker,
    logger: opts.logger,
    cluster: opts.cluster ?? null,
    activeAlerts: defender === null ? () => null : () => defender.listAlerts({ state: 'active', limit: 1 }).total,
  });
  const certificates = new ConsolePki(configuredPkiDir(opts.config.pki.dir, opts.baseDir, opts.dataDir));
  const audit = opts.auditFlush !== undefined ? new ConsoleAudit(opts.dataDir, opts.auditFlush) : null;
  return { overview, certificates, audit };
}

/** What TLS verified about an EST caller (the admin listener defers unverified certificates to us). */
function estPeer(req: http.IncomingMessage): EstPeer {
  const socket = req.socket as TLSSocket;
  const cert = typeof socket.getPeerCertificate === 'function' ? socket.getPeerCertificate() : null;
  const presented = cert !== null && typeof cert === 'object' && Object.keys(cert).length > 0;
  return { remoteAddress: socket.remoteAddress ?? 'unknown', certificate: presented && socket.authorized ? describeCertificate(cert) : null, unverifiedCertificate: presented && !socket.authorized };
}

/**
 * EST for devices on the admin listener (provisioning/est.ts). SECURITY: its paths take
 * device credentials only, and the operator routes never see them (admin-server.ts).
 */
function estRoutes(side: ProvisioningSide, opts: AdminSideOptions): PrefixHandler {
  const caChain = pkiLayout(configuredPkiDir(opts.config.pki.dir, opts.baseDir, opts.dataDir)).caChain;
  const est = createEstHandler({ service: () => side.service, tokens: side.tokenProvider, caChainPem: () => readFile(caChain, 'utf8'), logger: opts.logger });
  return { prefix: EST_PREFIX, handle: (req, res) => est(req, res, estPeer(req)) };
}

/**
 * The admin API's TLS through the same context manager as the MQTT listeners: the same
 * CRL handling (one CRL per CA of the chain), built-in PKI revocations, key-exchange
 * groups, hot reload of the files and a log line for every refused certificate. No
 * session tickets: operators are few and a ticket key file is the listeners' business.
 */
async function adminTlsContext(admin: AdminConfig, opts: AdminSideOptions): Promise<TlsContextManager> {
  const tls = tlsSchema.parse({ ...admin.tls, sessionTickets: { enabled: false } });
  try {
    return await TlsContextManager.create({
      listener: { name: 'admin', tls, identity: 'cn', clientIdMustMatch: false },
      resolvePath: (p) => resolve(opts.baseDir, p),
      dataDir: opts.dataDir,
      pkiDir: configuredPkiDir(opts.config.pki.dir, opts.baseDir, opts.dataDir),
      logger: opts.logger,
      // `optional`: the handshake admits token clients; the admin API answers 401 for an unverified certificate.
      unverifiedCertificates: 'defer',
    });
  } catch (err) {
    if (err instanceof BastionError) throw new BastionError(err.code, `admin API: ${err.message}`);
    throw err;
  }
}

/** How often ended bans are swept (and their end announced); checks also sweep lazily. */
const BAN_SWEEP_MS = 1000;

export async function startAdminSide(opts: AdminSideOptions): Promise<AdminSide> {
  const store = SqliteAdminStore.open(adminDbPath(opts.dataDir));
  const brokerApi = new BrokerApi(opts.broker);
  const bans = new BanList(opts.banStore?.(store) ?? store, { events: opts.broker.events });
  brokerApi.addAdmissionGuard(bans.admissionGuard());
  const sweep = setInterval(() => bans.sweep(), BAN_SWEEP_MS);
  sweep.unref();
  const detach: Array<() => void> = [];
  const { limits } = opts.config;
  // limits.enabled false turns the automatic bans off with every other limit; operator
  // bans stay: they are decisions, not limits.
  if (limits.enabled) {
    const deps: AutoBanDeps = { bans, disconnect: (match, reason) => brokerApi.disconnectWhere(match, reason) };
    if (limits.authFailures.maxFailures > 0) detach.push(new BruteForceProtection(limits.authFailures, deps).attach(opts.broker.events));
    // A provisioning claim connects once per device it provisions: provisioning.ratePerMinute governs it, not flapping.
    const claims = (e: { certificate?: { subject: string } }): boolean => e.certificate !== undefined && subjectIsProvisioningOnly(e.certificate.subject);
    if (limits.flapping.maxConnects > 0) detach.push(new FlappingProtection(limits.flapping, deps, claims).attach(opts.broker.events));
  }
  // An automatic ban refuses clients nobody asked to refuse: the operator reads why on the
  // broker's log at once, not only in the audit log (which records the same ban.added).
  detach.push(
    opts.broker.events.on((e, at) => {
      if (e.type !== 'ban.added' || !e.auto) return;
      const seconds = e.expiresAt === null ? null : Math.round((e.expiresAt - at) / 1000);
      opts.logger.warn({ kind: e.kind, value: e.value, seconds, reason: e.reason, createdBy: e.createdBy }, 'automatic ban');
    }),
  );
  const cluster = opts.cluster ?? null;
  const clusterAdmin = cluster !== null ? new ClusterAdmin({ nc: cluster.conn.nc, conn: cluster.conn, nodeId: cluster.nodeId, local: new BrokerApi(opts.broker), logger: opts.logger }) : null;
  if (clusterAdmin !== null) {
    clusterAdmin.start();
    brokerApi.useDirectory(clusterAdmin);
  }
  const release = (): void => {
    clearInterval(sweep);
    for (const d of detach) d();
    clusterAdmin?.stop();
  };
  let api: RunningAdminApi | null = null;
  let overview: ConsoleOverview | null = null;
  /** Opened here only when no login provider holds users.db open already; closed by us then. */
  let ownUsers: SqliteUserStore | null = null;
  if (opts.config.admin !== undefined) {
    try {
      // The same users.db the password and SCRAM providers read on every login.
      const users = opts.users ?? (ownUsers = new SqliteUserStore(join(opts.dataDir, USERS_DB_FILE)));
      const parts = consoleParts(opts);
      overview = parts.overview;
      const services: AdminServices = {
        broker: brokerApi,
        ...(opts.setupFindings !== undefined ? { setupFindings: opts.setupFindings } : {}),
        bans,
        tokens: opts.tokenStore?.(store) ?? store,
        users: usersFacade(users, new PasswordHasher()),
        policy: opts.policy ?? null,
        defender: opts.defender ?? null,
        overview: parts.overview,
        certificates: parts.certificates,
        audit: parts.audit,
        fleet: new ConsoleFleet(opts.config, opts.dataDir),
        logger: opts.logger,
        // Changes through this server's API reach this broker's event stream (its audit log), and no other's.
        onChange: (change) => opts.broker.events.emit(adminChangeEvent(change)),
      };
      const tls = await adminTlsContext(opts.config.admin, opts);
      const provisioning = opts.provisioning ?? null;
      try {
        api = await startAdminApi({ config: opts.config.admin, tls, services, ...(provisioning !== null ? { prefixHandlers: [estRoutes(provisioning, opts)] } : {}) });
      } catch (err) {
        tls.close();
        throw err;
      }
      overview.start();
    } catch (err) {
      release();
      ownUsers?.close();
      store.close();
      throw err;
    }
  }
  return {
    api,
    bans,
    brokerApi,
    async stop() {
      release();
      overview?.stop();
      await api?.close();
      ownUsers?.close();
      store.close();
    },
  };
}
