/**
 * The authorization facade for the composition root, the CLI and the admin API: the rule
 * set from the config merged with the rules in the data store, kept current in the
 * engine. Owns: merging, validating changes, noticing changes other processes made
 * (polling the store's change counter), and telling listeners. Must not: touch SQLite
 * or files itself (the PolicyStore port is implemented in store/).
 */
import { bindingSchema, ROLE_NAME, ruleSchema, type AclBinding, type AclPolicy, type AclRole, type AclRule } from '../../core/authz-config.js';
import { BastionError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { silentLogger } from '../../core/logger.js';
import type { PolicyEngine } from './engine.js';
import { explain, type ExplainRequest, type Explanation } from './explain.js';
import { lintPolicy, type LintFinding } from './lint.js';
import { patternProblem } from './pattern.js';

/** Roles and bindings kept in the data store (manageable at run time, by any process). */
export interface PolicyStore {
  listRoles(): Array<{ name: string; rules: AclRule[] }>;
  /** Creates the role or replaces its rules. */
  putRole(name: string, rules: AclRule[]): void;
  /** Deletes the role and its bindings; false when it did not exist. */
  deleteRole(name: string): boolean;
  listBindings(): AclBinding[];
  /** Idempotent. */
  putBinding(binding: AclBinding): void;
  deleteBinding(binding: AclBinding): boolean;
  /** Changes whenever any process commits a change (cheap enough to poll). */
  changeCounter(): number;
}

export interface PolicyServiceOptions {
  /** The rule set of the config file (or the default policy). Read-only at run time. */
  base: AclPolicy;
  store: PolicyStore | null;
  engine: PolicyEngine;
  logger?: Logger;
}

export type BindingWithSource = AclBinding & { source: AclRole['source'] };

function invalid(message: string): BastionError {
  return new BastionError('ERR_AUTHZ_INVALID', message);
}

/** Validates and copies one rule (for store writes: the same rules as the config). */
export function checkRule(raw: unknown): AclRule {
  const parsed = ruleSchema.safeParse(raw);
  if (!parsed.success) throw invalid(`invalid rule: ${parsed.error.issues[0]?.message ?? 'unreadable'}`);
  const problem = patternProblem(parsed.data.topic);
  if (problem !== null) throw invalid(`invalid rule topic ${parsed.data.topic}: ${problem}`);
  return parsed.data;
}

export class PolicyService {
  private readonly base: AclPolicy;
  private readonly store: PolicyStore | null;
  private readonly engine: PolicyEngine;
  private readonly logger: Logger;
  private readonly listeners = new Set<(policy: AclPolicy) => void>();
  private seen = -1;
  private timer: ReturnType<typeof setInterval> | null = null;

  constructor(opts: PolicyServiceOptions) {
    this.base = opts.base;
    this.store = opts.store;
    this.engine = opts.engine;
    this.logger = opts.logger ?? silentLogger;
    this.reload();
  }

  /** The merged rule set in force. */
  current(): AclPolicy {
    return this.engine.currentPolicy;
  }

  /**
   * Reads the store again and installs the merged rule set. SECURITY: when the store
   * cannot be read, the previous rule set stays (it was valid) and the error is logged;
   * a store that never loaded leaves only the config rules (never allow-all).
   */
  reload(): void {
    let policy: AclPolicy = this.base;
    if (this.store !== null) {
      try {
        this.seen = this.store.changeCounter();
        policy = merge(this.base, this.store.listRoles(), this.store.listBindings());
      } catch (err) {
        this.logger.error({ err: err instanceof Error ? err.message : String(err) }, 'cannot read ACL rules from the store; keeping the rules in force');
        return;
      }
    }
    this.engine.setPolicy(policy);
    for (const cb of this.listeners) cb(policy);
  }

  /** Polls the store's change counter every `intervalMs` (rule changes by the CLI). */
  startWatching(intervalMs: number): void {
    if (this.store === null || this.timer !== null) return;
    const store = this.store;
    this.timer = setInterval(() => {
      let counter: number;
      try {
        counter = store.changeCounter();
      } catch {
        return;
      }
      if (counter !== this.seen) {
        this.reload();
        this.logger.info({ counter: this.seen, roles: this.current().roles.length, bindings: this.current().bindings.length }, 'ACL rules reloaded');
      }
    }, intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** Calls `cb` with the new rule set after every change; returns an unsubscribe. */
  onChange(cb: (policy: AclPolicy) => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  listRoles(): AclRole[] {
    return this.current().roles.map((r) => ({ name: r.name, source: r.source, rules: r.rules.map((x) => ({ ...x })), ...(r.quota !== undefined ? { quota: r.quota } : {}) }));
  }

  putRole(name: string, rules: unknown[]): AclRole {
    const store = this.writable();
    if (!ROLE_NAME.test(name)) throw invalid(`invalid role name "${name}": letters, digits, ., _ and - (up to 64)`);
    this.assertStoreRole(name);
    const checked = rules.map(checkRule);
    store.putRole(name, checked);
    this.reload();
    return { name, source: 'store', rules: checked };
  }

  deleteRole(name: string): boolean {
    const store = this.writable();
    this.assertStoreRole(name);
    const existed = store.deleteRole(name);
    this.reload();
    return existed;
  }

  /** Refuses (ERR_AUTHZ_READONLY) a change to a role of the config file: those change only there. */
  assertStoreRole(name: string): void {
    if (this.base.roles.some((r) => r.name === name)) throw new BastionError('ERR_AUTHZ_READONLY', `role "${name}" is defined in the config file; change it there`);
  }

  listBindings(): BindingWithSource[] {
    const fromBase = new Set(this.base.bindings.map(bindingKey));
    return this.current().bindings.map((b) => ({ ...b, source: fromBase.has(bindingKey(b)) ? (this.base.roles[0]?.source ?? 'config') : 'store' }));
  }

  putBinding(raw: unknown): AclBinding {
    const store = this.writable();
    const parsed = bindingSchema.safeParse(raw);
    if (!parsed.success) throw invalid(`invalid binding: ${parsed.error.issues[0]?.message ?? 'unreadable'}`);
    if (!this.current().roles.some((r) => r.name === parsed.data.role)) throw invalid(`unknown role "${parsed.data.role}"`);
    store.putBinding(parsed.data);
    this.reload();
    return parsed.data;
  }

  deleteBinding(raw: unknown): boolean {
    const store = this.writable();
    const parsed = bindingSchema.safeParse(raw);
    if (!parsed.success) throw invalid(`invalid binding: ${parsed.error.issues[0]?.message ?? 'unreadable'}`);
    if (this.base.bindings.some((b) => bindingKey(b) === bindingKey(parsed.data))) throw new BastionError('ERR_AUTHZ_READONLY', 'that binding is defined in the config file; change it there');
    const existed = store.deleteBinding(parsed.data);
    this.reload();
    return existed;
  }

  explain(req: ExplainRequest): Explanation {
    return explain(this.current(), req);
  }

  lint(): LintFinding[] {
    return lintPolicy(this.current());
  }

  private writable(): PolicyStore {
    if (this.store === null) throw new BastionError('ERR_AUTHZ_NO_STORE', 'no rule store: persistence is disabled');
    return this.store;
  }
}

function bindingKey(b: AclBinding): string {
  return `${b.role}\u0000${b.attribute}\u0000${b.value}`;
}

/** Config roles first; a store role with a config role's name adds its rules after them. */
export function merge(base: AclPolicy, storeRoles: Array<{ name: string; rules: AclRule[] }>, storeBindings: AclBinding[]): AclPolicy {
  const roles: AclRole[] = base.roles.map((r) => ({ ...r, rules: [...r.rules] }));
  for (const sr of storeRoles) {
    const existing = roles.find((r) => r.name === sr.name);
    if (existing !== undefined) existing.rules.push(...sr.rules);
    else roles.push({ name: sr.name, source: 'store', rules: sr.rules });
  }
  const seen = new Set(base.bindings.map(bindingKey));
  const bindings = [...base.bindings];
  for (const b of storeBindings) {
    if (seen.has(bindingKey(b))) continue;
    seen.add(bindingKey(b));
    bindings.push(b);
  }
  return { roles, bindings };
}
