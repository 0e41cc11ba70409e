/**
 * `bastion defender rules`: the detection rules a broker with this config would run (the
 * config's `defender.detect.rules`, else the built-in ones) and the actions each takes.
 * Owns: the command's output. Must not: define rules or defaults (defender/detect/ does) or
 * the action merge (defender/response/rule-actions.ts does).
 *
 * A rule name in `defender.detect.actions` that no rule has is a warning on stderr: the
 * operator meant some rule to quarantine or ban, and as written it never will.
 */
import type { DefenderActionName } from '../core/defender-config.js';
import type { Rule } from '../defender/detect/rules.js';
import { badInput, clean, configOf, type SourceOptions } from './defender-source.js';

export interface RulesOptions extends SourceOptions {
  json?: boolean;
}

const OPERATORS = { gt: '>', gte: '>=', lt: '<', lte: '<=' } as const;

/** What a rule compares, in a few words. */
export function describeRule(rule: Rule): string {
  switch (rule.kind) {
    case 'static':
      return `${rule.metric} ${OPERATORS[rule.operator]} ${rule.value}`;
    case 'percentile':
      return `${rule.metric} > ${rule.factor} x role p${rule.percentile} and >= ${rule.minValue} (with >= ${rule.minPopulation} identities)`;
    case 'baseline':
      return `${rule.metric}${rule.span === 2 ? ' over 2 windows' : ''} > own mean + ${rule.k} sigma, >= ${rule.minRatio} x mean and >= ${rule.minValue} (after ${rule.warmup} windows)`;
    case 'new': {
      const prefix = rule.subject === 'address' ? ` (/${rule.ipv4Prefix} IPv4, /${rule.ipv6Prefix} IPv6)` : '';
      return `${rule.subject === 'address' ? 'an' : 'a'} ${rule.subject}${prefix} never seen for the identity (after ${rule.warmup} windows)`;
    }
  }
}

export function formatRuleLine(rule: Rule, actions: readonly DefenderActionName[]): string {
  const roles = rule.roles !== undefined ? `  roles: ${rule.roles.map(clean).join(', ')}` : '';
  return `${rule.name.padEnd(24)} ${rule.kind.padEnd(10)} ${describeRule(rule)}${roles}  actions: ${actions.join(', ')}`;
}

export async function rulesCommand(opts: RulesOptions): Promise<void> {
  const { parseDetectConfig } = await import('../defender/detect/detect-config.js');
  const { actionsByRule, unknownActionRules } = await import('../defender/response/rule-actions.js');
  let detect;
  try {
    const config = await configOf(opts);
    detect = parseDetectConfig(config?.defender.detect);
  } catch (err) {
    badInput(err);
  }
  const actions = actionsByRule(detect, detect.rules);
  for (const name of unknownActionRules(detect, detect.rules)) {
    process.stderr.write(`bastion: warning: defender.detect.actions names rule '${clean(name)}', which no rule has: its actions are never taken\n`);
  }
  const view = { enabled: detect.enabled, dryRun: detect.dryRun, windowSeconds: detect.windowSeconds, rules: detect.rules, actions };
  if (opts.json === true) {
    process.stdout.write(`${JSON.stringify(view, null, 2)}\n`);
    return;
  }
  const lines = [`detection ${detect.enabled ? 'on' : 'off'}, ${detect.windowSeconds} s windows${detect.dryRun ? ', dry run (actions are recorded, not taken)' : ''}`];
  for (const rule of detect.rules) lines.push(formatRuleLine(rule, actions[rule.name] ?? ['alert']));
  lines.push(`${detect.rules.length} rule(s)${opts.config === undefined ? ' (built-in; pass -c CONFIG for a broker config)' : ''}`);
  process.stdout.write(`${lines.join('\n')}\n`);
}
