/**
 * Detection rule kinds (issue 15 item 2) and the pure helpers they need: comparison, the
 * nearest-rank percentile, the online baseline (EWMA mean and variance), address prefixes.
 * Owns: the rule shapes and those helpers. Must not: keep state across datapoints
 * (evaluator.ts does) or parse configuration (detect-config.ts does).
 */
import type { MetricName } from './client-stats.js';

export type Operator = 'gt' | 'gte' | 'lt' | 'lte';

/** What every rule has: a name, whom it applies to, and its alarm hysteresis. */
export interface RuleCommon {
  name: string;
  /** Roles the rule applies to (absent: every role except `$address`). */
  roles?: string[];
  /** Breaching datapoints in a row before ALARM. */
  consecutiveDatapointsToAlarm: number;
  /** Non-breaching datapoints in a row before CLEAR. */
  consecutiveDatapointsToClear: number;
  /** After an ALARM, no new ALARM of this rule for this identity for this long (breaches are counted as suppressed). */
  cooldownSeconds: number;
}

/** The metric compared with a fixed value. */
export interface StaticRule extends RuleCommon {
  kind: 'static';
  metric: MetricName;
  operator: Operator;
  value: number;
}

/**
 * The identity's metric against the pN of all identities of its role in the same window:
 * breach when value > factor × pN and value ≥ minValue. A bare "above p99" would flag 1%
 * of the fleet every window; the factor and floor keep it to outliers.
 */
export interface PercentileRule extends RuleCommon {
  kind: 'percentile';
  metric: MetricName;
  percentile: number;
  factor: number;
  minValue: number;
  /** Fewer datapoints of the role than this in the window: no verdict (too few to compare). */
  minPopulation: number;
}

/**
 * The identity's metric against its own baseline, learned online: exponentially weighted
 * mean and variance with weight `alpha`. After `warmup` datapoints, breach when
 * value > mean + k·max(σ, minSigma) and value ≥ minRatio × mean and value ≥ minValue.
 * Breaching datapoints do not update the baseline, so an attack does not teach itself.
 */
export interface BaselineRule extends RuleCommon {
  kind: 'baseline';
  metric: MetricName;
  alpha: number;
  k: number;
  warmup: number;
  minSigma: number;
  minRatio: number;
  minValue: number;
  /**
   * Datapoints summed into the value compared (1 or 2). With 2 and 30 s windows the rule
   * judges a 60 s sliding sum every 30 s: the noise of a 60 s window, the delay of a 30 s one.
   */
  span: 1 | 2;
}

/**
 * Something never seen for this identity after `warmup` datapoints: a topic key (as the
 * stats collect it: first level(s) or full topic), a source address prefix, or a client id.
 * The known set is bounded (`maxKnown`, least recently seen evicted).
 */
export interface NewBehaviourRule extends RuleCommon {
  kind: 'new';
  subject: 'topic' | 'address' | 'clientId';
  warmup: number;
  maxKnown: number;
  ipv4Prefix: number;
  ipv6Prefix: number;
}

export type Rule = StaticRule | PercentileRule | BaselineRule | NewBehaviourRule;

export function compare(value: number, op: Operator, threshold: number): boolean {
  switch (op) {
    case 'gt':
      return value > threshold;
    case 'gte':
      return value >= threshold;
    case 'lt':
      return value < threshold;
    case 'lte':
      return value <= threshold;
  }
}

/** Nearest-rank percentile of ascending `sorted` (p in 0..100). */
export function percentileOf(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

/** An EWMA mean and variance, and the last raw value: 5 numbers. */
export interface Baseline {
  n: number;
  mean: number;
  variance: number;
  /** The previous datapoint's raw value and its window number (for span 2). */
  prev: number;
  prevWindow: number;
}

/** Folds `x` into `b` (West's incremental EWMA variance); the first value seeds the mean. */
export function updateBaseline(b: Baseline, x: number, alpha: number): void {
  if (b.n === 0) {
    b.mean = x;
    b.variance = 0;
  } else {
    // During warm-up, a weight of 1/(n+1) is a plain running mean: faster to settle than alpha.
    const a = Math.max(alpha, 1 / (b.n + 1));
    const diff = x - b.mean;
    const incr = a * diff;
    b.mean += incr;
    b.variance = (1 - a) * (b.variance + diff * incr);
  }
  b.n++;
}

/** The threshold a baseline rule compares with, or null during warm-up. */
export function baselineThreshold(rule: BaselineRule, b: Baseline): number | null {
  if (b.n < rule.warmup) return null;
  const sigma = Math.max(Math.sqrt(b.variance), rule.minSigma);
  return Math.max(b.mean + rule.k * sigma, rule.minRatio * b.mean, rule.minValue);
}

/**
 * The prefix of an address for the "new address" rule: a.b.c.0/24 for IPv4 (and
 * IPv4-mapped IPv6), the first `v6` bits for IPv6. Anything else is kept whole.
 */
export function addressPrefix(address: string, v4: number, v6: number): string {
  const mapped = address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(mapped)) {
    const n = mapped.split('.').reduce((acc, o) => (acc << 8) + (Number(o) & 255), 0) >>> 0;
    const bits = Math.max(0, Math.min(32, v4));
    const masked = bits === 0 ? 0 : (n & (~0 << (32 - bits))) >>> 0;
    return `${[24, 16, 8, 0].map((s) => (masked >>> s) & 255).join('.')}/${bits}`;
  }
  if (mapped.includes(':')) {
    const groups = expandIPv6(mapped);
    if (groups === null) return mapped;
    const bits = Math.max(0, Math.min(128, v6));
    const out: string[] = [];
    for (let i = 0; i < 8; i++) {
      const keep = Math.max(0, Math.min(16, bits - i * 16));
      const mask = keep === 0 ? 0 : (0xffff << (16 - keep)) & 0xffff;
      out.push((groups[i]! & mask).toString(16));
    }
    return `${out.join(':')}/${bits}`;
  }
  return mapped;
}

function expandIPv6(addr: string): number[] | null {
  const zone = addr.indexOf('%');
  const a = zone >= 0 ? addr.slice(0, zone) : addr;
  const halves = a.split('::');
  if (halves.length > 2) return null;
  const parse = (s: string): number[] => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  const head = parse(halves[0]!);
  const tail = halves.length === 2 ? parse(halves[1]!) : [];
  const fill = 8 - head.length - tail.length;
  if (fill < 0 || (halves.length === 1 && fill !== 0)) return null;
  const groups = [...head, ...new Array<number>(fill).fill(0), ...tail];
  return groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : null;
}
