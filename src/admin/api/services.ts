/**
 * What the admin API needs from the rest of Bastion, as small ports the composition root
 * fills in: the broker facade, the ban list, the token store, and (when their modules are
 * wired) the user store and the policy service. Owns: these interfaces. Must not: hold
 * state or do I/O.
 */
import type { BrokerApi } from '../../broker/api.js';
import type { Logger } from '../../core/logger.js';
import type { BanList } from '../../security/limits/ban-list.js';

/** Hashed bearer tokens (`<dataDir>/admin.db`). Only the SHA-256 hash is ever stored. */
export interface TokenStore {
  findTokenByHash(hash: string): { name: string } | null;
  createToken(token: { name: string; hash: string; createdAt: number }): boolean;
  listTokens(): Array<{ name: string; createdAt: number }>;
  revokeToken(name: string): boolean;
}

/** A user as the API shows it (never a hash). */
export interface UserView {
  username: string;
  [detail: string]: unknown;
}

/** Password users (engineer A's UserStore behind it). */
export interface UsersFacade {
  list(): Promise<UserView[]> | UserView[];
  /** Adds a user; 'exists' when the name is taken. */
  add(username: string, password: string): Promise<'added' | 'exists'> | 'added' | 'exists';
  /** Deletes a user; false when there is none. */
  remove(username: string): Promise<boolean> | boolean;
}

/**
 * Roles, bindings and rules (engineer B's PolicyService behind it). Role and binding
 * documents are checked by the policy service itself: it throws a BastionError with a
 * message naming the problem, which the API answers with 400.
 */
export interface PolicyFacade {
  listRoles(): unknown[] | Promise<unknown[]>;
  putRole(name: string, role: unknown): unknown;
  /** False when there is no such role. */
  deleteRole(name: string): boolean | Promise<boolean>;
  listBindings(): unknown[] | Promise<unknown[]>;
  putBinding(binding: unknown): unknown;
  /** False when there is no such binding. */
  deleteBinding(id: string): boolean | Promise<boolean>;
  explain(query: ExplainQuery): unknown;
  lint(): unknown;
}

export interface ExplainQuery {
  clientId: string;
  username?: string;
  certificate?: { commonName?: string; organizationalUnits?: string[]; serialNumber?: string; sans?: { dns?: string[]; uri?: string[] } };
  action: 'publish' | 'subscribe';
  topic: string;
}

export interface AdminServices {
  broker: BrokerApi;
  bans: BanList;
  tokens: TokenStore;
  /** Null until the user store is wired: its routes answer 501. */
  users: UsersFacade | null;
  /** Null until the policy service is wired: its routes answer 501. */
  policy: PolicyFacade | null;
  logger: Logger;
  now?: () => number;
}
