/**
 * The `defender` configuration (issue 15): behaviour detection (window, bounds, rules, the
 * actions an alarm takes, dry run, webhook) and scheduled security audits. Owns: the strict
 * zod schema and its defaults. Must not: know the rule engine (defender/detect/ turns
 * `rules` into its own types and supplies the built-in rules when none are given).
 *
 * SECURITY: strict objects everywhere: a misspelt key is refused, not ignored (a rule
 * silently missing its threshold would be a rule that never fires). Detection is on by
 * default and only alerts: the actions that cut a device off (quarantine, throttle,
 * disconnect, ban) are taken only where the operator asked for them in writing.
 */
import { z } from 'zod';

/** Behaviour metrics a rule may judge (defender/detect/client-stats.ts computes them). */
export const DEFENDER_METRICS = [
  'messagesSent',
  'bytesSent',
  'messagesReceived',
  'bytesReceived',
  'messageSizeMean',
  'messageSizeMax',
  'distinctTopics',
  'subscribes',
  'wildcardSubscribes',
  'authzDenials',
  'authFailures',
  'connects',
  'disconnects',
  'distinctAddresses',
  'concurrentSessionsMax',
  'sessionSecondsMin',
] as const;

/** What an alarm may do. `alert` is always taken; the others change what the identity may do. */
export const DEFENDER_ACTIONS = ['alert', 'quarantine', 'throttle', 'disconnect', 'ban'] as const;
export type DefenderActionName = (typeof DEFENDER_ACTIONS)[number];

const ruleName = z.string().min(1).max(64).regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, _ . - only');
const common = {
  name: ruleName,
  roles: z.array(z.string().min(1).max(128)).min(1).max(64).optional(),
  consecutiveDatapointsToAlarm: z.number().int().min(1).max(1000).default(1),
  consecutiveDatapointsToClear: z.number().int().min(1).max(1000).default(1),
  cooldownSeconds: z.number().int().min(0).max(7 * 86_400).default(300),
};
const metric = z.enum(DEFENDER_METRICS);

export const defenderRuleSchema = z.discriminatedUnion('kind', [
  z.object({ ...common, kind: z.literal('static'), metric, operator: z.enum(['gt', 'gte', 'lt', 'lte']), value: z.number().finite() }).strict(),
  z
    .object({
      ...common,
      kind: z.literal('percentile'),
      metric,
      percentile: z.number().min(0).max(100).default(99),
      factor: z.number().positive().max(1000).default(3),
      minValue: z.number().min(0).default(0),
      minPopulation: z.number().int().min(1).default(20),
    })
    .strict(),
  z
    .object({
      ...common,
      kind: z.literal('baseline'),
      metric,
      alpha: z.number().gt(0).max(1).default(0.05),
      k: z.number().positive().max(100).default(6),
      warmup: z.number().int().min(1).max(100_000).default(30),
      minSigma: z.number().min(0).default(1),
      minRatio: z.number().min(0).default(3),
      minValue: z.number().min(0).default(0),
      span: z.union([z.literal(1), z.literal(2)]).default(1),
    })
    .strict(),
  z
    .object({
      ...common,
      kind: z.literal('new'),
      subject: z.enum(['topic', 'address', 'clientId']),
      warmup: z.number().int().min(0).max(100_000).default(60),
      maxKnown: z.number().int().min(1).max(1024).default(32),
      ipv4Prefix: z.number().int().min(0).max(32).default(24),
      ipv6Prefix: z.number().int().min(0).max(128).default(48),
    })
    .strict(),
]);

const rate = z.object({ perSecond: z.number().min(0), burst: z.number().int().min(1) }).strict();
const actionList = z.array(z.enum(DEFENDER_ACTIONS)).max(DEFENDER_ACTIONS.length);

/**
 * Where alerts are also POSTed (JSON). SECURITY: https, or http only to a loopback host (a
 * local relay): alerts name devices and addresses and must not cross a network in clear.
 */
const webhookSchema = z
  .object({
    url: z
      .string()
      .url()
      .refine((u) => {
        const url = new URL(u);
        return url.protocol === 'https:' || (url.protocol === 'http:' && /^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$/.test(url.hostname));
      }, 'must be https (http only to a loopback host)'),
    timeoutMs: z.number().int().min(100).max(60_000).default(5000),
    /** Sent as `Authorization: Bearer <value of this environment variable>` when set: no secret in the config file. */
    tokenEnv: z.string().regex(/^[A-Z_][A-Z0-9_]*$/).optional(),
  })
  .strict();

export const detectSchema = z
  .object({
    enabled: z.boolean().default(true),
    windowSeconds: z.number().int().min(1).max(3600).default(30),
    /** Topic levels kept for the new-topic rule (0: the full topic). */
    topicLevels: z.number().int().min(0).max(16).default(1),
    maxIdentities: z.number().int().min(1).max(10_000_000).default(100_000),
    maxAddresses: z.number().int().min(1).max(1_000_000).default(10_000),
    /** Replaces the built-in rules when given. */
    rules: z.array(defenderRuleSchema).max(256).optional(),
    /** Actions per rule name; a rule not named takes `defaultActions`. `alert` is always added. */
    actions: z.record(ruleName, actionList).default({}),
    defaultActions: actionList.default(['alert']),
    /** Record what the actions would do (audit, alerts) without doing it. */
    dryRun: z.boolean().default(false),
    /** The quota of a throttled identity: far under limits.client's defaults. */
    throttle: z
      .object({ publishRate: rate.default({ perSecond: 1, burst: 5 }), bandwidth: rate.default({ perSecond: 1024, burst: 8192 }) })
      .strict()
      .default({ publishRate: { perSecond: 1, burst: 5 }, bandwidth: { perSecond: 1024, burst: 8192 } }),
    /** How long a defender ban lasts (0: until released). */
    banSeconds: z.number().int().min(0).max(365 * 86_400).default(3600),
    webhook: webhookSchema.optional(),
    /** Alerts older than this are deleted from defender.db (active ones are kept). */
    retentionDays: z.number().int().min(1).max(3650).default(90),
  })
  .strict()
  .superRefine((cfg, ctx) => {
    const seen = new Set<string>();
    for (const [i, r] of (cfg.rules ?? []).entries()) {
      if (seen.has(r.name)) ctx.addIssue({ code: 'custom', path: ['rules', i, 'name'], message: `duplicate rule name '${r.name}'` });
      seen.add(r.name);
    }
  });

/**
 * The rules an operator sets at run time (PUT /api/v1/defender/rules): the rules and the
 * actions, replacing the config's until reset. Absent keys keep the config's.
 */
export const defenderRulesDocumentSchema = z
  .object({
    rules: z.array(defenderRuleSchema).max(256).optional(),
    actions: z.record(ruleName, actionList).optional(),
    defaultActions: actionList.optional(),
  })
  .strict()
  .superRefine((doc, ctx) => {
    const seen = new Set<string>();
    for (const [i, r] of (doc.rules ?? []).entries()) {
      if (seen.has(r.name)) ctx.addIssue({ code: 'custom', path: ['rules', i, 'name'], message: `duplicate rule name '${r.name}'` });
      seen.add(r.name);
    }
  });
export type DefenderRulesDocument = z.output<typeof defenderRulesDocumentSchema>;

export const defenderAuditSchema = z
  .object({
    /** Seconds between scheduled audits of the running broker (0: only on demand). */
    intervalSeconds: z.number().int().min(0).max(30 * 86_400).default(3600),
    /** A certificate expiring within this many days is a finding. */
    expiringDays: z.number().int().min(1).max(3650).default(30),
    /** A valid leaf certificate issued more than this many days ago is a finding. */
    maxAgeDays: z.number().int().min(1).max(36_500).default(365),
    /** A claim that provisioned this share of its maxDevices is a finding. */
    claimUseFraction: z.number().gt(0).max(1).default(0.9),
  })
  .strict();

export const defenderSchema = z
  .object({
    detect: detectSchema.default(detectSchema.parse({})),
    audit: defenderAuditSchema.default(defenderAuditSchema.parse({})),
  })
  .strict();

export type DefenderConfig = z.output<typeof defenderSchema>;
export type DetectSettings = DefenderConfig['detect'];
export type DefenderAuditSettings = DefenderConfig['audit'];
