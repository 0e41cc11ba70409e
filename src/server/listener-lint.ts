/**
 * `acl lint` findings about the listeners rather than the rules: a listener that accepts
 * client certificates while nothing can revoke them. Owns: that check and its wording, for
 * the CLI (from a config file) and the admin API (from the running listeners). Must not:
 * decide the revocation source (transport/tls-revocation.ts does, for both).
 */
import { resolve } from 'node:path';
import type { BastionConfig } from '../core/config.js';
import type { LintFinding } from '../security/authz/lint.js';
import { revocationSourceOf, type RevocationSource } from '../transport/tls-revocation.js';
import { configuredPkiDir } from './pki-layout.js';

/** The finding for one endpoint's revocation source, or null when it has one (or opted out in writing). */
export function revocationFinding(listener: string, source: RevocationSource): LintFinding | null {
  if (source.kind !== 'none' || source.why !== 'no-source') return null;
  return {
    severity: 'warning',
    role: null,
    index: null,
    rule: null,
    message: `listener ${listener} accepts client certificates but nothing can revoke them: set tls.crl (or trust the built-in PKI), or write tls.revocation: none`,
  };
}

/** The listener findings of a config file (paths relative to `baseDir`, as `bastion serve -c` reads them). */
export async function listenerFindings(config: BastionConfig, baseDir: string): Promise<LintFinding[]> {
  const dataDir = resolve(baseDir, config.dataDir);
  const pkiDir = configuredPkiDir(config.pki.dir, baseDir, dataDir);
  const findings: LintFinding[] = [];
  for (const l of config.listeners) {
    if (l.tls === undefined) continue;
    const at = (p: string | undefined): string | undefined => (p !== undefined ? resolve(baseDir, p) : undefined);
    const finding = revocationFinding(l.name, await revocationSourceOf(l.tls, at(l.tls.ca), at(l.tls.crl), pkiDir));
    if (finding !== null) findings.push(finding);
  }
  return findings;
}
