/**
 * Per-role quotas: which bound role's `quota` replaces `limits.client` for a client, and
 * the quota that results. Owns: binding specificity and the choice. Must not: count
 * messages (security/limits/client-limits.ts does) or be asked per message: the channel
 * asks once per connection (broker/channel/channel-limits.ts), so a PUBLISH costs the same
 * with or without role quotas.
 *
 * Specificity of a binding (higher wins):
 *   3 `identity`: an exact value (no `*`) on an attribute naming one client: clientId,
 *     username, psk, cert.cn, cert.san.uri, cert.san.dns;
 *   2 `group`: an exact value on cert.ou (a group of certificates);
 *   1 `pattern`: any value with `*` (`cert.cn: *`, `clientId: gw-*`).
 * No bound role with a quota: `limits.client`. Between bindings of equal specificity the
 * one listed first wins (config bindings before store bindings, in file order).
 *
 * SECURITY: the default stays strict: only a binding to a role that carries a quota can
 * lift a client above limits.client, and the broad device binding (`cert.cn: *`, a
 * pattern) never beats a binding naming the gateway itself. A quota binding on `clientId`
 * is only as strong as authentication's control of client ids, as for rules.
 */
import type { AuthorizedClient } from '../../broker/ports.js';
import type { AclBinding, AclPolicy, BindingAttribute, RoleQuota } from '../../core/authz-config.js';
import type { LimitsConfig } from '../../core/limits-config.js';
import { attributeValues, globMatches } from './identity-values.js';

export type BindingSpecificity = 'identity' | 'group' | 'pattern';

const RANK: Record<BindingSpecificity, number> = { identity: 3, group: 2, pattern: 1 };
const GROUP_ATTRIBUTES: ReadonlySet<BindingAttribute> = new Set(['cert.ou']);

export function bindingSpecificity(b: AclBinding): BindingSpecificity {
  if (b.value.includes('*')) return 'pattern';
  return GROUP_ATTRIBUTES.has(b.attribute) ? 'group' : 'identity';
}

/** The role quota chosen for a client, and the binding that chose it. */
export interface QuotaChoice {
  role: string;
  binding: AclBinding;
  specificity: BindingSpecificity;
  quota: RoleQuota;
}

/** The roles that carry a quota, by name: built once per rule set (the engine keeps it). */
export function roleQuotas(policy: AclPolicy): ReadonlyMap<string, RoleQuota> {
  const quotas = new Map<string, RoleQuota>();
  for (const r of policy.roles) if (r.quota !== undefined) quotas.set(r.name, r.quota);
  return quotas;
}

/**
 * The most specific binding of `client` to a role with a quota; null: limits.client
 * applies. One pass over the bindings; nothing at all when no role carries a quota.
 */
export function chooseQuota(policy: AclPolicy, client: AuthorizedClient, quotas: ReadonlyMap<string, RoleQuota> = roleQuotas(policy)): QuotaChoice | null {
  if (quotas.size === 0) return null;
  let best: QuotaChoice | null = null;
  for (const b of policy.bindings) {
    const quota = quotas.get(b.role);
    if (quota === undefined) continue;
    const specificity = bindingSpecificity(b);
    // Strictly greater: on a tie the binding listed first stays.
    if (best !== null && RANK[specificity] <= RANK[best.specificity]) continue;
    if (!attributeValues(client, b.attribute).some((v) => globMatches(b.value, v))) continue;
    best = { role: b.role, binding: b, specificity, quota };
  }
  return best;
}

type Rate = LimitsConfig['client']['publishRate'];

/** What a client gets: its role's value where the role sets one, limits.client's (or mqtt.maxQueued: undefined) otherwise. */
export interface EffectiveLimits {
  publishRate: Rate;
  bandwidth: Rate;
  maxSubscriptions: number;
  /** undefined: mqtt.maxQueued. */
  maxQueued: number | undefined;
}

export function effectiveLimits(choice: QuotaChoice | null, defaults: LimitsConfig['client']): EffectiveLimits {
  return {
    publishRate: choice?.quota.publishRate ?? defaults.publishRate,
    bandwidth: choice?.quota.bandwidth ?? defaults.bandwidth,
    maxSubscriptions: choice?.quota.maxSubscriptions ?? defaults.maxSubscriptions,
    maxQueued: choice?.quota.maxQueued,
  };
}
