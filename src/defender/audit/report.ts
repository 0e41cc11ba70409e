/**
 * The audit report: text (one line per finding, then its fix) and JSON ({findings, counts,
 * checkedAt}). Owns: both formats. Must not: decide findings or exit codes.
 */
import { SEVERITIES, sortFindings, type Finding, type Severity } from './finding.js';

export interface AuditReport {
  readonly findings: Finding[];
  readonly counts: Record<Severity, number>;
  readonly checkedAt: string;
}

export function buildReport(findings: readonly Finding[], checkedAt: Date): AuditReport {
  const counts = Object.fromEntries(SEVERITIES.map((s) => [s, 0])) as Record<Severity, number>;
  for (const f of findings) counts[f.severity] += 1;
  return { findings: sortFindings(findings), counts, checkedAt: checkedAt.toISOString() };
}

/** Control characters in a subject or message (a client id, a file name) must not forge lines. */
const clean = (s: string): string => s.replace(/[\u0000-\u001f\u007f]/g, '?');

export function formatReport(report: AuditReport): string {
  const lines: string[] = [];
  for (const f of report.findings) {
    lines.push(`${f.severity.toUpperCase().padEnd(8)} ${f.check}  ${clean(f.subject)}: ${clean(f.message)}`);
    lines.push(`         fix: ${clean(f.fix)}`);
  }
  const c = report.counts;
  lines.push(report.findings.length === 0 ? `no findings (checked at ${report.checkedAt})` : `${report.findings.length} finding(s): ${c.critical} critical, ${c.high} high, ${c.medium} medium, ${c.low} low (checked at ${report.checkedAt})`);
  return `${lines.join('\n')}\n`;
}
