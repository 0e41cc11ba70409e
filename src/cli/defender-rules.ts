/**
 * `bastion defender rules`: the detection rules a broker with this config would run (those
 * set through the admin API when the data directory has them, else the config's
 * `defender.detect.rules`, else the built-in ones) and the actions each takes.
 * Owns: the command's output. Must not: define rules or defaults (defender/detect/ does) or
 * the action merge (defender/response/rule-actions.ts does).
 *
 * A rule name in `defender.detect.actions` that no rule has is a warning on stderr: the
 * operator meant some rule to quarantine or ban, and as written it never will.
 */
import type { DefenderActionName } from '../core/defender-config.js';
import { silentLogger, type Logger } from '../core/logger.js';
import type { Rule } from '../defender/detect/rules.js';
import { badInput, clean, configOf, dataDirOf, type SourceOptions } from './defender-source.js';

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
  const { LiveRules } = await import('../server/defender-rules.js');
  const { actionsByRule, unknownActionRules } = await import('../defender/response/rule-actions.js');
  const { detectSchema } = await import('../core/defender-config.js');
  let live;
  let detect;
  try {
    const config = await configOf(opts);
    detect = config?.defender.detect ?? detectSchema.parse({});
    // Rules an operator set through the admin API (kept in <dataDir>/defender-rules.json) replace the config's, as the broker does.
    const errors: string[] = [];
    const logger: Logger = { ...silentLogger, error: (_o, msg) => void errors.push(msg ?? 'error') };
    live = new LiveRules(detect, await dataDirOf(opts), logger);
    for (const e of errors) process.stderr.write(`bastion: warning: ${e}\n`);
  } catch (err) {
    badInput(err);
  }
  const rules = live.rules;
  const actions = actionsByRule(live.settings, rules);
  const o = live.overridden;
  const where = o === null ? 'defender.detect.actions names' : 'the actions set through the admin API name';
  for (const name of unknownActionRules(live.settings, rules)) {
    process.stderr.write(`bastion: warning: ${where} rule '${clean(name)}', which no rule has: its actions are never taken\n`);
  }
  const view = { source: o === null ? 'config' : 'api', ...(o !== null ? { setBy: o.by, setAt: o.at } : {}), enabled: detect.enabled, dryRun: detect.dryRun, windowSeconds: detect.windowSeconds, rules, actions };
  if (opts.json === true) {
    process.stdout.write(`${JSON.stringify(view, null, 2)}\n`);
    return;
  }
  const lines = [`detection ${detect.enabled ? 'on' : 'off'}, ${detect.windowSeconds} s windows${detect.dryRun ? ', dry run (actions are recorded, not taken)' : ''}`];
  if (o !== null) lines.push(`rules set through the admin API by ${clean(o.by)} at ${new Date(o.at).toISOString()} (they replace the config's until DELETE /api/v1/defender/rules)`);
  for (const rule of rules) lines.push(formatRuleLine(rule, actions[rule.name] ?? ['alert']));
  lines.push(`${rules.length} rule(s)${o === null && opts.config === undefined ? ' (built-in; pass -c CONFIG for a broker config)' : ''}`);
  process.stdout.write(`${lines.join('\n')}\n`);
}
