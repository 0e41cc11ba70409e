/**
 * What a client's identity contributes to rules: the values of the pattern variables
 * (`${clientId}`, `${cert.cn}`, ...) and of the binding attributes. Owns: reading them
 * from an AuthorizedClient and deciding which are safe to substitute. Must not: match
 * topics.
 */
import type { AuthorizedClient } from '../../broker/ports.js';
import type { BindingAttribute } from '../../core/authz-config.js';

/** Variables a topic pattern may use. */
export const PATTERN_VARIABLES = ['clientId', 'username', 'cert.cn', 'cert.ou', 'cert.san.uri', 'cert.san.dns', 'cert.serial'] as const;
export type PatternVariable = (typeof PATTERN_VARIABLES)[number];

export function isPatternVariable(name: string): name is PatternVariable {
  return (PATTERN_VARIABLES as readonly string[]).includes(name);
}

/** Every value `client` has for a pattern variable (several for OUs and SANs). */
export function variableValues(client: AuthorizedClient, name: PatternVariable): string[] {
  const cert = client.identity.certificate;
  switch (name) {
    case 'clientId':
      return [client.clientId];
    case 'username':
      // Set by the providers that know one (password, JWT, SCRAM); older identities have none.
      return client.identity.username !== undefined ? [client.identity.username] : [];
    case 'cert.cn':
      return cert !== undefined && cert.commonName !== '' ? [cert.commonName] : [];
    case 'cert.ou':
      return cert?.organizationalUnits ?? [];
    case 'cert.san.uri':
      return cert?.sans.uri ?? [];
    case 'cert.san.dns':
      return cert?.sans.dns ?? [];
    case 'cert.serial':
      return cert !== undefined ? [cert.serialNumber] : [];
  }
}

/** Every value `client` has for a binding attribute. */
export function attributeValues(client: AuthorizedClient, attribute: BindingAttribute): string[] {
  if (attribute === 'psk') return client.identity.pskIdentity !== undefined ? [client.identity.pskIdentity] : [];
  return variableValues(client, attribute);
}

/**
 * SECURITY: a value substituted into a topic pattern must stay inside one topic level and
 * mean only itself. Empty, `+`, `#`, `/`, NUL and control characters (C0, DEL, C1) would
 * widen the pattern (a CN of `+` reading every device) or split it; such a value never
 * expands, and the rule does not match for that client.
 */
export function isSafeSubstitution(value: string): boolean {
  if (value.length === 0) return false;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 0x2b || c === 0x23 || c === 0x2f || c < 0x20 || (c >= 0x7f && c <= 0x9f)) return false;
  }
  return true;
}

/** `*` stands for any run of characters; everything else is literal. */
export function globMatches(glob: string, value: string): boolean {
  if (!glob.includes('*')) return glob === value;
  const parts = glob.split('*');
  const first = parts[0]!;
  const last = parts[parts.length - 1]!;
  if (!value.startsWith(first) || value.length < first.length + last.length || !value.endsWith(last)) return false;
  let at = first.length;
  const end = value.length - last.length;
  for (let k = 1; k < parts.length - 1; k++) {
    const part = parts[k]!;
    const found = value.indexOf(part, at);
    if (found < 0 || found + part.length > end) return false;
    at = found + part.length;
  }
  return true;
}
