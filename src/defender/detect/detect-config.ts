/**
 * The `defender.rules` configuration (issue 15 item 2): a strict zod schema for the
 * detection window, the stats bounds and the rules, and the built-in rule set used when
 * none is configured. Owns: the schema and the defaults. Must not: read files or wire
 * anything into the broker (a later change does).
 *
 * SECURITY: strict objects: a misspelt key is refused, not ignored (a rule silently
 * missing its threshold would be a rule that never fires).
 */
import { z } from 'zod';
import { METRIC_NAMES } from './client-stats.js';
import type { Rule } from './rules.js';

const name = z.string().min(1).max(64).regex(/^[A-Za-z0-9_.-]+$/);
const common = {
  name,
  roles: z.array(z.string().min(1).max(128)).min(1).max(64).optional(),
  consecutiveDatapointsToAlarm: z.number().int().min(1).max(1000).default(1),
  consecutiveDatapointsToClear: z.number().int().min(1).max(1000).default(1),
  cooldownSeconds: z.number().int().min(0).max(7 * 86_400).default(300),
};
const metric = z.enum(METRIC_NAMES);

const ruleSchema = z.discriminatedUnion('kind', [
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

export const detectConfigSchema = z
  .object({
    enabled: z.boolean().default(true),
    windowSeconds: z.number().int().min(10).max(3600).default(30),
    /** Topic levels kept for the new-topic rule (0: the full topic). */
    topicLevels: z.number().int().min(0).max(16).default(1),
    maxIdentities: z.number().int().min(1).max(10_000_000).default(100_000),
    maxAddresses: z.number().int().min(1).max(1_000_000).default(10_000),
    /** Replaces the built-in rules when given. */
    rules: z.array(ruleSchema).max(256).optional(),
  })
  .strict()
  .superRefine((cfg, ctx) => {
    const seen = new Set<string>();
    for (const [i, r] of (cfg.rules ?? []).entries()) {
      if (seen.has(r.name)) ctx.addIssue({ code: 'custom', path: ['rules', i, 'name'], message: `duplicate rule name '${r.name}'` });
      seen.add(r.name);
    }
  });

export type DetectConfigInput = z.input<typeof detectConfigSchema>;
export type DetectConfig = z.output<typeof detectConfigSchema> & { rules: Rule[] };

/**
 * The built-in rules, for the default 30 s window (counts are per 30 s; the baselines judge
 * a 60 s sliding sum). 30 s windows keep the time to detect under 60 s wherever in a window
 * an attack starts; summing two of them keeps the baselines' noise that of 60 s. The
 * figures behind them are in docs/DEFENDER.md (test/unit/defender-detect-sim.test.ts).
 */
export const DEFAULT_RULES: readonly Rule[] = [
  // A device does not normally try topics it may not use; a few denials are a misconfiguration, a burst is probing.
  { kind: 'static', name: 'authz-denials', metric: 'authzDenials', operator: 'gt', value: 5, consecutiveDatapointsToAlarm: 1, consecutiveDatapointsToClear: 2, cooldownSeconds: 600 },
  // Credential stuffing: failures from one source address, whatever names it claims.
  { kind: 'static', name: 'auth-failures-address', roles: ['$address'], metric: 'authFailures', operator: 'gt', value: 10, consecutiveDatapointsToAlarm: 1, consecutiveDatapointsToClear: 2, cooldownSeconds: 600 },
  // Reconnect storm (or two clones taking each other over).
  { kind: 'static', name: 'reconnects', metric: 'connects', operator: 'gt', value: 5, consecutiveDatapointsToAlarm: 1, consecutiveDatapointsToClear: 3, cooldownSeconds: 600 },
  // One certificate, two live sessions at once.
  { kind: 'static', name: 'concurrent-sessions', metric: 'concurrentSessionsMax', operator: 'gt', value: 1, consecutiveDatapointsToAlarm: 1, consecutiveDatapointsToClear: 2, cooldownSeconds: 600 },
  // Topic scan: far more distinct topics than the role's devices use.
  { kind: 'percentile', name: 'distinct-topics-fleet', metric: 'distinctTopics', percentile: 99, factor: 3, minValue: 20, minPopulation: 20, consecutiveDatapointsToAlarm: 1, consecutiveDatapointsToClear: 2, cooldownSeconds: 600 },
  // Exfiltration or a runaway device: rate and volume against its own history.
  { kind: 'baseline', name: 'messages-baseline', metric: 'messagesSent', alpha: 0.05, k: 6, warmup: 30, minSigma: 1, minRatio: 3, minValue: 10, span: 2, consecutiveDatapointsToAlarm: 1, consecutiveDatapointsToClear: 2, cooldownSeconds: 600 },
  { kind: 'baseline', name: 'bytes-baseline', metric: 'bytesSent', alpha: 0.05, k: 6, warmup: 30, minSigma: 256, minRatio: 3, minValue: 4096, span: 2, consecutiveDatapointsToAlarm: 1, consecutiveDatapointsToClear: 2, cooldownSeconds: 600 },
  // Publishing under a topic prefix the device never used (e.g. a command prefix).
  { kind: 'new', name: 'new-topic-prefix', subject: 'topic', warmup: 60, maxKnown: 32, ipv4Prefix: 24, ipv6Prefix: 48, consecutiveDatapointsToAlarm: 1, consecutiveDatapointsToClear: 1, cooldownSeconds: 600 },
  // A source network the identity never connected from.
  { kind: 'new', name: 'new-address-prefix', subject: 'address', warmup: 60, maxKnown: 8, ipv4Prefix: 24, ipv6Prefix: 48, consecutiveDatapointsToAlarm: 1, consecutiveDatapointsToClear: 1, cooldownSeconds: 600 },
];

/** Parses a `defender.rules` section (undefined: all defaults); throws a ZodError naming the bad key. */
export function parseDetectConfig(input: unknown): DetectConfig {
  const cfg = detectConfigSchema.parse(input ?? {});
  return { ...cfg, rules: cfg.rules ?? DEFAULT_RULES.map((r) => ({ ...r })) };
}
