/**
 * What the admin API needs from the rest of Bastion, as small ports the composition root
 * fills in: the broker facade, the ban list, the token store, and (when their modules are
 * wired) the user store, the policy service and the defender. Owns: these interfaces.
 * Must not: hold state or do I/O.
 */
import type { BrokerApi } from '../../broker/api.js';
import type { PeerCertificate } from '../../broker/channel/connection-port.js';
import type { Logger } from '../../core/logger.js';
import type { AdminChangeSink } from './admin-change.js';
import type { BanList } from '../../security/limits/ban-list.js';

/** What an operator may do: an `admin` changes things, a `viewer` only reads. */
export type AdminScope = 'admin' | 'viewer';

/** Hashed bearer tokens (`<dataDir>/admin.db`). Only the SHA-256 hash is ever stored. */
export interface TokenStore {
  findTokenByHash(hash: string): { name: string; scope: AdminScope } | null;
  createToken(token: { name: string; hash: string; createdAt: number; scope: AdminScope }): boolean;
  listTokens(): Array<{ name: string; createdAt: number; scope: AdminScope }>;
  revokeToken(name: string): boolean;
}

/** A user as the API shows it (never a hash or a key). */
export interface UserView {
  username: string;
  createdAt: string;
}

/** Password users (the user store of security/authn behind it: see users-facade.ts). */
export interface UsersFacade {
  list(): UserView[] | Promise<UserView[]>;
  /**
   * Adds a user; 'exists' when the name is taken. Throws a BastionError (answered 400)
   * for a name or password the store refuses.
   */
  add(username: string, password: string): Promise<'added' | 'exists'>;
  /** Creates the user or sets a new password (what `bastion user add` does). */
  put(username: string, password: string): Promise<'added' | 'changed'>;
  /** Deletes a user; false when there is none. */
  remove(username: string): boolean | Promise<boolean>;
}

/**
 * Roles, bindings and rules: security/authz's PolicyService fits this shape as is. It
 * checks role and binding documents itself and throws a BastionError naming the problem
 * (answered 400; ERR_AUTHZ_READONLY, a config-file role, 409).
 */
export interface PolicyFacade {
  listRoles(): unknown[];
  /** Creates the role or replaces its rules. */
  putRole(name: string, rules: unknown[]): unknown;
  /** False when there is no such role. */
  deleteRole(name: string): boolean;
  listBindings(): unknown[];
  putBinding(binding: unknown): unknown;
  /** False when there is no such binding. */
  deleteBinding(binding: unknown): boolean;
  explain(query: ExplainQuery): unknown;
  lint(): unknown[];
}

export interface ExplainQuery {
  clientId: string;
  username?: string;
  pskIdentity?: string;
  certificate?: PeerCertificate;
  action: 'publish' | 'subscribe';
  topic: string;
  qos?: 0 | 1 | 2;
  retain?: boolean;
}

/** An alert's state (defender/response/alert-store.ts's AlertState). */
export type DefenderAlertState = 'active' | 'cleared' | 'released';

/** Filters and paging of GET /api/v1/defender/alerts (the defender's AlertQuery). */
export interface DefenderAlertQuery {
  state?: DefenderAlertState;
  identity?: string;
  rule?: string;
  offset?: number;
  limit?: number;
}

/**
 * Behaviour alerts, restrictions, releases, rules and the security audit. admin/ may not
 * import defender/, so this is the admin API's view of it: defender/facade.ts's
 * DefenderFacade fits this shape as is (test/integration/defender-admin-api.test.ts holds
 * them together). The records travel to the client as the defender made them (times in ms
 * since the epoch); the routes only need what they check.
 */
export interface DefenderFacade {
  listAlerts(query: DefenderAlertQuery): { total: number; alerts: object[] };
  /** Null when there is no such alert. */
  getAlert(id: number): object | null;
  /** Restrictions in force (quarantine, throttle, ban), oldest first. */
  restrictions(): object[];
  /** Lifts every restriction of `identity` and marks its active alerts released; `actor` is `<kind>:<name>`. */
  release(identity: string, actor: string): Promise<{ alerts: number; restrictions: Array<{ kind: string }> }>;
  rules(): object;
  /** Replaces rules and/or actions at run time; a bad document throws a BastionError (answered 400). */
  setRules(document: unknown, actor: string): Promise<object>;
  /** Back to the config's rules and actions. */
  resetRules(actor: string): Promise<object>;
  /** The last security audit's report; null before the first. */
  lastAudit(): object | null;
  runAudit(actor: string): Promise<object>;
}

/** One second of the broker, as the console's overview charts it. */
export interface OverviewSample {
  /** ms since the epoch. */
  t: number;
  connections: number;
  sessions: number;
  subscriptions: number;
  messagesInPerSec: number;
  messagesOutPerSec: number;
  /** Messages dropped (queue full, expired, too large, over quota) per second. */
  dropsPerSec: number;
  authFailuresPerSec: number;
  /** Connections refused (TLS, CONNECT, bans, limits) per second. */
  refusalsPerSec: number;
  /** Publishes and subscriptions the ACL denied, per second. */
  denialsPerSec: number;
  /** Behaviour alerts in force; null without behaviour detection. */
  alertsActive: number | null;
}

/** The overview's live data (server/console-overview.ts samples the broker once a second). */
export interface OverviewSource {
  /** The node, version, start time and cluster view. */
  info(): object;
  /** The last few minutes of samples, oldest first. */
  history(): OverviewSample[];
  /** Calls `listener` with every new sample; returns the unsubscribe. */
  subscribe(listener: (sample: OverviewSample) => void): () => void;
}

/** A certificate of the built-in PKI's inventory as the API shows it. */
export interface CertificateView {
  serialNumber: string;
  kind: string;
  commonName: string;
  subject: string;
  sans: readonly string[];
  fingerprint256: string;
  notBefore: string;
  notAfter: string;
  /** The CA certificate that signed it; null for the root. */
  issuerSerial: string | null;
  issuedAt: string;
  status: 'valid' | 'revoked';
  revokedAt: string | null;
  reason: string | null;
}

export interface CertificateFilter {
  status?: 'valid' | 'revoked' | undefined;
  kind?: string | undefined;
  /** Common name substring, case-insensitive. */
  q?: string | undefined;
  expiringBefore?: Date | undefined;
  offset: number;
  limit: number;
}

export interface IssueRequest {
  commonName: string;
  profile: 'client' | 'server';
  organizationalUnit?: string | undefined;
  days?: number | undefined;
  /** `dns:x`, `ip:x`, `uri:x`, `email:x`. */
  sans?: string[] | undefined;
}

/**
 * The built-in PKI (server/pki-service.ts behind it). Throws a BastionError for input the
 * PKI refuses (answered 400), an unknown serial (404) or a CA key that is offline (409).
 */
export interface CertificatesFacade {
  list(filter: CertificateFilter): Promise<{ total: number; certificates: CertificateView[] }>;
  /** Null for an unknown serial. */
  get(serialNumber: string): Promise<(CertificateView & { certPem: string }) | null>;
  issue(request: IssueRequest): Promise<{ serialNumber: string; commonName: string; notAfter: string; certPem: string; keyPem: string; caPem: string }>;
  revoke(serialNumber: string, reason: string): Promise<{ result: 'revoked' | 'already-revoked'; certificate: CertificateView }>;
}

export interface AuditFilter {
  since?: number | undefined;
  until?: number | undefined;
  type?: string | undefined;
  clientId?: string | undefined;
  beforeSeq?: number | undefined;
  limit: number;
}

/** A stored audit record as the API shows it (the event parsed back from its canonical text). */
export interface AuditRecordView {
  seq: number;
  ts: number;
  type: string;
  clientId: string | null;
  event: unknown;
}

/** The audit log (server/console-audit.ts reads `<dataDir>/audit.db` beside its writer). */
export interface AuditFacade {
  /** Newest first. */
  query(filter: AuditFilter): AuditRecordView[];
  /** The chain's verification, as `bastion audit verify --json` reports it. */
  verify(): Promise<object>;
  /** Every record matching `filter` (its limit ignored) in seq order, one call per page. */
  exportPages(filter: Omit<AuditFilter, 'limit' | 'beforeSeq'>, page: (rows: AuditRecordView[]) => Promise<void>): Promise<void>;
}

/** Device provisioning and OTA campaigns (server/console-fleet.ts reads their stores). */
export interface FleetFacade {
  /** Templates, claims, one-time tokens (never their secrets) and provisioned devices; null when provisioning is off. */
  provisioning(): { templates: object[]; claims: object[]; tokens: object[]; devices: object[] } | null;
  /** Every OTA campaign with its progress per stage, newest first. */
  campaigns(): object[];
}

export interface AdminServices {
  broker: BrokerApi;
  /** Lint findings about the running broker's setup rather than its rules (listeners without revocation). */
  setupFindings?: () => unknown[];
  bans: BanList;
  tokens: TokenStore;
  /** Null until the user store is wired: its routes answer 501. */
  users: UsersFacade | null;
  /** Null until the policy service is wired: its routes answer 501. */
  policy: PolicyFacade | null;
  /** Absent or null until the defender is wired: its routes answer 501. */
  defender?: DefenderFacade | null;
  /** The console overview's live data; absent: those routes answer 501. */
  overview?: OverviewSource | null;
  /** The built-in PKI; absent (no PKI in this data directory): those routes answer 501. */
  certificates?: CertificatesFacade | null;
  /** The audit log; absent (audit off): those routes answer 501. */
  audit?: AuditFacade | null;
  /** Provisioning and OTA campaigns; absent: those routes answer 501. */
  fleet?: FleetFacade | null;
  logger: Logger;
  /** Where this server's admin changes go (its security event stream, so its audit log); recordAdminChange calls it. */
  onChange?: AdminChangeSink;
  now?: () => number;
}
