/**
 * The names of the provisioning and renewal topics (docs/PROVISIONING.md), the one place
 * both ends spell them: the broker's service (src/provisioning/) and the device SDK
 * (src/device/). Owns: the strings. Must not: validate names or parse topics (each end
 * does what it needs).
 */

export const PROVISION_PREFIX = '$bastion/provision/';
export const CERTS_PREFIX = '$bastion/certs/';
export const CREATE_FROM_CSR_TOPIC = `${PROVISION_PREFIX}certificates/create-from-csr/json`;

/** `$bastion/provision/templates/<template>/provision/json`. */
export function registerTopic(template: string): string {
  return `${PROVISION_PREFIX}templates/${template}/provision/json`;
}

/** `$bastion/certs/<identity>/`: a device's own topics. */
export function certsTopicPrefix(identity: string): string {
  return `${CERTS_PREFIX}${identity}/`;
}

/** `$bastion/certs/<identity>/renew/json`. */
export function renewTopic(identity: string): string {
  return `${certsTopicPrefix(identity)}renew/json`;
}

/** `$bastion/certs/<identity>/renewal-due`. */
export function renewalDueTopic(identity: string): string {
  return `${certsTopicPrefix(identity)}renewal-due`;
}
