/**
 * What an alarm does (issue 15 item 3): records the alert, tells the world (audit event,
 * `$bastion/alerts/…`, the webhook, metrics through the events), takes the rule's actions
 * or, in dry-run mode, records what they would have done; ends alerts when their rule
 * clears; and releases identities, lifting exactly what was put on them. Owns: that order
 * and the bookkeeping between the store and the enforcement. Must not: detect anything, do
 * I/O itself (the notifier and the store are ports), or read the clock but through `now`.
 *
 * SECURITY: every action is recorded before it is taken, so a crash between the two leaves
 * a record of intent, never an unrecorded restriction; restrictions are re-applied from the
 * store at start (`restore`), so restarting the broker does not free a quarantined device.
 */
import type { DefenderActionName, DetectSettings } from '../../core/defender-config.js';
import type { SecurityEvents } from '../../core/security-events.js';
import { BAN_KINDS, type BanKind } from '../../security/limits/ban-list.js';
import type { AlarmChange } from '../detect/evaluator.js';
import type { ActionOutcome, DefenderAlert, DefenderStore, Restriction, RestrictionKind } from './alert-store.js';
import { ADDRESS_IDENTITY_PREFIX, type BanRef, type Enforcement } from './enforcement.js';
import { actionsOf } from './rule-actions.js';

/** Tells the outside world of an alert (the alerts topic; the webhook, whose outcome comes back). */
export interface AlertNotifier {
  alarm(alert: DefenderAlert): void;
  cleared(alert: DefenderAlert): void;
}

/** Told of every change another node must know (cluster-defender.ts); absent on a single node. */
export interface ResponderListener {
  /** A restriction was put on (`releasedAt` null) or lifted (set). */
  restriction(r: Restriction): void;
  /** An identity was released here (the facade, the CLI): every node releases it. */
  released(identity: string, by: string, at: number): void;
  /** An alert record changed (raised, an outcome, cleared, released). */
  alert(alertId: number): void;
}

export interface ResponderOptions {
  store: DefenderStore;
  enforcement: Enforcement;
  settings: Pick<DetectSettings, 'actions' | 'defaultActions' | 'dryRun' | 'banSeconds'>;
  events: SecurityEvents;
  notifier: AlertNotifier;
  nodeId: string;
  now: () => number;
  /** The identity's alarms end (an operator released it): the evaluator starts it CLEAR. */
  resetAlarms: (identity: string) => void;
}

const ACTOR = 'defender';

function banRefOf(r: Restriction): BanRef | null {
  return r.banKind !== undefined && r.banValue !== undefined && (BAN_KINDS as readonly string[]).includes(r.banKind) ? { kind: r.banKind as BanKind, value: r.banValue } : null;
}

export class Responder {
  /** The open alert of each (rule, identity), so its CLEAR ends that record. */
  private readonly open = new Map<string, number>();
  /** The restrictions this node enforces, by `${kind}\0${identity}`: compared with the store's to follow releases made elsewhere. */
  private readonly enforced = new Map<string, Restriction>();
  /** The cluster's ear, once attached. */
  listener: ResponderListener | null = null;

  constructor(private readonly opts: ResponderOptions) {}

  /**
   * At start: re-applies the restrictions in the store, and removes ban-list entries the
   * defender added whose restriction was released while no broker ran (`bastion defender
   * release` on a stopped broker writes only defender.db).
   */
  restore(): void {
    this.reconcile();
    const banned = new Set(this.opts.store.activeRestrictions().filter((r) => r.kind === 'ban').map((r) => `${r.banKind}\u0000${r.banValue}`));
    for (const ban of this.opts.enforcement.defenderBans()) {
      if (banned.has(`${ban.kind}\u0000${ban.value}`)) continue;
      if (!this.opts.enforcement.unban(ban, 'released while stopped')) continue;
      this.opts.events.emit({ type: 'defender.action', alertId: ban.alertId, action: 'ban', identity: `${ban.kind}:${ban.value}`, rule: 'release', outcome: 'released', actor: 'released while stopped', detail: `${ban.kind} ${ban.value}` });
    }
  }

  /** Acts on one window's alarm changes. */
  handle(changes: readonly AlarmChange[]): void {
    for (const change of changes) {
      if (change.state === 'ALARM') this.raise(change);
      else this.clear(change);
    }
  }

  private raise(change: AlarmChange): void {
    const { store, settings, now } = this.opts;
    const actions = actionsOf(settings, change.rule);
    const dryRun = settings.dryRun;
    const id = store.addAlert({
      rule: change.rule,
      identity: change.identity,
      role: change.role,
      value: change.value,
      threshold: change.threshold,
      items: change.items ?? [],
      raisedAt: now(),
      node: this.opts.nodeId,
      dryRun,
      actions: [],
    });
    this.open.set(`${change.rule}\u0000${change.identity}`, id);
    this.opts.events.emit({
      type: 'defender.alarm',
      alertId: id,
      rule: change.rule,
      identity: change.identity,
      role: change.role,
      state: 'ALARM',
      value: change.value,
      threshold: change.threshold,
      ...(change.items !== undefined ? { items: change.items } : {}),
      node: this.opts.nodeId,
    });
    for (const action of actions) if (action !== 'alert') this.act(id, change, action, dryRun);
    const alert = store.getAlert(id);
    if (alert !== null) this.opts.notifier.alarm(alert);
    this.listener?.alert(id);
  }

  private act(alertId: number, change: AlarmChange, action: Exclude<DefenderActionName, 'alert'>, dryRun: boolean): void {
    let outcome: ActionOutcome;
    if (dryRun) outcome = { action, outcome: 'dry-run', detail: `would ${action} ${change.identity}` };
    else {
      try {
        outcome = this.apply(alertId, change.identity, action, `defender: ${change.rule}`);
      } catch (err) {
        outcome = { action, outcome: 'failed', detail: err instanceof Error ? err.message : String(err) };
      }
    }
    this.record(alertId, change.rule, change.identity, outcome);
  }

  /** Records an action's outcome on its alert and as an event (the webhook's comes back through here too). */
  record(alertId: number, rule: string, identity: string, outcome: ActionOutcome, actor = ACTOR): void {
    this.opts.store.addOutcome(alertId, outcome);
    if (outcome.action === 'webhook') this.listener?.alert(alertId);
    this.opts.events.emit({ type: 'defender.action', alertId, action: outcome.action, identity, rule, outcome: outcome.outcome, actor, ...(outcome.detail !== undefined ? { detail: outcome.detail } : {}) });
  }

  private apply(alertId: number, identity: string, action: Exclude<DefenderActionName, 'alert'>, reason: string): ActionOutcome {
    const { enforcement, store, now } = this.opts;
    const isAddress = identity.startsWith(ADDRESS_IDENTITY_PREFIX);
    switch (action) {
      case 'quarantine':
      case 'throttle': {
        // A source address has no session to restrict: banning it is the action that applies.
        if (isAddress) return { action, outcome: 'failed', detail: `a source address cannot be ${action}d (use ban)` };
        const restriction = { identity, kind: action, alertId, appliedAt: now(), expiresAt: null };
        store.addRestriction(restriction);
        if (action === 'quarantine') enforcement.quarantine(identity);
        else enforcement.throttle(identity);
        const recorded = { ...restriction, releasedAt: null, releasedBy: null };
        this.enforced.set(`${action}\u0000${identity}`, recorded);
        this.listener?.restriction(recorded);
        return { action, outcome: 'applied' };
      }
      case 'disconnect': {
        const n = enforcement.disconnect(identity, reason);
        return { action, outcome: 'applied', detail: n === 0 ? 'no live session on this node' : `${n} session(s) closed` };
      }
      case 'ban': {
        const expiresAt = this.opts.settings.banSeconds > 0 ? now() + this.opts.settings.banSeconds * 1000 : null;
        const ref = enforcement.ban(identity, expiresAt, reason, `${ACTOR}:alert-${alertId}`);
        if (ref === null) return { action, outcome: 'failed', detail: 'no connected client to ban by certificate, user name or client id' };
        const restriction = { identity, kind: 'ban' as const, alertId, appliedAt: now(), expiresAt, banKind: ref.kind, banValue: ref.value };
        store.addRestriction(restriction);
        const recorded = { ...restriction, releasedAt: null, releasedBy: null };
        this.enforced.set(`ban\u0000${identity}`, recorded);
        this.listener?.restriction(recorded);
        return { action, outcome: 'applied', detail: `${ref.kind} ${ref.value}` };
      }
    }
  }

  private clear(change: AlarmChange): void {
    const key = `${change.rule}\u0000${change.identity}`;
    const id = this.open.get(key);
    if (id === undefined) return;
    this.open.delete(key);
    this.opts.store.clearAlert(id, this.opts.now());
    this.opts.events.emit({ type: 'defender.alarm', alertId: id, rule: change.rule, identity: change.identity, role: change.role, state: 'CLEAR', value: change.value, threshold: change.threshold, node: this.opts.nodeId });
    const alert = this.opts.store.getAlert(id);
    if (alert !== null) this.opts.notifier.cleared(alert);
    this.listener?.alert(id);
  }

  /**
   * An operator releases `identity`: alerts released, restrictions lifted, alarms reset.
   * `fromCluster`: another node's release arriving here (not announced again).
   */
  release(identity: string, actor: string, fromCluster = false): { alerts: number; restrictions: Restriction[] } {
    const { store } = this.opts;
    const at = this.opts.now();
    const active = store.listAlerts({ identity, state: 'active', limit: 1000 }).alerts;
    const released = store.release(identity, actor, at);
    if (!fromCluster) this.listener?.released(identity, actor, at);
    for (const r of released.restrictions) this.lift({ ...r, releasedAt: at, releasedBy: actor }, actor);
    for (const a of active) this.listener?.alert(a.id);
    for (const a of active) {
      this.open.delete(`${a.rule}\u0000${a.identity}`);
      this.opts.events.emit({ type: 'defender.alarm', alertId: a.id, rule: a.rule, identity, role: a.role, state: 'CLEAR', value: a.value, threshold: a.threshold, node: this.opts.nodeId });
    }
    this.opts.resetAlarms(identity);
    return released;
  }

  private lift(r: Restriction, actor: string): void {
    const { enforcement } = this.opts;
    this.enforced.delete(`${r.kind}\u0000${r.identity}`);
    this.listener?.restriction({ ...r, releasedAt: r.releasedAt ?? this.opts.now(), releasedBy: r.releasedBy ?? actor });
    let detail: string | undefined;
    if (r.kind === 'quarantine') enforcement.unquarantine(r.identity);
    else if (r.kind === 'throttle') enforcement.unthrottle(r.identity);
    else {
      const ref = banRefOf(r);
      detail = ref === null ? 'no ban entry recorded' : enforcement.unban(ref, actor) ? `${ref.kind} ${ref.value}` : `${ref.kind} ${ref.value} was already gone`;
    }
    this.opts.events.emit({ type: 'defender.action', alertId: r.alertId, action: r.kind, identity: r.identity, rule: 'release', outcome: 'released', actor, ...(detail !== undefined ? { detail } : {}) });
  }

  /**
   * Brings what this node enforces in line with the store: lifts what was released
   * elsewhere (the CLI, another node) or has expired, applies what was added elsewhere.
   * `announce`: releases found here are the CLI's, to be told to the cluster (false when
   * the cluster itself wrote them into the store).
   */
  reconcile(announce = true): void {
    const { store, now } = this.opts;
    const t = now();
    const wanted = new Map<string, Restriction>();
    for (const r of store.activeRestrictions()) {
      if (r.expiresAt !== null && r.expiresAt <= t) {
        store.releaseRestriction(r.identity, r.kind, 'expiry', t);
        if (this.enforced.has(`${r.kind}\u0000${r.identity}`)) this.lift(r, 'expiry');
        continue;
      }
      wanted.set(`${r.kind}\u0000${r.identity}`, r);
    }
    const releasedHere = new Set<string>();
    for (const [key, r] of [...this.enforced]) {
      if (wanted.has(key)) continue;
      this.lift(r, 'released elsewhere');
      this.opts.resetAlarms(r.identity);
      releasedHere.add(r.identity);
    }
    // The CLI released these in this node's file: the rest of the cluster releases them too.
    if (announce) for (const identity of releasedHere) this.listener?.released(identity, 'defender.db', t);
    for (const [key, r] of wanted) {
      if (this.enforced.has(key)) continue;
      this.enforced.set(key, r);
      this.enforce(r.kind, r.identity);
    }
  }

  private enforce(kind: RestrictionKind, identity: string): void {
    // A ban is in the ban list already (shared in a cluster); only the in-memory restrictions need setting.
    if (kind === 'quarantine') this.opts.enforcement.quarantine(identity);
    else if (kind === 'throttle') this.opts.enforcement.throttle(identity);
  }

  /** True when a restriction this node enforces has run out by `now` (the reconcile then lifts it). */
  hasExpiring(now: number): boolean {
    for (const r of this.enforced.values()) if (r.expiresAt !== null && r.expiresAt <= now) return true;
    return false;
  }

  /** Restrictions this node enforces now. */
  enforcedRestrictions(): Restriction[] {
    return [...this.enforced.values()];
  }
}
