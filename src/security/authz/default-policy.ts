/**
 * The rule sets the broker ships: the default device policy (zero-config, and any config
 * without an `authz` section) and the explicit allow-all for development. Owns: their
 * content. Must not: decide when they apply (the composition root does).
 */
import type { AclPolicy, AuthzConfig } from '../../core/authz-config.js';

/**
 * Devices (any client with a certificate CN) publish and subscribe only under their own
 * `devices/${cert.cn}/#` and read `broadcast/#`; certificates with OU `operators` read
 * every device's topics and `$SYS/#` (read-only). Everything else is denied.
 */
export function defaultDevicePolicy(): AclPolicy {
  return {
    roles: [
      {
        name: 'device',
        source: 'default',
        rules: [
          { effect: 'allow', action: 'all', topic: 'devices/${cert.cn}/#' },
          { effect: 'allow', action: 'subscribe', topic: 'broadcast/#' },
        ],
      },
      {
        name: 'operator',
        source: 'default',
        rules: [
          { effect: 'allow', action: 'subscribe', topic: 'devices/+/#' },
          { effect: 'allow', action: 'subscribe', topic: '$SYS/#' },
        ],
      },
    ],
    bindings: [
      { role: 'device', attribute: 'cert.cn', value: '*' },
      { role: 'operator', attribute: 'cert.ou', value: 'operators' },
    ],
  };
}

/**
 * `policy: allow-all-INSECURE`: every client may publish and subscribe to every topic
 * except `$` topics (a `#` rule never matches them). For development and tests only.
 */
export function allowAllPolicy(): AclPolicy {
  return {
    roles: [{ name: 'allow-all-INSECURE', source: 'config', rules: [{ effect: 'allow', action: 'all', topic: '#' }] }],
    bindings: [{ role: 'allow-all-INSECURE', attribute: 'clientId', value: '*' }],
  };
}

/** The rule set a config section means (absent: the default device policy). */
export function policyFromConfig(authz: AuthzConfig | undefined): AclPolicy {
  if (authz === undefined) return defaultDevicePolicy();
  if (authz.policy === 'allow-all-INSECURE') return allowAllPolicy();
  return {
    roles: Object.entries(authz.roles).map(([name, role]) => ({ name, source: 'config' as const, rules: role.rules, ...(role.quota !== undefined ? { quota: role.quota } : {}) })),
    bindings: authz.bindings,
  };
}
