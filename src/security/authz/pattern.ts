/**
 * Topic patterns: MQTT filter syntax plus `${variable}` substitutions. Owns: parsing a
 * pattern, expanding it for one client, and the text form of a rule. Must not: decide
 * allow or deny (engine.ts does).
 */
import type { AclRule } from '../../core/authz-config.js';
import { isValidTopicFilter } from '../../protocol/topic.js';
import type { AuthorizedClient } from '../../broker/ports.js';
import { isPatternVariable, isSafeSubstitution, variableValues, type PatternVariable } from './identity-values.js';

const VARIABLE = /\$\{([^}]*)\}/g;

/** Variables a pattern uses, in order; unknown names are reported, not dropped. */
export function patternVariables(pattern: string): { known: PatternVariable[]; unknown: string[] } {
  const known: PatternVariable[] = [];
  const unknown: string[] = [];
  for (const m of pattern.matchAll(VARIABLE)) {
    const name = m[1]!;
    if (isPatternVariable(name)) known.push(name);
    else unknown.push(name);
  }
  return { known, unknown };
}

/** Why a pattern is unusable whatever the client, or null when it is fine. */
export function patternProblem(pattern: string): string | null {
  const { unknown } = patternVariables(pattern);
  if (unknown.length > 0) return `unknown variable \${${unknown[0]}}`;
  // A variable must fill a whole level: `devices/x${clientId}` would let a value with a
  // prefix collide with another device's level; keep patterns simple and auditable.
  for (const level of pattern.split('/')) {
    if (level.includes('${') && !/^\$\{[^}]*\}$/.test(level)) return `a variable must be a whole topic level (${level})`;
  }
  const probe = pattern.replace(VARIABLE, 'x');
  if (!isValidTopicFilter(probe)) return 'not a valid MQTT topic filter';
  return null;
}

/** An expansion that failed for this client, for the log. */
export interface UnsafeExpansion {
  variable: PatternVariable;
  value: string | null;
}

/**
 * The concrete filters `pattern` means for `client` (several when a multi-valued variable
 * such as `${cert.ou}` has several values). SECURITY: when any variable is missing or
 * unsafe for this client, the result is no filter at all (the rule does not match) and
 * `unsafe` says why.
 */
export function expandPattern(pattern: string, client: AuthorizedClient): { filters: string[]; unsafe: UnsafeExpansion | null } {
  if (patternProblem(pattern) !== null) return { filters: [], unsafe: null };
  const levels = pattern.split('/');
  let results: string[][] = [[]];
  for (const level of levels) {
    const m = /^\$\{([^}]*)\}$/.exec(level);
    if (m === null) {
      for (const r of results) r.push(level);
      continue;
    }
    const variable = m[1] as PatternVariable;
    const values = variableValues(client, variable);
    if (values.length === 0) return { filters: [], unsafe: { variable, value: null } };
    for (const v of values) if (!isSafeSubstitution(v)) return { filters: [], unsafe: { variable, value: v } };
    // Bounded: a certificate with many SANs must not blow up the rule set.
    const next: string[][] = [];
    for (const r of results) for (const v of values.slice(0, 16)) next.push([...r, v]);
    results = next.slice(0, 64);
  }
  return { filters: results.map((r) => r.join('/')).filter(isValidTopicFilter), unsafe: null };
}

/** `allow publish devices/${cert.cn}/# maxQos=1 retain=false`: how CLI output shows a rule. */
export function ruleText(rule: AclRule): string {
  let text = `${rule.effect} ${rule.action} ${rule.topic}`;
  if (rule.maxQos !== undefined) text += ` maxQos=${rule.maxQos}`;
  if (rule.retain !== undefined) text += ` retain=${rule.retain}`;
  return text;
}
