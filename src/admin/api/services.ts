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
  logger: Logger;
  /** Where this server's admin changes go (its security event stream, so its audit log); recordAdminChange calls it. */
  onChange?: AdminChangeSink;
  now?: () => number;
}
