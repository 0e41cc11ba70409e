/**
 * Reading a provisioning or renewal topic back into what it asks (the names are in
 * core/provisioning-topics.ts). Must not: authorize or answer.
 */
import { TEMPLATE_NAME_RE } from '../core/provisioning-config.js';
import { CERTS_PREFIX, CREATE_FROM_CSR_TOPIC, PROVISION_PREFIX } from '../core/provisioning-topics.js';

export { CERTS_PREFIX, PROVISION_PREFIX, renewalDueTopic } from '../core/provisioning-topics.js';
/** What a request topic asks for, or null when it is not a request topic. */
export type ProvisioningRequest = { kind: 'create-from-csr' } | { kind: 'register'; template: string } | { kind: 'renew'; identity: string };

export function requestOf(topic: string): ProvisioningRequest | null {
  if (topic === CREATE_FROM_CSR_TOPIC) return { kind: 'create-from-csr' };
  if (topic.startsWith(`${PROVISION_PREFIX}templates/`)) {
    const parts = topic.slice(PROVISION_PREFIX.length).split('/');
    // templates/<name>/provision/json
    if (parts.length === 4 && parts[2] === 'provision' && parts[3] === 'json' && TEMPLATE_NAME_RE.test(parts[1]!)) return { kind: 'register', template: parts[1]! };
    return null;
  }
  if (topic.startsWith(CERTS_PREFIX)) {
    const parts = topic.slice(CERTS_PREFIX.length).split('/');
    if (parts.length === 3 && parts[0] !== '' && parts[1] === 'renew' && parts[2] === 'json') return { kind: 'renew', identity: parts[0]! };
  }
  return null;
}

/** The identity a `$bastion/certs/<identity>/…` topic or filter is about, or null. */
export function certsIdentityOf(topicOrFilter: string): string | null {
  if (!topicOrFilter.startsWith(CERTS_PREFIX)) return null;
  const rest = topicOrFilter.slice(CERTS_PREFIX.length);
  const slash = rest.indexOf('/');
  const identity = slash < 0 ? rest : rest.slice(0, slash);
  return identity === '' ? null : identity;
}

