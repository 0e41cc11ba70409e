/**
 * The rule evaluator (issue 15 item 2): turns each window's datapoints into alarm state
 * changes per (rule, identity), with consecutive-datapoint hysteresis and a cooldown, and
 * keeps what the rules learn (baselines, known topics, address prefixes, client ids).
 * Owns: that state and its bounds. Must not: act on an alarm (actions are another module),
 * count events (client-stats.ts does) or do I/O.
 *
 * SECURITY: the learned state is bounded: at most `maxIdentities` identities (least
 * recently seen evicted first, never one in ALARM unless all are), and each known set
 * at most the rule's `maxKnown`.
 */
import { ADDRESS_ROLE, type Datapoint } from './client-stats.js';
import { addressPrefix, baselineThreshold, compare, percentileOf, updateBaseline, type Baseline, type NewBehaviourRule, type Rule } from './rules.js';

export type AlarmState = 'ALARM' | 'CLEAR';

export interface AlarmChange {
  rule: string;
  identity: string;
  role: string;
  state: AlarmState;
  /** The datapoint's value (new-behaviour rules: how many new items). */
  value: number;
  /** What it was compared with (new-behaviour rules: 0). */
  threshold: number;
  /** The window end of the datapoint that changed the state. */
  at: number;
  /** New-behaviour rules: the items never seen before. */
  items?: string[];
}

interface RuleState {
  state: AlarmState;
  breaches: number;
  oks: number;
  lastAlarmAt: number;
}

interface IdentityState {
  datapoints: number;
  rules: Array<RuleState | undefined>;
  baselines: Array<Baseline | undefined>;
  known: Array<Map<string, number> | undefined>;
}

/** What one identity taught the rules, as JSON (Evaluator.exportState). Arrays are by rule position. */
export interface LearnedState {
  datapoints: number;
  baselines: Array<{ n: number; mean: number; variance: number } | null>;
  known: Array<string[] | null>;
  alarms: Array<{ state: AlarmState; lastAlarmAt: number | null } | null>;
}

export interface EvaluatorOptions {
  maxIdentities?: number;
}

function applies(rule: Rule, role: string): boolean {
  return rule.roles === undefined ? role !== ADDRESS_ROLE : rule.roles.includes(role);
}

export class Evaluator {
  private readonly identities = new Map<string, IdentityState>();
  private readonly maxIdentities: number;
  private window = 0;
  /** Breaches that would have raised an ALARM but fell in a cooldown. */
  suppressed = 0;

  private ruleList: readonly Rule[];

  constructor(rules: readonly Rule[], options: EvaluatorOptions = {}) {
    this.ruleList = rules;
    this.maxIdentities = options.maxIdentities ?? 100_000;
  }

  get rules(): readonly Rule[] {
    return this.ruleList;
  }

  /**
   * Replaces the rules (an operator changed them at run time). What a rule learned is kept
   * when a rule of the same name and the same definition is in the new set, at its new
   * position; a changed or new rule starts from nothing (its warm-up again).
   */
  replaceRules(rules: readonly Rule[]): void {
    const old = this.ruleList;
    const same = rules.map((r) => {
      const j = old.findIndex((o) => o.name === r.name);
      return j >= 0 && JSON.stringify(old[j]) === JSON.stringify(r) ? j : -1;
    });
    for (const st of this.identities.values()) {
      st.rules = same.map((j) => (j >= 0 ? st.rules[j] : undefined));
      st.baselines = same.map((j) => (j >= 0 ? st.baselines[j] : undefined));
      st.known = same.map((j) => (j >= 0 ? st.known[j] : undefined));
    }
    this.ruleList = rules;
  }

  get size(): number {
    return this.identities.size;
  }

  /** Identities currently in ALARM for `rule` (for tests and a future admin view). */
  alarming(rule: string): string[] {
    const i = this.rules.findIndex((r) => r.name === rule);
    const out: string[] = [];
    for (const [id, s] of this.identities) if (s.rules[i]?.state === 'ALARM') out.push(id);
    return out;
  }

  /** Forgets what was learned for `identity` (after an operator accepted its new behaviour). */
  forget(identity: string): void {
    this.identities.delete(identity);
  }

  /**
   * Ends the identity's alarms without forgetting what was learned (an operator released
   * it): every rule is CLEAR again, its cooldown kept, so a behaviour that goes on alarms
   * again after the cooldown rather than at once.
   */
  resetAlarms(identity: string): void {
    const st = this.identities.get(identity);
    if (st === undefined) return;
    for (const rs of st.rules) {
      if (rs === undefined) continue;
      rs.state = 'CLEAR';
      rs.breaches = 0;
      rs.oks = 0;
    }
  }

  /**
   * What was learned about `identity` as plain JSON (cluster: the node a device leaves
   * hands it to the node it moves to); null when nothing is known. Window numbers are
   * node-local, so only `datapoints`, the baselines' statistics and the known items travel.
   */
  exportState(identity: string): LearnedState | null {
    const st = this.identities.get(identity);
    if (st === undefined) return null;
    // By rule position over every rule: the state's own arrays are sparse (a rule that never
    // judged this identity has no entry), and both ends must agree on the length.
    return {
      datapoints: st.datapoints,
      baselines: this.rules.map((_, i) => {
        const b = st.baselines[i];
        return b === undefined ? null : { n: b.n, mean: b.mean, variance: b.variance };
      }),
      known: this.rules.map((_, i) => {
        const k = st.known[i];
        return k === undefined ? null : [...k.keys()];
      }),
      alarms: this.rules.map((_, i) => {
        const r = st.rules[i];
        return r === undefined ? null : { state: r.state, lastAlarmAt: r.lastAlarmAt === Number.NEGATIVE_INFINITY ? null : r.lastAlarmAt };
      }),
    };
  }

  /**
   * Adopts learned state from another node, when this node knows less (fewer datapoints):
   * a device that moved keeps its baselines and known items instead of warming up again.
   * Entries are matched by rule position, so both nodes must run the same rules (the
   * cluster shares one config); a snapshot of another length is ignored.
   */
  importState(identity: string, learned: LearnedState): boolean {
    const n = this.rules.length;
    if (learned.baselines.length !== n || learned.known.length !== n || learned.alarms.length !== n) return false;
    const current = this.identities.get(identity);
    if (current !== undefined && current.datapoints >= learned.datapoints) return false;
    const st: IdentityState = { datapoints: learned.datapoints, rules: [], baselines: [], known: [] };
    this.rules.forEach((rule, i) => {
      const b = learned.baselines[i];
      if (b != null) st.baselines[i] = { n: b.n, mean: b.mean, variance: b.variance, prev: 0, prevWindow: -1 };
      const k = learned.known[i];
      if (k != null) st.known[i] = new Map(k.slice(-(rule.kind === 'new' ? rule.maxKnown : 0)).map((item) => [item, this.window]));
      const a = learned.alarms[i];
      if (a != null) st.rules[i] = { state: a.state, breaches: 0, oks: 0, lastAlarmAt: a.lastAlarmAt ?? Number.NEGATIVE_INFINITY };
    });
    this.identities.delete(identity);
    this.identities.set(identity, st);
    this.evict();
    return true;
  }

  /** Evaluates one closed window's datapoints; returns the state changes in order. */
  evaluate(datapoints: readonly Datapoint[]): AlarmChange[] {
    this.window++;
    const fleet = this.percentiles(datapoints);
    const changes: AlarmChange[] = [];
    for (const dp of datapoints) {
      const st = this.stateOf(dp.identity);
      this.rules.forEach((rule, i) => {
        if (!applies(rule, dp.role)) return;
        const verdict = this.judge(rule, i, dp, st, fleet);
        if (verdict !== null) this.step(rule, i, dp, st, verdict, changes);
      });
      st.datapoints++;
    }
    this.evict();
    return changes;
  }

  /** pN per percentile rule and role, over this window's datapoints. */
  private percentiles(datapoints: readonly Datapoint[]): Map<string, { value: number; population: number }> {
    const out = new Map<string, { value: number; population: number }>();
    this.rules.forEach((rule, i) => {
      if (rule.kind !== 'percentile') return;
      const byRole = new Map<string, number[]>();
      for (const dp of datapoints) {
        if (!applies(rule, dp.role)) continue;
        let list = byRole.get(dp.role);
        if (list === undefined) byRole.set(dp.role, (list = []));
        list.push(dp.metrics[rule.metric]);
      }
      for (const [role, values] of byRole) {
        values.sort((a, b) => a - b);
        out.set(`${i}\u0000${role}`, { value: percentileOf(values, rule.percentile), population: values.length });
      }
    });
    return out;
  }

  private stateOf(identity: string): IdentityState {
    let st = this.identities.get(identity);
    if (st !== undefined) this.identities.delete(identity);
    else st = { datapoints: 0, rules: [], baselines: [], known: [] };
    // Re-inserted at the end: Map order is then least recently seen first, for eviction.
    this.identities.set(identity, st);
    return st;
  }

  /** Whether the datapoint breaches the rule, with value and threshold; null when no verdict. */
  private judge(
    rule: Rule,
    i: number,
    dp: Datapoint,
    st: IdentityState,
    fleet: Map<string, { value: number; population: number }>,
  ): { breach: boolean; value: number; threshold: number; items?: string[] } | null {
    switch (rule.kind) {
      case 'static': {
        const value = dp.metrics[rule.metric];
        return { breach: compare(value, rule.operator, rule.value), value, threshold: rule.value };
      }
      case 'percentile': {
        const p = fleet.get(`${i}\u0000${dp.role}`);
        if (p === undefined || p.population < rule.minPopulation) return null;
        const value = dp.metrics[rule.metric];
        const threshold = Math.max(rule.factor * p.value, rule.minValue);
        return { breach: value > rule.factor * p.value && value >= rule.minValue, value, threshold };
      }
      case 'baseline': {
        const raw = dp.metrics[rule.metric];
        const b = (st.baselines[i] ??= { n: 0, mean: 0, variance: 0, prev: 0, prevWindow: -1 });
        // Span 2: this window plus the one before, if the identity had a datapoint in it.
        const value = rule.span === 2 ? raw + (b.prevWindow === this.window - 1 ? b.prev : 0) : raw;
        b.prev = raw;
        b.prevWindow = this.window;
        const threshold = baselineThreshold(rule, b);
        const breach = threshold !== null && value > threshold;
        if (!breach) updateBaseline(b, value, rule.alpha);
        return threshold === null ? null : { breach, value, threshold };
      }
      case 'new':
        return this.judgeNew(rule, i, dp, st);
    }
  }

  private judgeNew(rule: NewBehaviourRule, i: number, dp: Datapoint, st: IdentityState): { breach: boolean; value: number; threshold: number; items?: string[] } | null {
    const raw = rule.subject === 'topic' ? dp.topicKeys : rule.subject === 'clientId' ? dp.clientIds : dp.addresses.map((a) => addressPrefix(a, rule.ipv4Prefix, rule.ipv6Prefix));
    const known = (st.known[i] ??= new Map<string, number>());
    const warm = st.datapoints >= rule.warmup;
    const fresh: string[] = [];
    for (const item of raw) {
      if (!known.has(item) && !fresh.includes(item)) fresh.push(item);
      known.delete(item);
      known.set(item, this.window);
      if (known.size > rule.maxKnown) known.delete(known.keys().next().value!);
    }
    if (!warm) return null;
    return fresh.length > 0 ? { breach: true, value: fresh.length, threshold: 0, items: fresh } : { breach: false, value: 0, threshold: 0 };
  }

  private step(rule: Rule, i: number, dp: Datapoint, st: IdentityState, v: { breach: boolean; value: number; threshold: number; items?: string[] }, changes: AlarmChange[]): void {
    let rs = st.rules[i];
    if (rs === undefined) {
      if (!v.breach) return;
      rs = st.rules[i] = { state: 'CLEAR', breaches: 0, oks: 0, lastAlarmAt: Number.NEGATIVE_INFINITY };
    }
    const at = dp.windowEnd;
    const change = (state: AlarmState): void => {
      const c: AlarmChange = { rule: rule.name, identity: dp.identity, role: dp.role, state, value: v.value, threshold: v.threshold, at };
      if (v.items !== undefined) c.items = v.items;
      changes.push(c);
    };
    if (v.breach) {
      rs.breaches++;
      rs.oks = 0;
      if (rs.state === 'CLEAR' && rs.breaches >= rule.consecutiveDatapointsToAlarm) {
        if (at - rs.lastAlarmAt < rule.cooldownSeconds * 1000) this.suppressed++;
        else {
          rs.state = 'ALARM';
          rs.lastAlarmAt = at;
          change('ALARM');
        }
      }
    } else {
      rs.oks++;
      rs.breaches = 0;
      if (rs.state === 'ALARM' && rs.oks >= rule.consecutiveDatapointsToClear) {
        rs.state = 'CLEAR';
        change('CLEAR');
      }
      // Nothing left to remember once clear and out of its cooldown: free it.
      if (rs.state === 'CLEAR' && at - rs.lastAlarmAt >= rule.cooldownSeconds * 1000) st.rules[i] = undefined;
    }
  }

  private evict(): void {
    if (this.identities.size <= this.maxIdentities) return;
    for (const [id, st] of this.identities) {
      if (this.identities.size <= this.maxIdentities) return;
      if (!st.rules.some((r) => r?.state === 'ALARM')) this.identities.delete(id);
    }
    for (const id of this.identities.keys()) {
      if (this.identities.size <= this.maxIdentities) return;
      this.identities.delete(id);
    }
  }
}
