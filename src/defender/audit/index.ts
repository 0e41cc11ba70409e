/**
 * The offline security audit: every check over one AuditInput. Owns: which checks run.
 * Must not: read files (src/server/defender-audit-input.ts builds the input) or print.
 */
import type { AuditInput } from './audit-input.js';
import { authorizationFindings } from './authorization.js';
import { certificateFindings } from './certificates.js';
import { claimFindings } from './claims.js';
import { configurationFindings } from './configuration.js';
import { sortFindings, type Finding } from './finding.js';

export function runAudit(input: AuditInput): Finding[] {
  return sortFindings([...certificateFindings(input), ...configurationFindings(input), ...authorizationFindings(input), ...claimFindings(input)]);
}

export { DEFAULT_THRESHOLDS, type AuditClaim, type AuditCrlFile, type AuditInput, type AuditPki, type AuditThresholds } from './audit-input.js';
export { anyAtOrAbove, isSeverity, SEVERITIES, type Finding, type Severity } from './finding.js';
export { liveChecks, DEFAULT_LIVE_THRESHOLDS, type LiveClient, type LiveSnapshot, type LiveTakeover, type LiveThresholds } from './live.js';
export { buildReport, formatReport, type AuditReport } from './report.js';
export { claimUseFindings, type ClaimUse, type ClaimUseCounts } from './claim-use.js';
