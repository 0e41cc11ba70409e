/**
 * The `authz` section of the config: roles of rules, and bindings of identities to roles.
 * Owns: what a valid rule, role and binding is (shared by the config file, the SQLite
 * rule store and the CLI). Must not: evaluate rules (security/authz does).
 *
 * SECURITY: a config without an `authz` section gets the default device policy (deny
 * everything else), never allow-all; allow-all must be written as
 * `policy: allow-all-INSECURE`.
 *
 * A role may also carry a `quota` (publish rate, bandwidth) that replaces `limits.client`
 * for the clients it is bound to; which bound role's quota applies is decided by binding
 * specificity (security/authz/quota.ts). Quotas live in the config file only: a role made
 * at run time (the rule store) has rules, not quotas, so raising a quota stays a reviewed
 * config change.
 */
import { z } from 'zod';

export const RULE_EFFECTS = ['allow', 'deny'] as const;
export const RULE_ACTIONS = ['publish', 'subscribe', 'all'] as const;
/**
 * Identity attributes a binding can match. A binding value is exact, or a glob where `*`
 * stands for any run of characters (`*` alone: any value, but the attribute must exist).
 */
export const BINDING_ATTRIBUTES = ['clientId', 'username', 'cert.cn', 'cert.ou', 'cert.san.uri', 'cert.san.dns', 'psk'] as const;

export type RuleEffect = (typeof RULE_EFFECTS)[number];
export type RuleAction = (typeof RULE_ACTIONS)[number];
export type BindingAttribute = (typeof BINDING_ATTRIBUTES)[number];

/** Role names appear in CLI output and SQL rows: keep them plain. */
export const ROLE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export const ruleSchema = z
  .object({
    effect: z.enum(RULE_EFFECTS),
    action: z.enum(RULE_ACTIONS),
    /** MQTT filter syntax (`+`, `#`) with `${clientId}`-style substitutions. */
    topic: z.string().min(1).max(65535),
    /** Publish above it is refused; a subscription is granted at most this QoS. */
    maxQos: z.union([z.literal(0), z.literal(1), z.literal(2)]).optional(),
    /** false: a retained publish is refused. */
    retain: z.boolean().optional(),
  })
  .strict();

/** A rate in a role quota; burst defaults to twice the rate (as limits.client's defaults are). */
const quotaRateSchema = z
  .object({
    /** Per second; 0 turns this limit off for the role's clients. */
    perSecond: z.number().min(0),
    burst: z.number().min(1).optional(),
  })
  .strict()
  .transform((r) => ({ perSecond: r.perSecond, burst: r.burst ?? Math.max(1, r.perSecond * 2) }));

/**
 * A role's quota. A field left out falls back to `limits.client` (not to another role), so
 * a gateway role that raises only `publishRate` keeps the default bandwidth.
 */
export const roleQuotaSchema = z
  .object({
    /** PUBLISH packets per second per client. */
    publishRate: quotaRateSchema.optional(),
    /** PUBLISH topic + payload bytes per second per client. */
    bandwidth: quotaRateSchema.optional(),
    /** Subscriptions per session (limits.client.maxSubscriptions for everyone else). */
    maxSubscriptions: z.number().int().min(1).optional(),
    /** Messages the session may queue for the client (mqtt.maxQueued for everyone else). */
    maxQueued: z.number().int().min(0).optional(),
  })
  .strict()
  .refine(
    (q) => q.publishRate !== undefined || q.bandwidth !== undefined || q.maxSubscriptions !== undefined || q.maxQueued !== undefined,
    'a quota sets at least one of publishRate, bandwidth, maxSubscriptions, maxQueued',
  );

export const roleSchema = z.object({ rules: z.array(ruleSchema).default([]), quota: roleQuotaSchema.optional() }).strict();

export const bindingSchema = z
  .object({
    role: z.string().regex(ROLE_NAME, 'role names are letters, digits, ., _ and - (up to 64)'),
    attribute: z.enum(BINDING_ATTRIBUTES),
    value: z.string().min(1).max(1024),
  })
  .strict();

export const authzSchema = z
  .object({
    /** `rules`: the roles and bindings below (deny by default). */
    policy: z.enum(['rules', 'allow-all-INSECURE']).default('rules'),
    roles: z.record(z.string().regex(ROLE_NAME, 'role names are letters, digits, ., _ and - (up to 64)'), roleSchema).default({}),
    bindings: z.array(bindingSchema).default([]),
    /** How often (ms) the broker looks for rule changes made by other processes in the store. */
    storePollMs: z.number().int().min(50).max(60_000).default(500),
  })
  .strict()
  .superRefine((a, ctx) => {
    a.bindings.forEach((b, i) => {
      if (a.roles[b.role] === undefined) ctx.addIssue({ code: 'custom', path: ['bindings', i, 'role'], message: `unknown role "${b.role}"` });
    });
  });

export type AclRule = z.infer<typeof ruleSchema>;
export type RoleQuota = z.infer<typeof roleQuotaSchema>;
export type AclBinding = z.infer<typeof bindingSchema>;
export type AuthzConfig = z.infer<typeof authzSchema>;

/** A role with its rules, as every source (config, store) hands it to the engine. */
export interface AclRole {
  name: string;
  rules: AclRule[];
  /** Where it is defined: config roles are read-only at run time. */
  source: 'config' | 'store' | 'default';
  /** Replaces limits.client for clients this role is the most specific quota binding of (config roles only). */
  quota?: RoleQuota;
}

/** A whole rule set: what the engine evaluates. */
export interface AclPolicy {
  roles: AclRole[];
  bindings: AclBinding[];
}
