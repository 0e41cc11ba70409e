/**
 * One security audit finding and the severity scale. Owns: the finding's shape, the
 * severity order and the exit-code comparison. Must not: decide what is a finding (the
 * check modules do) or print (report.ts does).
 */

export type Severity = 'low' | 'medium' | 'high' | 'critical';

export const SEVERITIES: readonly Severity[] = ['low', 'medium', 'high', 'critical'];

export interface Finding {
  /** Stable check name, e.g. `device-certificate-expiring`. */
  readonly check: string;
  readonly severity: Severity;
  /** What the finding is about: a serial, a listener name, a rule, a client id. */
  readonly subject: string;
  /** One readable line. */
  readonly message: string;
  /** The suggested fix: a concrete command or config change. */
  readonly fix: string;
}

export function severityRank(s: Severity): number {
  return SEVERITIES.indexOf(s);
}

export function isSeverity(s: string): s is Severity {
  return (SEVERITIES as readonly string[]).includes(s);
}

/** True when any finding is at or above `threshold` (what `--fail-on` decides). */
export function anyAtOrAbove(findings: readonly Finding[], threshold: Severity): boolean {
  return findings.some((f) => severityRank(f.severity) >= severityRank(threshold));
}

/** Most severe first, then by check and subject, so reports are stable. */
export function sortFindings(findings: readonly Finding[]): Finding[] {
  // Code-unit order, not localeCompare: the first localeCompare in a process loads ICU's
  // collation data (10–40 ms measured), a stall of message delivery on the broker's thread
  // when the first audit runs a few seconds after start.
  return [...findings].sort((a, b) => severityRank(b.severity) - severityRank(a.severity) || byCodeUnits(a.check, b.check) || byCodeUnits(a.subject, b.subject));
}

function byCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
