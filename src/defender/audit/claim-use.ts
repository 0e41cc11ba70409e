/**
 * The audit check "claim credentials used outside provisioning": a client holding a claim
 * certificate was refused on a topic outside `$bastion/provision/`. Owns: the counts'
 * shape and the finding. Must not: watch the broker (server/claim-use-watch.ts counts the
 * refusals from the security events) or decide what a claim may do (the provisioning
 * guard does, and refuses it: this check reports that someone tried).
 *
 * SECURITY: a claim certificate is shared by a whole batch and only buys a device its own
 * certificate. One that publishes or subscribes like a device means the claim is being
 * used as a device identity, or has leaked to someone probing what it can reach.
 */
import type { Finding } from './finding.js';

/** What one claim certificate tried outside provisioning since the last audit. */
export interface ClaimUse {
  /** The claim certificate's serial (upper-case hex): its record in provisioning.db. */
  readonly serialNumber: string;
  readonly commonName: string;
  /** Refusals counted. */
  readonly count: number;
  /** A few of the topics or filters refused (bounded, cut to a readable length). */
  readonly topics: readonly string[];
  /** The last client id and address that used it. */
  readonly clientId: string;
  readonly remoteAddress: string;
  readonly firstAt: Date;
  readonly lastAt: Date;
}

export interface ClaimUseCounts {
  readonly claims: readonly ClaimUse[];
  /** Refusals of claims not counted because the table was full (0 normally). */
  readonly untracked: number;
}

export function claimUseFindings(uses: ClaimUseCounts): Finding[] {
  const out: Finding[] = uses.claims.map((u) => ({
    check: 'claim-used-outside-provisioning',
    severity: 'high',
    subject: u.serialNumber,
    message:
      `claim certificate ${u.serialNumber} (${u.commonName}) was refused ${u.count} time(s) outside the provisioning topics ` +
      `between ${u.firstAt.toISOString()} and ${u.lastAt.toISOString()}, last as client ${u.clientId} from ${u.remoteAddress}; topics: ${u.topics.join(', ')}`,
    fix:
      `a claim only provisions: find the device using it as its identity (or the party that has it), revoke the claim ` +
      `(\`bastion provision claim revoke ${u.serialNumber}\`) and give the rest of the batch a new one; devices must connect with the certificate they registered`,
  }));
  if (uses.untracked > 0) {
    out.push({
      check: 'claim-used-outside-provisioning',
      severity: 'high',
      subject: '*',
      message: `${uses.untracked} more refusal(s) of claim certificates outside the provisioning topics were not attributed: too many claims at once to track each`,
      fix: 'look for authz.denied records of claim clients in the audit log (`bastion audit query --type authz.denied`) and revoke the claims involved',
    });
  }
  return out;
}
