/**
 * `bastion acl role|rule|bind add|del|list`: the rule store in the data dir (authz.db).
 * A running broker using that data dir picks a change up within its poll interval. Every
 * add and del (and its refusal) is recorded for the broker's audit log (cli-change.ts).
 * Owns: argument parsing and output. Must not: bypass the PolicyService checks (rules
 * are validated, config roles are read-only).
 */
import type { Command } from 'commander';
import { BINDING_ATTRIBUTES, RULE_ACTIONS, RULE_EFFECTS, type AclRule, type BindingAttribute } from '../core/authz-config.js';
import { BastionError } from '../core/errors.js';
import { PolicyEngine } from '../security/authz/engine.js';
import { ruleText } from '../security/authz/pattern.js';
import { checkRule, PolicyService } from '../security/authz/policy-service.js';
import { aclStorePath } from '../server/authz-side.js';
import { SqliteAclStore } from '../store/sqlite/acl-store.js';
import { addPolicySourceOptions, baseOf, type PolicySourceOptions } from './acl-policy-source.js';
import { auditedChange } from './cli-change.js';

function usage(message: string): BastionError {
  return new BastionError('ERR_USAGE', message);
}

/** Runs `fn` with the service over the data dir's store, closing the store after. */
function withService<T>(opts: PolicySourceOptions, fn: (service: PolicyService, store: SqliteAclStore) => T): T {
  const { base, dataDir } = baseOf(opts);
  const store = SqliteAclStore.open(aclStorePath(dataDir));
  try {
    return fn(new PolicyService({ base, store, engine: new PolicyEngine(base) }), store);
  } finally {
    store.close();
  }
}

/** `withService`, recorded as `action` on `target` for the audit log. */
function changeWith<T>(opts: PolicySourceOptions, action: string, target: string, fn: (service: PolicyService, store: SqliteAclStore) => T): Promise<T> {
  return auditedChange(baseOf(opts).dataDir, action, target, () => withService(opts, fn));
}

function out(line: string): void {
  process.stdout.write(`${line}\n`);
}

function oneOf<T extends string>(what: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) throw usage(`invalid ${what} "${value}" (${allowed.join(', ')})`);
  return value as T;
}

export function registerAclStoreCommands(acl: Command): void {
  const role = acl.command('role').description('roles in the rule store');
  addPolicySourceOptions(role.command('add <name>').description('create an empty role')).action(async (name: string, opts: PolicySourceOptions) => {
    await changeWith(opts, 'role.add', name, (service) => {
      if (service.listRoles().some((r) => r.name === name)) throw new BastionError('ERR_AUTHZ_EXISTS', `role "${name}" exists`);
      service.putRole(name, []);
      out(`role ${name} added`);
    });
  });
  addPolicySourceOptions(role.command('del <name>').description('delete a role, its rules and its bindings')).action(async (name: string, opts: PolicySourceOptions) => {
    await changeWith(opts, 'role.del', name, (service) => {
      if (!service.deleteRole(name)) throw new BastionError('ERR_AUTHZ_UNKNOWN', `no role "${name}" in the rule store`);
      out(`role ${name} deleted`);
    });
  });
  addPolicySourceOptions(role.command('list').description('roles with their rules (config and store)').option('--json', 'print JSON')).action((opts: PolicySourceOptions & { json?: boolean }) => {
    withService(opts, (service) => {
      const roles = service.listRoles();
      if (opts.json === true) return out(JSON.stringify({ roles }));
      for (const r of roles) {
        out(`${r.name} (${r.source})`);
        r.rules.forEach((rule, i) => out(`  #${i} ${ruleText(rule)}`));
      }
    });
  });

  const rule = acl.command('rule').description('rules of a role in the rule store');
  addPolicySourceOptions(
    rule
      .command('add <role> <effect> <action> <topic>')
      .description('append a rule: allow|deny publish|subscribe|all TOPIC (${clientId}, ${cert.cn}, ... substitute)')
      .option('--max-qos <n>', 'highest QoS allowed (a subscription is granted at most this)')
      .option('--no-retain', 'refuse retained publishes'),
  ).action(async (roleName: string, effect: string, action: string, topic: string, opts: PolicySourceOptions & { maxQos?: string; retain: boolean }) => {
    if (opts.maxQos !== undefined && !/^[012]$/.test(opts.maxQos)) throw usage(`invalid --max-qos ${opts.maxQos} (0, 1 or 2)`);
    const candidate: AclRule = {
      effect: oneOf('effect', effect, RULE_EFFECTS),
      action: oneOf('action', action, RULE_ACTIONS),
      topic,
      ...(opts.maxQos !== undefined ? { maxQos: Number(opts.maxQos) as 0 | 1 | 2 } : {}),
      ...(opts.retain === false ? { retain: false } : {}),
    };
    await changeWith(opts, 'rule.add', `${roleName}: ${effect} ${action} ${topic}`, (service, store) => {
      const checked = checkRule(candidate);
      if (!service.listRoles().some((r) => r.name === roleName)) throw new BastionError('ERR_AUTHZ_UNKNOWN', `no role "${roleName}": add it with bastion acl role add ${roleName}`);
      service.assertStoreRole(roleName);
      const index = store.addRule(roleName, checked);
      out(`rule #${index} added to ${roleName}: ${ruleText(checked)}`);
    });
  });
  addPolicySourceOptions(rule.command('del <role> <index>').description('delete the rule at INDEX (as rule list shows it)')).action(async (roleName: string, index: string, opts: PolicySourceOptions) => {
    if (!/^\d+$/.test(index)) throw usage(`invalid rule index ${index}`);
    await changeWith(opts, 'rule.del', `${roleName} #${index}`, (service, store) => {
      service.assertStoreRole(roleName);
      if (!store.deleteRule(roleName, Number(index))) throw new BastionError('ERR_AUTHZ_UNKNOWN', `role "${roleName}" has no rule #${index} in the rule store`);
      out(`rule #${index} deleted from ${roleName}`);
    });
  });
  addPolicySourceOptions(rule.command('list [role]').description('rules, by role').option('--json', 'print JSON')).action((roleName: string | undefined, opts: PolicySourceOptions & { json?: boolean }) => {
    withService(opts, (service) => {
      const roles = service.listRoles().filter((r) => roleName === undefined || r.name === roleName);
      if (roleName !== undefined && roles.length === 0) throw new BastionError('ERR_AUTHZ_UNKNOWN', `no role "${roleName}"`);
      if (opts.json === true) return out(JSON.stringify({ roles }));
      for (const r of roles) r.rules.forEach((x, i) => out(`${r.name} #${i} ${ruleText(x)}`));
    });
  });

  const bind = acl.command('bind').description('bindings of identities to roles in the rule store');
  const attrs = BINDING_ATTRIBUTES.join('|');
  addPolicySourceOptions(bind.command('add <role> <attribute> <value>').description(`bind identities to a role: ATTRIBUTE is ${attrs}; VALUE exact or a *-glob`)).action(
    async (roleName: string, attribute: string, value: string, opts: PolicySourceOptions) => {
      await changeWith(opts, 'binding.put', `${attribute}=${value} → ${roleName}`, (service) => {
        service.putBinding({ role: roleName, attribute: oneOf<BindingAttribute>('attribute', attribute, BINDING_ATTRIBUTES), value });
        out(`bound ${attribute}=${value} to ${roleName}`);
      });
    },
  );
  addPolicySourceOptions(bind.command('del <role> <attribute> <value>').description('remove a binding')).action(async (roleName: string, attribute: string, value: string, opts: PolicySourceOptions) => {
    await changeWith(opts, 'binding.del', `${attribute}=${value} → ${roleName}`, (service) => {
      if (!service.deleteBinding({ role: roleName, attribute: oneOf<BindingAttribute>('attribute', attribute, BINDING_ATTRIBUTES), value })) {
        throw new BastionError('ERR_AUTHZ_UNKNOWN', `no binding ${attribute}=${value} for ${roleName} in the rule store`);
      }
      out(`unbound ${attribute}=${value} from ${roleName}`);
    });
  });
  addPolicySourceOptions(bind.command('list').description('bindings (config and store)').option('--json', 'print JSON')).action((opts: PolicySourceOptions & { json?: boolean }) => {
    withService(opts, (service) => {
      const bindings = service.listBindings();
      if (opts.json === true) return out(JSON.stringify({ bindings }));
      for (const b of bindings) out(`${b.role} ${b.attribute}=${b.value} (${b.source})`);
    });
  });
}
