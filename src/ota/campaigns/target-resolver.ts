/**
 * Which devices a campaign targets (issue 14), resolved once when it is created:
 * `clients:a,b,c` (the identities listed), `role:NAME` (identities the ACL binds to that
 * role: exact `clientId`/`cert.cn` bindings, which is how provisioning binds a device, and
 * `cert.cn`/`clientId` globs and `cert.ou` bindings matched against the PKI's valid client
 * certificates), `cert.ou:NAME` (the CN of every valid, unrevoked, unexpired client
 * certificate in the PKI inventory whose subject has that OU). Owns: the target syntax
 * and the matching. Must not: open stores (the caller hands in the sources) or order the
 * result for the rollout (plan.ts rolloutOrder).
 *
 * SECURITY: only names that can be a jobs topic identity are kept (no `/`, `+`, `#`), and
 * an empty result is refused rather than creating a campaign that reaches nobody.
 */
import { BastionError } from '../../core/errors.js';
import { isJobIdentity } from '../jobs/topics.js';

export interface TargetBinding {
  role: string;
  attribute: string;
  value: string;
}

export interface TargetCertificate {
  commonName: string;
  organizationalUnits: readonly string[];
  revoked: boolean;
  notAfter: number;
}

/** Where targets come from; each read only when the target needs it. */
export interface TargetSources {
  /** The effective ACL bindings (config file and `<dataDir>/authz.db`). */
  bindings(): readonly TargetBinding[];
  /** The client certificates of the built-in PKI's inventory. */
  clientCertificates(): readonly TargetCertificate[];
}

export interface ResolvedTarget {
  spec: string;
  identities: string[];
  /** What was skipped and why (printed by the CLI, never fatal). */
  notes: string[];
}

const MAX_TARGETS = 100_000;

function usage(message: string): BastionError {
  return new BastionError('ERR_USAGE', message);
}

/** A binding value: exact, or `*` for any run of characters. */
export function globMatches(pattern: string, value: string): boolean {
  if (!pattern.includes('*')) return pattern === value;
  const re = new RegExp(`^${pattern.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`, 's');
  return re.test(value);
}

function usable(certs: readonly TargetCertificate[], now: number): TargetCertificate[] {
  return certs.filter((c) => !c.revoked && c.notAfter > now && c.commonName.length > 0);
}

export function resolveTarget(spec: string, sources: TargetSources, now: number): ResolvedTarget {
  const m = /^(clients|role|cert\.ou):(.+)$/s.exec(spec.trim());
  if (m === null) throw usage(`--target is role:NAME, cert.ou:NAME or clients:id1,id2,…, got "${spec}"`);
  const kind = m[1]!;
  const arg = m[2]!.trim();
  const notes: string[] = [];
  const found = new Set<string>();
  const add = (id: string, from: string): void => {
    if (isJobIdentity(id)) found.add(id);
    else notes.push(`skipped "${id}" (${from}): not a device identity`);
  };
  if (kind === 'clients') {
    for (const id of arg.split(',').map((s) => s.trim()).filter((s) => s.length > 0)) {
      if (!isJobIdentity(id)) throw usage(`--target clients: "${id}" cannot be a device identity (no /, + or #, at most 128 characters)`);
      found.add(id);
    }
  } else if (kind === 'cert.ou') {
    for (const c of usable(sources.clientCertificates(), now)) if (c.organizationalUnits.includes(arg)) add(c.commonName, `certificate OU ${arg}`);
  } else {
    const bindings = sources.bindings().filter((b) => b.role === arg);
    let certs: TargetCertificate[] | null = null;
    const certsNow = (): TargetCertificate[] => (certs ??= usable(sources.clientCertificates(), now));
    for (const b of bindings) {
      const from = `binding ${b.attribute}=${b.value}`;
      if ((b.attribute === 'clientId' || b.attribute === 'cert.cn') && !b.value.includes('*')) add(b.value, from);
      else if (b.attribute === 'clientId' || b.attribute === 'cert.cn') {
        for (const c of certsNow()) if (globMatches(b.value, c.commonName)) add(c.commonName, from);
      } else if (b.attribute === 'cert.ou') {
        for (const c of certsNow()) if (c.organizationalUnits.some((ou) => globMatches(b.value, ou))) add(c.commonName, from);
      } else notes.push(`skipped ${from}: a ${b.attribute} binding does not name a device identity`);
    }
    if (bindings.length === 0) notes.push(`role ${arg} has no bindings`);
  }
  if (found.size === 0) throw usage(`--target ${spec} names no device${notes.length > 0 ? ` (${notes[notes.length - 1]!})` : ''}`);
  if (found.size > MAX_TARGETS) throw usage(`--target ${spec} names ${found.size} devices; a campaign reaches at most ${MAX_TARGETS}`);
  return { spec: `${kind}:${arg}`, identities: [...found].sort(), notes };
}
