/**
 * The ACL rule store: roles, their rules and identity bindings kept in SQLite
 * (`<dataDir>/authz.db`, WAL), shared by the running broker, `bastion acl ...` and the
 * admin API across processes. Owns: the rows and the change counter. Must not: validate
 * or evaluate rules (security/authz/policy-service does; this adapter implements its
 * PolicyStore port).
 */
import type Database from 'better-sqlite3';
import type { AclBinding, AclRule, BindingAttribute } from '../../core/authz-config.js';
import { BastionError } from '../../core/errors.js';
import { ACL_MIGRATIONS } from './acl-migrations.js';
import { openSharedDatabase } from './schema-migrations.js';

/** The file name inside the data directory. */
export const ACL_STORE_FILE = 'authz.db';

interface RuleRow {
  role: string;
  position: number;
  effect: AclRule['effect'];
  action: AclRule['action'];
  topic: string;
  max_qos: number | null;
  retain: number | null;
}

function toRule(r: RuleRow): AclRule {
  return {
    effect: r.effect,
    action: r.action,
    topic: r.topic,
    ...(r.max_qos !== null ? { maxQos: r.max_qos as 0 | 1 | 2 } : {}),
    ...(r.retain !== null ? { retain: r.retain === 1 } : {}),
  };
}

export class SqliteAclStore {
  /** Polled by every running broker (PolicyService.startWatching): compiled once. */
  private readonly counterStmt: Database.Statement<[], { change_counter: number }>;

  private constructor(private readonly db: Database.Database) {
    this.counterStmt = db.prepare<[], { change_counter: number }>('SELECT change_counter FROM acl_meta WHERE id = 1');
  }

  static open(path: string): SqliteAclStore {
    return new SqliteAclStore(openSharedDatabase(path, { migrations: ACL_MIGRATIONS, code: 'ERR_STORE_OPEN', versionCode: 'ERR_STORE_VERSION', what: 'the ACL store', pragmas: ['foreign_keys = ON'] }));
  }

  listRoles(): Array<{ name: string; rules: AclRule[] }> {
    const names = this.db.prepare<[], { name: string }>('SELECT name FROM acl_roles ORDER BY name').all();
    const rules = this.db.prepare<[], RuleRow>('SELECT * FROM acl_rules ORDER BY role, position').all();
    const byRole = new Map<string, AclRule[]>(names.map(({ name }) => [name, []]));
    for (const r of rules) byRole.get(r.role)?.push(toRule(r));
    return [...byRole].map(([name, roleRules]) => ({ name, rules: roleRules }));
  }

  putRole(name: string, rules: AclRule[]): void {
    this.write(() => {
      this.db.prepare('INSERT INTO acl_roles (name) VALUES (?) ON CONFLICT (name) DO NOTHING').run(name);
      this.db.prepare('DELETE FROM acl_rules WHERE role = ?').run(name);
      rules.forEach((rule, i) => this.insertRule(name, i, rule));
    });
  }

  deleteRole(name: string): boolean {
    return this.write(() => {
      this.db.prepare('DELETE FROM acl_bindings WHERE role = ?').run(name);
      return this.db.prepare('DELETE FROM acl_roles WHERE name = ?').run(name).changes > 0;
    });
  }

  /** Appends a rule to a role (created when missing); returns its index. */
  addRule(role: string, rule: AclRule): number {
    return this.write(() => {
      this.db.prepare('INSERT INTO acl_roles (name) VALUES (?) ON CONFLICT (name) DO NOTHING').run(role);
      const row = this.db.prepare<[string], { n: number | null }>('SELECT MAX(position) AS n FROM acl_rules WHERE role = ?').get(role);
      const position = (row?.n ?? -1) + 1;
      this.insertRule(role, position, rule);
      return position;
    });
  }

  /** Deletes the rule at `index` (as listed) and renumbers the rest; false when absent. */
  deleteRule(role: string, index: number): boolean {
    return this.write(() => {
      const rules = this.db.prepare<[string], RuleRow>('SELECT * FROM acl_rules WHERE role = ? ORDER BY position').all(role);
      if (index < 0 || index >= rules.length) return false;
      this.db.prepare('DELETE FROM acl_rules WHERE role = ?').run(role);
      rules.filter((_, i) => i !== index).forEach((r, i) => this.insertRule(role, i, toRule(r)));
      return true;
    });
  }

  listBindings(): AclBinding[] {
    return this.db
      .prepare<[], { role: string; attribute: string; value: string }>('SELECT role, attribute, value FROM acl_bindings ORDER BY role, attribute, value')
      .all()
      .map((r) => ({ role: r.role, attribute: r.attribute as BindingAttribute, value: r.value }));
  }

  putBinding(b: AclBinding): void {
    this.write(() => {
      this.db.prepare('INSERT INTO acl_bindings (role, attribute, value) VALUES (?, ?, ?) ON CONFLICT DO NOTHING').run(b.role, b.attribute, b.value);
    });
  }

  deleteBinding(b: AclBinding): boolean {
    return this.write(() => this.db.prepare('DELETE FROM acl_bindings WHERE role = ? AND attribute = ? AND value = ?').run(b.role, b.attribute, b.value).changes > 0);
  }

  /** Goes up with every committed change, from any process. */
  changeCounter(): number {
    return this.counterStmt.get()?.change_counter ?? 0;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  private insertRule(role: string, position: number, rule: AclRule): void {
    this.db
      .prepare('INSERT INTO acl_rules (role, position, effect, action, topic, max_qos, retain) VALUES (?, ?, ?, ?, ?, ?, ?)')
      .run(role, position, rule.effect, rule.action, rule.topic, rule.maxQos ?? null, rule.retain === undefined ? null : rule.retain ? 1 : 0);
  }

  /** One transaction per change, with the counter bump in it. */
  private write<T>(fn: () => T): T {
    try {
      return this.db
        .transaction(() => {
          const result = fn();
          this.db.prepare('UPDATE acl_meta SET change_counter = change_counter + 1 WHERE id = 1').run();
          return result;
        })
        .immediate();
    } catch (err) {
      if (err instanceof BastionError) throw err;
      throw new BastionError('ERR_STORE_WRITE', `ACL store write failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
}
