/**
 * Claim certificates from the command line: `bastion cert issue --profile claim --template
 * T` (a client certificate with the OU bastion-claim, recorded in provisioning.db with its
 * device limit) and `bastion provision claim list|revoke`. Owns: those commands' flow and
 * output. Must not: decide what a claim may do (provisioning/ does, in the broker).
 *
 * SECURITY: a claim certificate is a shared factory credential. It is recorded before its
 * files are handed out (the provisioning store opens first, so a data directory where it
 * cannot be recorded issues nothing), and revoking it marks it in provisioning.db (no more
 * devices at once) and revokes it in the PKI (the CRL is re-signed; TLS refuses it).
 */
import type { Command } from 'commander';
import { resolve } from 'node:path';
import { BastionError } from '../core/errors.js';
import type { ClaimRecord } from '../provisioning/ports.js';
import { claimJson, claimStatus } from '../provisioning/provisioning-views.js';
import type { RevokeResult } from '../server/pki-service.js';
import { auditedChange } from './cli-change.js';
import { addRootKeyOptions, parseDays, parseKeyAlgorithm, type RootKeyOptions } from './pki-cli.js';
import {
  addProvisionSourceOptions,
  iso,
  parseMaxDevices,
  printTable,
  provisionSource,
  requireTemplate,
  usage,
  withPkiAt,
  withProvisioningStore,
  type ProvisionSourceOptions,
} from './provision-context.js';

/** A claim certificate lasts a year unless --days says otherwise. */
const CLAIM_DEFAULT_DAYS = 365;

export interface ClaimIssueOptions extends RootKeyOptions, ProvisionSourceOptions {
  template?: string;
  maxDevices?: string;
  days?: string;
  key?: string;
  out?: string;
  ocspUrl?: string;
  cn?: string;
  ou?: string;
  san?: string[];
}

/** `cert issue --profile claim`: issue, record, print. */
export async function issueClaimCertificate(opts: ClaimIssueOptions): Promise<void> {
  if (opts.cn !== undefined || opts.ou !== undefined || opts.san !== undefined) throw usage('a claim certificate gets its name from Bastion (claim-<template>-<random>, OU bastion-claim): drop --cn, --ou and --san');
  const source = await provisionSource(opts);
  const template = requireTemplate(source, opts.template);
  const maxDevices = parseMaxDevices(opts.maxDevices);
  const days = parseDays(opts.days) ?? CLAIM_DEFAULT_DAYS;
  const keyAlgorithm = parseKeyAlgorithm(opts.key);
  const { CLAIM_OU, claimCommonName } = await import('../provisioning/claim-identity.js');
  const commonName = claimCommonName(template);
  const issued = await auditedChange(
    source.dataDir,
    'provision.claim.issue',
    commonName,
    () =>
      // The PKI, then the store, open before the certificate exists: nothing is issued that cannot be recorded.
      withPkiAt(source.pkiDir, opts, (pki) =>
        withProvisioningStore(source.dataDir, true, async (store) => {
          const files = await pki.issue({
            profile: 'client',
            commonName,
            organizationalUnit: CLAIM_OU,
            days,
            keyAlgorithm,
            outDir: opts.out !== undefined ? resolve(process.cwd(), opts.out) : undefined,
            ocspUrl: opts.ocspUrl,
          });
          store!.addClaim({ serialNumber: files.serialNumber, template, maxDevices, expiresAt: files.notAfter.getTime(), createdAt: Date.now() });
          return files;
        }),
      ),
    (files) => ({ serialNumber: files.serialNumber, template, maxDevices, notAfter: files.notAfter.toISOString() }),
  );
  process.stdout.write(
    `Issued claim certificate ${commonName} for template ${template}\n` +
      `  serial:      ${issued.serialNumber}\n` +
      `  fingerprint: SHA256 ${issued.fingerprint256}\n` +
      `  template:    ${template}\n` +
      `  max devices: ${maxDevices === 0 ? 'unlimited' : maxDevices}\n` +
      `  expires:     ${issued.notAfter.toISOString()}\n` +
      `  certificate: ${issued.certPath}\n` +
      `  key:         ${issued.keyPath}\n`,
  );
}



type ClaimRevokeOutcome = { claim: ClaimRecord; marked: boolean; pki: RevokeResult };

export function registerClaimCommands(provision: Command): void {
  const claim = provision.command('claim').description('claim certificates (issue one with: bastion cert issue --profile claim --template T)');

  addProvisionSourceOptions(claim.command('list').description('list claim certificates: template, devices provisioned, status').option('--json', 'JSON array')).action(
    async (opts: ProvisionSourceOptions & { json?: boolean }) => {
      const source = await provisionSource(opts);
      const claims = await withProvisioningStore(source.dataDir, false, (store) => store?.listClaims() ?? []);
      const now = Date.now();
      if (opts.json === true) {
        process.stdout.write(`${JSON.stringify(claims.map((c) => claimJson(c, now)), null, 2)}\n`);
        return;
      }
      printTable(
        ['SERIAL', 'TEMPLATE', 'DEVICES', 'STATUS', 'EXPIRES'],
        claims.map((c) => [c.serialNumber, c.template, `${c.devices}/${c.maxDevices === 0 ? 'unlimited' : c.maxDevices}`, claimStatus(c, now), iso(c.expiresAt)]),
      );
    },
  );

  addRootKeyOptions(
    addProvisionSourceOptions(
      claim
        .command('revoke')
        .description('revoke a claim certificate: no more devices from it, and the certificate is revoked (cessationOfOperation, CRL re-signed)')
        .argument('<serial>', 'serial number (hex, as `provision claim list` shows it)'),
    ),
    true,
  ).action(async (serial: string, opts: ProvisionSourceOptions & RootKeyOptions) => {
    if (!/^[0-9A-Fa-f:]{1,128}$/.test(serial)) throw usage(`a serial number is hex, got "${serial}"`);
    const source = await provisionSource(opts);
    const out = await auditedChange(
      source.dataDir,
      'provision.claim.revoke',
      serial,
      () =>
        withProvisioningStore(source.dataDir, false, async (store): Promise<ClaimRevokeOutcome> => {
          const record = store?.claim(serial) ?? null;
          if (store === null || record === null) throw new BastionError('ERR_NOT_FOUND', `no claim certificate with serial ${serial} (see \`bastion provision claim list\`)`);
          // Provisioning stops first; then the PKI (a claim marked here but not yet in the CRL
          // provisions nothing, and running the command again finishes the revocation).
          const marked = store.revokeClaim(record.serialNumber, Date.now());
          const pki = await withPkiAt(source.pkiDir, opts, (p) => p.revoke(record.serialNumber, 'cessationOfOperation'));
          return { claim: store.claim(record.serialNumber) ?? record, marked, pki };
        }),
      (o) => ({ template: o.claim.template, devices: o.claim.devices, claim: o.marked ? 'revoked' : 'already-revoked', certificate: o.pki.result }),
    );
    if (!out.marked && out.pki.result === 'already-revoked') {
      process.stdout.write(`Claim ${out.claim.serialNumber} (template ${out.claim.template}) was already revoked at ${iso(out.claim.revokedAt)}; nothing changed\n`);
      return;
    }
    const crl = out.pki.result === 'revoked' ? `certificate revoked (cessationOfOperation), CRL re-signed: ${out.pki.crlPath}` : 'certificate was already revoked';
    process.stdout.write(`Revoked claim ${out.claim.serialNumber} (template ${out.claim.template}, ${out.claim.devices} device(s) provisioned); ${crl}\n`);
  });
}
