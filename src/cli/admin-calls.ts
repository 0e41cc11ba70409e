/**
 * Typed calls of the admin API for CLI commands that change a running broker: `bastion
 * user` and `bastion acl` use these when `--admin-url` (or BASTION_ADMIN_URL) is given,
 * instead of opening the data directory. Owns: paths, bodies and answer shapes on the
 * CLI side. Must not: print (the commands do).
 *
 *   if (wantsAdminApi(opts)) { await apiUserPut(adminClientFrom(opts), name, password); ... }
 */
import type { AdminClient } from './admin-client.js';

const enc = encodeURIComponent;

/** Creates the user or sets a new password (like `bastion user add`). */
export async function apiUserPut(api: AdminClient, name: string, password: string): Promise<'added' | 'changed'> {
  const r = (await api.request('PUT', `/api/v1/users/${enc(name)}`, { password })) as { outcome: 'added' | 'changed' };
  return r.outcome;
}

export async function apiUserDelete(api: AdminClient, name: string): Promise<void> {
  await api.request('DELETE', `/api/v1/users/${enc(name)}`);
}

export async function apiUserList(api: AdminClient): Promise<Array<{ username: string; createdAt: string }>> {
  return ((await api.request('GET', '/api/v1/users')) as { users: Array<{ username: string; createdAt: string }> }).users;
}

export interface ApiExplainQuery {
  clientId: string;
  username?: string;
  pskIdentity?: string;
  certificate?: { commonName?: string; organizationalUnits?: string[]; serialNumber?: string; sans?: { dns?: string[]; uri?: string[]; ip?: string[]; email?: string[] } };
  publish?: string;
  subscribe?: string;
  qos?: 0 | 1 | 2;
  retain?: boolean;
}

/** The policy service's explanation (decision, deciding rule, roles) as JSON. */
export function apiAclExplain(api: AdminClient, query: ApiExplainQuery): Promise<unknown> {
  return api.request('POST', '/api/v1/acl/explain', query);
}

export async function apiAclLint(api: AdminClient): Promise<unknown[]> {
  return ((await api.request('GET', '/api/v1/acl/lint')) as { findings: unknown[] }).findings;
}

export async function apiRolePut(api: AdminClient, role: string, rules: unknown[]): Promise<unknown> {
  return ((await api.request('PUT', `/api/v1/roles/${enc(role)}`, { rules })) as { role: unknown }).role;
}

export async function apiRoleDelete(api: AdminClient, role: string): Promise<void> {
  await api.request('DELETE', `/api/v1/roles/${enc(role)}`);
}

export async function apiBindingPut(api: AdminClient, binding: { role: string; attribute: string; value: string }): Promise<void> {
  await api.request('POST', '/api/v1/bindings', binding);
}

export async function apiBindingDelete(api: AdminClient, binding: { role: string; attribute: string; value: string }): Promise<void> {
  await api.request('DELETE', `/api/v1/bindings?${new URLSearchParams(binding).toString()}`);
}
