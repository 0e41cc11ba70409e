/**
 * `acl lint`: rules that are too broad, that can never match, or that let one device
 * reach another's topics. Owns: the checks and their wording. Must not: change rules.
 */
import type { AclPolicy, AclRole, AclRule } from '../../core/authz-config.js';
import { patternProblem, ruleText } from './pattern.js';
import { filterCovers } from './topic-cover.js';

export interface LintFinding {
  severity: 'error' | 'warning';
  role: string | null;
  /** Index of the rule in its role; null for a finding about a role or binding. */
  index: number | null;
  rule: string | null;
  message: string;
}

/** Per-identity variables: a level holding one of these belongs to one client. */
const IDENTITY_VARIABLES = new Set(['clientId', 'username', 'cert.cn', 'cert.san.uri', 'cert.san.dns', 'cert.serial']);

/**
 * A role bound to many identities by a glob on a per-device attribute (`cert.cn: *`,
 * `clientId: sensor-*`): its rules apply to every device, so breadth matters.
 */
function isDeviceRole(policy: AclPolicy, role: string): boolean {
  return policy.bindings.some((b) => b.role === role && b.attribute !== 'cert.ou' && b.value.includes('*'));
}

function grantsPublish(rule: AclRule): boolean {
  return rule.action !== 'subscribe';
}

function actionCovers(deny: AclRule, allow: AclRule): boolean {
  return deny.action === 'all' || deny.action === allow.action;
}

/** Levels before the first wildcard hold no per-identity variable. */
function wildcardBeforeIdentity(topic: string, wildcards: ReadonlySet<string>): boolean {
  for (const level of topic.split('/')) {
    const m = /^\$\{([^}]*)\}$/.exec(level);
    if (m !== null && IDENTITY_VARIABLES.has(m[1]!)) return false;
    if (wildcards.has(level)) return true;
  }
  return false;
}

function lintRule(policy: AclPolicy, role: AclRole, rule: AclRule, index: number, out: LintFinding[]): void {
  const at = { role: role.name, index, rule: ruleText(rule) };
  const problem = patternProblem(rule.topic);
  if (problem !== null) {
    out.push({ severity: 'error', ...at, message: `can never match: ${problem}` });
    return;
  }
  if (rule.effect !== 'allow') return;
  const first = rule.topic.split('/')[0]!;
  if (first.startsWith('$') && grantsPublish(rule)) out.push({ severity: 'error', ...at, message: `write access to ${first} topics: they belong to the broker` });
  const device = isDeviceRole(policy, role.name);
  if (device && (rule.topic === '#' || rule.topic === '+/#' || rule.topic === '+')) {
    out.push({ severity: 'error', ...at, message: 'too broad for a role bound to devices: every device may reach every topic' });
  } else if (device && grantsPublish(rule) && wildcardBeforeIdentity(rule.topic, new Set(['+', '#']))) {
    out.push({ severity: 'warning', ...at, message: "lets one device publish to another's topics: put ${clientId} or ${cert.cn} where the wildcard is" });
  } else if (device && wildcardBeforeIdentity(rule.topic, new Set(['+']))) {
    out.push({ severity: 'warning', ...at, message: "lets one device read another's topics: put ${clientId} or ${cert.cn} where the + is" });
  }
  role.rules.forEach((other, k) => {
    if (other.effect === 'deny' && actionCovers(other, rule) && patternProblem(other.topic) === null && filterCovers(other.topic, rule.topic)) {
      out.push({ severity: 'warning', ...at, message: `can never match: shadowed by deny rule #${k} (${ruleText(other)}); deny wins` });
    }
  });
}

export function lintPolicy(policy: AclPolicy): LintFinding[] {
  const out: LintFinding[] = [];
  const roleNames = new Set(policy.roles.map((r) => r.name));
  for (const b of policy.bindings) {
    if (!roleNames.has(b.role)) out.push({ severity: 'error', role: b.role, index: null, rule: null, message: `binding ${b.attribute}=${b.value} names an unknown role` });
  }
  for (const role of policy.roles) {
    if (!policy.bindings.some((b) => b.role === role.name)) {
      out.push({ severity: 'warning', role: role.name, index: null, rule: null, message: 'bound to no identity: its rules never apply' });
    }
    role.rules.forEach((rule, index) => lintRule(policy, role, rule, index, out));
  }
  return out;
}

export function formatLint(findings: LintFinding[]): string {
  if (findings.length === 0) return 'no findings\n';
  const where = (f: LintFinding): string => `${f.role !== null ? `role "${f.role}"` : ''}${f.index !== null ? ` rule #${f.index} (${f.rule})` : ''}`;
  // A finding about no role (a listener, say) has no place to name.
  const lines = findings.map((f) => (where(f) === '' ? `${f.severity}: ${f.message}` : `${f.severity}: ${where(f)}: ${f.message}`));
  const errors = findings.filter((f) => f.severity === 'error').length;
  lines.push(`${errors} error(s), ${findings.length - errors} warning(s)`);
  return `${lines.join('\n')}\n`;
}
