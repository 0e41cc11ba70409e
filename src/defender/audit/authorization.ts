/**
 * Authorization audit checks: `bastion acl lint`'s findings (security/authz/lint.ts, called
 * here, not re-implemented) mapped to audit findings, and deny rules that use wildcards.
 * Owns: the mapping and the wildcard-deny check. Must not: change rules.
 */
import { lintPolicy, type LintFinding } from '../../security/authz/lint.js';
import { ruleText } from '../../security/authz/pattern.js';
import type { AuditInput } from './audit-input.js';
import type { Finding } from './finding.js';

function lintSubject(f: LintFinding): string {
  if (f.role === null) return 'policy';
  return f.index !== null ? `role ${f.role} rule #${f.index} (${f.rule})` : `role ${f.role}`;
}

/** Lint errors are rules that are too broad or can never match; warnings are narrower. */
function lintFinding(f: LintFinding): Finding {
  const tooBroad = /too broad|belong to the broker|another's topics/.test(f.message);
  return {
    check: tooBroad ? 'acl-overly-permissive' : 'acl-lint',
    severity: f.severity === 'error' ? (tooBroad ? 'critical' : 'medium') : tooBroad ? 'medium' : 'low',
    subject: lintSubject(f),
    message: f.message,
    fix: f.role !== null ? `edit role ${f.role} (\`bastion acl role set ${f.role} ...\` or the config's authz.roles); \`bastion acl lint\` shows the rule` : 'see `bastion acl lint`',
  };
}

/*
 * Unlike AWS IoT policies (where `+`/`#` in a Deny are literal characters), Bastion's
 * engine matches a deny rule's topic as an MQTT filter: the deny applies to every topic
 * the wildcard matches. That is rarely a hole, but it is easy to deny more than meant
 * (a later allow in the same role becomes dead), and a SUBSCRIBE to a broader filter is
 * still granted, the denied topics being withheld at delivery only. So: low, advisory.
 */
function wildcardDenyFindings(input: AuditInput): Finding[] {
  const out: Finding[] = [];
  for (const role of input.policy.roles) {
    role.rules.forEach((rule, index) => {
      if (rule.effect !== 'deny' || !rule.topic.split('/').some((l) => l === '+' || l === '#')) return;
      out.push({
        check: 'acl-deny-wildcard',
        severity: 'low',
        subject: `role ${role.name} rule #${index} (${ruleText(rule)})`,
        message: `deny rule on ${rule.topic} uses MQTT wildcards: it denies every topic they match (not the literal characters, as AWS IoT would), and a subscription to a broader filter is granted with those topics withheld at delivery`,
        fix: 'check with `bastion acl explain` that it denies exactly what you mean; name the topics without wildcards where you can',
      });
    });
  }
  return out;
}

export function authorizationFindings(input: AuditInput): Finding[] {
  return [...lintPolicy(input.policy).map(lintFinding), ...wildcardDenyFindings(input)];
}
