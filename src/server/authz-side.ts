/**
 * Authorization for a running server: the rule engine the broker asks, the SQLite rule
 * store in the data dir, and the PolicyService facade over both (for the admin API).
 * Owns: building them from the config and watching the store. Must not: evaluate rules.
 *
 * SECURITY: a config without an `authz` section gets the default device policy, with a
 * loud warning; allow-all happens only when the config says `policy: allow-all-INSECURE`.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { AclPolicy } from '../core/authz-config.js';
import type { BastionConfig } from '../core/config.js';
import type { Logger } from '../core/logger.js';
import { PolicyEngine } from '../security/authz/engine.js';
import { policyFromConfig } from '../security/authz/default-policy.js';
import { merge, PolicyService } from '../security/authz/policy-service.js';
import { ACL_STORE_FILE, SqliteAclStore } from '../store/sqlite/acl-store.js';

export interface AuthzSide {
  engine: PolicyEngine;
  service: PolicyService;
  /** Logs which policy is in force (called once the listeners are up). */
  announce(): void;
  close(): void;
}

/** `<dataDir>/authz.db`: where `bastion acl` and the broker keep run-time rules. */
export function aclStorePath(dataDir: string): string {
  return join(dataDir, ACL_STORE_FILE);
}

/**
 * `base` (the config's rule set or the default policy) merged with the rule store in
 * `dataDir`: the rules a broker started now would use. Reading never creates a store where
 * there is none. For `bastion acl` and the security audit.
 */
export function storedPolicy(base: AclPolicy, dataDir: string): AclPolicy {
  const path = aclStorePath(dataDir);
  if (!existsSync(path)) return base;
  const store = SqliteAclStore.open(path);
  try {
    return merge(base, store.listRoles(), store.listBindings());
  } finally {
    store.close();
  }
}

export function startAuthz(config: BastionConfig, dataDir: string, logger: Logger): AuthzSide {
  const authz = config.authz;
  const base = policyFromConfig(authz);
  const engine = new PolicyEngine(base, logger);
  const store = SqliteAclStore.open(aclStorePath(dataDir));
  const service = new PolicyService({ base, store, engine, logger });
  service.startWatching(authz?.storePollMs ?? 500);
  return {
    engine,
    service,
    announce() {
      if (authz === undefined) {
        logger.warn(
          { policy: 'default-device' },
          'no authz section in the config: applying the default device policy (devices/${cert.cn}/# and read broadcast/#; operators read devices/+/# and $SYS/#); everything else is denied',
        );
      } else if (authz.policy === 'allow-all-INSECURE') {
        logger.warn({ policy: authz.policy }, 'INSECURE: authz policy allow-all-INSECURE lets every client publish and subscribe to every topic');
      }
    },
    close() {
      service.stop();
      store.close();
    },
  };
}
