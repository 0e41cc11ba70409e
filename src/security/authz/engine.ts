/**
 * The rule engine: roles of allow/deny rules, bound to identities, evaluated per client.
 * Owns: which roles a client has, compiling its rules once per client and rule-set
 * version (variables substituted, cached), and the verdicts with the rule that decided
 * (for the broker, `acl explain` and the admin API). Must not: read files or the store
 * (policy-service.ts feeds it).
 *
 * SECURITY: nothing matches → deny; a matching deny beats every allow; an identity value
 * that is unsafe in a topic (see isSafeSubstitution) makes its rule match nothing.
 */
import { PUBLISH_ALLOWED, type AuthorizedClient, type ClientQuota, type ClientQuotaSource, type DeliveryAuthorizer, type PublishAuthorization, type SubscribeAuthorization } from '../../broker/ports.js';
import type { AclPolicy, AclRule, RoleQuota } from '../../core/authz-config.js';
import type { LimitsConfig } from '../../core/limits-config.js';
import type { Logger } from '../../core/logger.js';
import { silentLogger } from '../../core/logger.js';
import type { QoS } from '../../protocol/packets.js';
import { ReasonCode } from '../../protocol/reason-codes.js';
import { topicMatches } from '../../protocol/topic.js';
import { attributeValues, globMatches } from './identity-values.js';
import { expandPattern, ruleText } from './pattern.js';
import { filterCovers } from './topic-cover.js';
import { chooseQuota, effectiveLimits, roleQuotas } from './quota.js';
import { ClientPublishQuota } from '../limits/client-limits.js';

/** Which rule decided: role name, the rule's index in that role, and its text. */
export interface RuleRef {
  role: string;
  index: number;
  text: string;
}

export type AuthzAction = 'publish' | 'subscribe';

/** A decision with its reason. `qos`: what a subscription is granted. */
export interface Verdict {
  allowed: boolean;
  /** The deciding rule; null when no rule matched (default deny). */
  rule: RuleRef | null;
  reason: string;
  qos?: QoS;
}

interface CompiledRule {
  ref: RuleRef;
  rule: AclRule;
  publish: boolean;
  subscribe: boolean;
  /** The pattern expanded for this client; empty when it cannot match (unsafe value). */
  filters: string[];
}

interface ClientRules {
  version: number;
  rules: CompiledRule[];
}

const DEFAULT_DENY = 'no rule matched (default deny)';

/**
 * SECURITY: `$` topics ($SYS/...) belong to the broker [MQTT-4.7.2-1]: no rule, however
 * broad, lets a client (or its will) publish there and forge broker statistics. One test
 * for the decision and its explanation both.
 */
function isBrokerTopic(topic: string): boolean {
  return topic.charCodeAt(0) === 0x24 /* $ */;
}

export class PolicyEngine implements DeliveryAuthorizer, ClientQuotaSource {
  private policy: AclPolicy;
  private version = 0;
  /** Per connection (AuthorizedClient objects live as long as their connection). */
  private cache = new WeakMap<AuthorizedClient, ClientRules>();
  /** The roles with a quota in the current rule set (empty: role quotas cost nothing). */
  private quotas: ReadonlyMap<string, RoleQuota>;

  constructor(
    policy: AclPolicy,
    private readonly logger: Logger = silentLogger,
  ) {
    this.policy = policy;
    this.quotas = roleQuotas(policy);
  }

  /** Replaces the rule set; every client's compiled rules are rebuilt on next use. */
  setPolicy(policy: AclPolicy): void {
    this.policy = policy;
    this.quotas = roleQuotas(policy);
    this.version++;
  }

  get currentPolicy(): AclPolicy {
    return this.policy;
  }

  /** The roles bound to `client`, in binding order. */
  rolesOf(client: AuthorizedClient): string[] {
    return [...this.boundRoles(client)];
  }

  /** A set: compiling tests each role of the rule set against it (no scan per role). */
  private boundRoles(client: AuthorizedClient): Set<string> {
    const roles = new Set<string>();
    for (const b of this.policy.bindings) {
      if (roles.has(b.role)) continue;
      if (attributeValues(client, b.attribute).some((v) => globMatches(b.value, v))) roles.add(b.role);
    }
    return roles;
  }

  private rulesFor(client: AuthorizedClient): ClientRules {
    const cached = this.cache.get(client);
    if (cached !== undefined && cached.version === this.version) return cached;
    const bound = this.boundRoles(client);
    const rules: CompiledRule[] = [];
    for (const role of this.policy.roles) {
      if (!bound.has(role.name)) continue;
      role.rules.forEach((rule, index) => {
        const { filters, unsafe } = expandPattern(rule.topic, client);
        if (unsafe !== null) {
          // Logged once per client and rule-set version: compiling is cached.
          this.logger.warn(
            { clientId: client.clientId, role: role.name, rule: index, variable: unsafe.variable, value: unsafe.value === null ? null : JSON.stringify(unsafe.value) },
            unsafe.value === null ? 'ACL rule not applied: the identity has no value for its variable' : 'ACL rule not applied: identity value unsafe in a topic (+, #, /, control character or empty)',
          );
        }
        rules.push({
          ref: { role: role.name, index, text: ruleText(rule) },
          rule,
          publish: rule.action !== 'subscribe',
          subscribe: rule.action !== 'publish',
          filters,
        });
      });
    }
    const compiled = { version: this.version, rules };
    this.cache.set(client, compiled);
    return compiled;
  }

  /**
   * The limits of `client`'s most specific quota binding (quota.ts); undefined when no role
   * with a quota is bound to it (limits.client applies). Asked once per connection.
   */
  clientQuota(client: AuthorizedClient, defaults: LimitsConfig['client'], now: number): ClientQuota | undefined {
    const choice = chooseQuota(this.policy, client, this.quotas);
    if (choice === null) return undefined;
    const limits = effectiveLimits(choice, defaults);
    return {
      publish: new ClientPublishQuota(limits.publishRate, limits.bandwidth, now),
      maxSubscriptions: limits.maxSubscriptions,
      ...(limits.maxQueued !== undefined ? { maxQueued: limits.maxQueued } : {}),
    };
  }

  /**
   * The allow rule that lets `client` publish this, or null: the one place a publish is
   * allowed (authorizePublish and decidePublish both ask here; the hot path allocates nothing).
   */
  private publishAllowedBy(client: AuthorizedClient, topic: string, qos: QoS, retain: boolean): CompiledRule | null {
    if (isBrokerTopic(topic)) return null;
    let fitting: CompiledRule | null = null;
    for (const r of this.rulesFor(client).rules) {
      if (!r.publish || !anyMatches(r.filters, topic)) continue;
      if (r.rule.effect === 'deny') return null;
      if (fitting === null && qos <= (r.rule.maxQos ?? 2) && (!retain || r.rule.retain !== false)) fitting = r;
    }
    return fitting;
  }

  decidePublish(client: AuthorizedClient, topic: string, qos: QoS, retain: boolean): Verdict {
    const fitting = this.publishAllowedBy(client, topic, qos, retain);
    if (fitting !== null) return { allowed: true, rule: fitting.ref, reason: 'allowed by rule' };
    return this.publishRefusal(client, topic, qos);
  }

  /** Why a publish that publishAllowedBy refused is refused: the rule and the reason. */
  private publishRefusal(client: AuthorizedClient, topic: string, qos: QoS): Verdict {
    if (isBrokerTopic(topic)) return { allowed: false, rule: null, reason: 'topics starting with $ belong to the broker' };
    let firstAllow: CompiledRule | null = null;
    for (const r of this.rulesFor(client).rules) {
      if (!r.publish || !anyMatches(r.filters, topic)) continue;
      if (r.rule.effect === 'deny') return { allowed: false, rule: r.ref, reason: 'denied by rule' };
      firstAllow ??= r;
    }
    if (firstAllow === null) return { allowed: false, rule: null, reason: DEFAULT_DENY };
    const max = firstAllow.rule.maxQos ?? 2;
    if (qos > max) return { allowed: false, rule: firstAllow.ref, reason: `QoS ${qos} above the maximum of ${max} for this topic` };
    return { allowed: false, rule: firstAllow.ref, reason: 'retained messages are not allowed on this topic' };
  }

  /**
   * A filter is granted when an allow rule covers all of it (every topic it matches) and no
   * deny rule does. A deny covering only part of it does not refuse the SUBSCRIBE: those
   * topics are withheld at delivery (canReceive).
   */
  decideSubscribe(client: AuthorizedClient, filter: string, qos: QoS): Verdict {
    let best: CompiledRule | null = null;
    for (const r of this.rulesFor(client).rules) {
      if (!r.subscribe || !r.filters.some((f) => filterCovers(f, filter))) continue;
      if (r.rule.effect === 'deny') return { allowed: false, rule: r.ref, reason: 'denied by rule' };
      if (best === null || (r.rule.maxQos ?? 2) > (best.rule.maxQos ?? 2)) best = r;
    }
    if (best === null) return { allowed: false, rule: null, reason: DEFAULT_DENY };
    const granted = Math.min(qos, best.rule.maxQos ?? 2) as QoS;
    return { allowed: true, rule: best.ref, reason: granted < qos ? `granted at QoS ${granted} (rule maximum)` : 'allowed by rule', qos: granted };
  }

  authorizePublish(client: AuthorizedClient, topic: string, qos: QoS, retain: boolean): PublishAuthorization {
    // The hot path (every PUBLISH): an allowed message costs no verdict object.
    if (this.publishAllowedBy(client, topic, qos, retain) !== null) return PUBLISH_ALLOWED;
    const v = this.publishRefusal(client, topic, qos);
    // 0x87 for every publish refusal: QoS Not Supported (0x9B) and Retain Not Supported
    // (0x9A) are not PUBACK/PUBREC reason codes (MQTT 5 §3.4.2.1); the reason string says which.
    return { ok: false, reasonCode: ReasonCode.NotAuthorized, reason: v.reason };
  }

  authorizeSubscribe(client: AuthorizedClient, filter: string, qos: QoS): SubscribeAuthorization {
    const v = this.decideSubscribe(client, filter, qos);
    return v.allowed ? { ok: true, qos: v.qos ?? qos } : { ok: false, reason: v.reason };
  }

  /**
   * Delivery (the hot path: every message to every subscriber): may `client` read a message
   * on `topic`? Subscribe rules, deny wins; no allocation.
   */
  canReceive(client: AuthorizedClient, topic: string): boolean {
    const rules = this.rulesFor(client).rules;
    let allowed = false;
    for (let i = 0; i < rules.length; i++) {
      const r = rules[i]!;
      if (!r.subscribe || !anyMatches(r.filters, topic)) continue;
      if (r.rule.effect === 'deny') return false;
      allowed = true;
    }
    return allowed;
  }
}

/** Whether one of a rule's filters matches `topic` (per PUBLISH and per delivery: a plain loop, no closure). */
function anyMatches(filters: string[], topic: string): boolean {
  for (let i = 0; i < filters.length; i++) if (topicMatches(filters[i]!, topic)) return true;
  return false;
}
