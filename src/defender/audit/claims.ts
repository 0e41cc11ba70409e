/**
 * Provisioning claim audit checks: a claim credential near or at its device limit, and an
 * expired claim never revoked. Owns: those checks. Must not: change the claims.
 */
import type { AuditInput } from './audit-input.js';
import type { Finding } from './finding.js';

export function claimFindings(input: AuditInput): Finding[] {
  const out: Finding[] = [];
  const now = input.now.getTime();
  for (const c of input.claims ?? []) {
    if (c.revokedAt !== null) continue;
    if (c.expiresAt <= now) {
      out.push({
        check: 'claim-expired-unrevoked',
        severity: 'low',
        subject: c.serialNumber,
        message: `claim ${c.serialNumber} (template ${c.template}) expired at ${new Date(c.expiresAt).toISOString()} and was never revoked`,
        fix: `revoke it so its record says it is done: \`bastion provision claim revoke ${c.serialNumber}\``,
      });
      continue;
    }
    // SECURITY: a claim credential is shared by a batch; a count near its limit means it was
    // used more than the batch needed or has leaked.
    if (c.maxDevices > 0 && c.devices >= input.thresholds.claimUseFraction * c.maxDevices) {
      out.push({
        check: 'claim-over-used',
        severity: 'medium',
        subject: c.serialNumber,
        message: `claim ${c.serialNumber} (template ${c.template}) has provisioned ${c.devices} of its ${c.maxDevices} devices`,
        fix: `if the batch is done or the count is unexpected, revoke it: \`bastion provision claim revoke ${c.serialNumber}\``,
      });
    }
  }
  return out;
}
