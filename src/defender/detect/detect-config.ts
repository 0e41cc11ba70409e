/**
 * The `defender.detect` configuration (issue 15 item 2) as the detection core sees it: the
 * built-in rule set used when none is configured, and the parse that supplies it. Owns:
 * the defaults. Must not: define the schema (core/defender-config.ts does, so the broker's
 * config can include it) or wire anything into the broker.
 */
import type { z } from 'zod';
import { detectSchema } from '../../core/defender-config.js';
import type { Rule } from './rules.js';

/** The schema lives in core (the broker's config includes it); re-exported for the detection tests. */
export const detectConfigSchema = detectSchema;

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

/** Parses a `defender.detect` section (undefined: all defaults); throws a ZodError naming the bad key. */
export function parseDetectConfig(input: unknown): DetectConfig {
  const cfg = detectConfigSchema.parse(input ?? {});
  return { ...cfg, rules: cfg.rules ?? DEFAULT_RULES.map((r) => ({ ...r })) };
}
