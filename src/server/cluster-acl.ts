/**
 * The run-time ACL rules of a cluster (issue 12): the roles and bindings of each node's
 * authz.db kept in step with the `aclrole.<hash>` and `aclbind.<hash>` entries of the shared
 * state bucket (cluster-mirror.ts), so a role or binding changed through any node's admin
 * API or `bastion acl` is in force on every node. Owns: the entries' keys and wire form and
 * their validation on read. Must not: merge with the config's rules or evaluate anything
 * (PolicyService and the engine do), or talk to NATS itself.
 *
 * SECURITY: an entry read from the bucket is checked as the admin API checks a change
 * (role name, every rule through checkRule, the binding schema) and must sit under its own
 * key; one that fails is logged and ignored and never stops the others. Concurrent edits
 * of one role on two nodes: the later write of the role wins (no merge).
 */
import { createHash } from 'node:crypto';
import { bindingSchema, ROLE_NAME, type AclBinding, type AclRule } from '../core/authz-config.js';
import { checkRule } from '../security/authz/policy-service.js';
import type { SqliteAclStore } from '../store/sqlite/acl-store.js';
import type { LocalRows } from './cluster-mirror.js';

export const ROLE_PREFIX = 'aclrole';
export const BINDING_PREFIX = 'aclbind';

function digest(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 40);
}

function bindingId(b: AclBinding): string {
  return `${b.role}\u0000${b.attribute}\u0000${b.value}`;
}

/** Role names may hold characters a bucket key cannot: the key is a hash of the name. */
export function roleKey(name: string): string {
  return `${ROLE_PREFIX}.${digest(name)}`;
}

export function bindingKey(b: AclBinding): string {
  return `${BINDING_PREFIX}.${digest(bindingId(b))}`;
}

function parseJson(bytes: Uint8Array): unknown {
  return JSON.parse(Buffer.from(bytes).toString('utf8')) as unknown;
}

/** The role of an `aclrole.` entry, or why it is refused. */
function decodeRole(key: string, bytes: Uint8Array): { name: string; rules: AclRule[] } | string {
  let raw: unknown;
  try {
    raw = parseJson(bytes);
  } catch {
    return 'not JSON';
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return 'not an object';
  const { name, rules, ...rest } = raw as Record<string, unknown>;
  if (Object.keys(rest).length > 0) return 'unknown fields';
  if (typeof name !== 'string' || !ROLE_NAME.test(name)) return 'invalid role name';
  if (roleKey(name) !== key) return `role ${name} under another role's key`;
  if (!Array.isArray(rules) || rules.length > 10_000) return 'rules is not a list';
  try {
    return { name, rules: rules.map(checkRule) };
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

function decodeBinding(key: string, bytes: Uint8Array): AclBinding | string {
  let raw: unknown;
  try {
    raw = parseJson(bytes);
  } catch {
    return 'not JSON';
  }
  const parsed = bindingSchema.safeParse(raw);
  if (!parsed.success) return parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
  if (bindingKey(parsed.data) !== key) return 'a binding under another binding\'s key';
  return parsed.data;
}

function roleText(name: string, rules: AclRule[]): string {
  return JSON.stringify({ name, rules });
}

function bindingText(b: AclBinding): string {
  return JSON.stringify({ role: b.role, attribute: b.attribute, value: b.value });
}

/** authz.db's roles as `aclrole.` entries (cluster-mirror.ts). */
export function roleRows(store: SqliteAclStore): LocalRows {
  return {
    snapshot: () => new Map(store.listRoles().map((r) => [roleKey(r.name), roleText(r.name, r.rules.map(checkRule))])),
    check: (key, value) => {
      const role = decodeRole(key, value);
      return typeof role === 'string' ? { why: role } : { text: roleText(role.name, role.rules) };
    },
    write: (_key, text) => {
      const role = JSON.parse(text) as { name: string; rules: AclRule[] };
      store.putRole(role.name, role.rules);
    },
    remove: (_key, row) => {
      store.deleteRole((JSON.parse(row) as { name: string }).name);
    },
  };
}

/** authz.db's bindings as `aclbind.` entries. */
export function bindingRows(store: SqliteAclStore): LocalRows {
  return {
    snapshot: () => new Map(store.listBindings().map((b) => [bindingKey(b), bindingText(b)])),
    check: (key, value) => {
      const b = decodeBinding(key, value);
      return typeof b === 'string' ? { why: b } : { text: bindingText(b) };
    },
    write: (_key, text) => store.putBinding(JSON.parse(text) as AclBinding),
    remove: (_key, row) => {
      store.deleteBinding(JSON.parse(row) as AclBinding);
    },
  };
}
