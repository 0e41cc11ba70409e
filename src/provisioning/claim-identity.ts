/**
 * How a provisioning-only certificate is recognised: a claim certificate (`bastion cert
 * issue --profile claim`) carries the OU `bastion-claim`; a step-1 certificate (issued
 * from a CSR before registration) carries `bastion-pending`. Owns: those names and the
 * claim certificate's common name. Must not: decide what such a client may do (the
 * provisioning guard does).
 *
 * SECURITY: the CA is the only issuer of these OUs, and a CSR's subject is ignored, so a
 * device cannot ask for one; a client holding one is confined to the provisioning topics.
 */
import { randomBytes } from 'node:crypto';

/** The OU of a claim certificate. */
export const CLAIM_OU = 'bastion-claim';
/** The OU of a step-1 certificate, not yet registered against a template. */
export const PENDING_OU = 'bastion-pending';

/** True when the certificate's OUs make it a provisioning-only credential. */
export function isProvisioningOnlyCertificate(ous: readonly string[]): boolean {
  return ous.includes(CLAIM_OU) || ous.includes(PENDING_OU);
}

/**
 * `claim-<template>-<8 random hex>`: one common name per claim certificate. A template name
 * longer than 49 characters is cut so the name stays within X.509's 64 (the claim's
 * template is its record in provisioning.db, not this name).
 */
export function claimCommonName(template: string): string {
  return `claim-${template.slice(0, 64 - 'claim-'.length - 9)}-${randomBytes(4).toString('hex')}`;
}

/** The same test on a subject in `CN=a, OU=b` form (as security events carry it). */
export function subjectIsProvisioningOnly(subject: string): boolean {
  return new RegExp(`(?:^|,\\s*)OU=(?:${CLAIM_OU}|${PENDING_OU})(?=,|$)`).test(subject);
}
