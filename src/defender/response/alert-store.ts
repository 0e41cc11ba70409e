/**
 * Where alerts and the restrictions they put on identities are kept (issue 15 item 3): the
 * port and its records. The SQLite adapter is store/sqlite/defender-store.ts
 * (`<dataDir>/defender.db`, shared with the CLI). Owns: the shapes. Must not: do I/O.
 *
 * A restriction (quarantine, throttle, ban) outlives the alarm that caused it: it stays
 * until an operator releases it (`bastion defender release`, the admin API) or, for a
 * ban with an end, until it expires. That is what makes every action reversible: the
 * record says what was done, by which alert, and how to undo it.
 */
import type { DefenderActionName } from '../../core/defender-config.js';

export type AlertState = 'active' | 'cleared' | 'released';

/** What happened to one action of an alert. */
export interface ActionOutcome {
  action: Exclude<DefenderActionName, 'alert'> | 'webhook';
  outcome: 'applied' | 'dry-run' | 'failed';
  detail?: string;
}

export interface DefenderAlert {
  id: number;
  rule: string;
  identity: string;
  role: string;
  state: AlertState;
  /** What the window measured, and what it was compared with. */
  value: number;
  threshold: number;
  /** What a new-behaviour rule saw for the first time (topics, address prefixes, client ids). */
  items: string[];
  /** ms since the epoch. */
  raisedAt: number;
  clearedAt: number | null;
  releasedAt: number | null;
  /** The operator (or `expiry`) who released it. */
  releasedBy: string | null;
  /** The node that raised it. */
  node: string;
  dryRun: boolean;
  actions: ActionOutcome[];
}

export type NewAlert = Omit<DefenderAlert, 'id' | 'state' | 'clearedAt' | 'releasedAt' | 'releasedBy'>;

/** The lasting restrictions an action puts on an identity. */
export type RestrictionKind = 'quarantine' | 'throttle' | 'ban';

export interface Restriction {
  identity: string;
  kind: RestrictionKind;
  alertId: number;
  appliedAt: number;
  /** ms since the epoch; null: until released. */
  expiresAt: number | null;
  /** A ban: the ban-list entry it added (kind and value), so the release removes exactly that one. */
  banKind?: string;
  banValue?: string;
  releasedAt: number | null;
  releasedBy: string | null;
}

export interface AlertQuery {
  state?: AlertState;
  identity?: string;
  rule?: string;
  offset?: number;
  limit?: number;
}

export interface DefenderStore {
  /** Records a raised alarm; returns its id. */
  addAlert(alert: NewAlert): number;
  /** Appends what an action did to an alert. */
  addOutcome(alertId: number, outcome: ActionOutcome): void;
  /** The alarm cleared by itself (its rule saw normal datapoints again); restrictions stay. */
  clearAlert(alertId: number, at: number): void;
  getAlert(id: number): DefenderAlert | null;
  /** Newest first; `limit` at most 1000. */
  listAlerts(query: AlertQuery): { total: number; alerts: DefenderAlert[] };
  /** Adds or replaces the unreleased restriction of (identity, kind). */
  addRestriction(restriction: Omit<Restriction, 'releasedAt' | 'releasedBy'>): void;
  /** Restrictions not released (expired ones included: the caller lifts and releases them). */
  activeRestrictions(): Restriction[];
  /**
   * Releases an identity: its active alerts become `released`, its restrictions are marked
   * released (by `by`, at `at`). Returns the restrictions released, for the caller to lift.
   */
  release(identity: string, by: string, at: number): { alerts: number; restrictions: Restriction[] };
  /** Releases one restriction (an expired ban). */
  releaseRestriction(identity: string, kind: RestrictionKind, by: string, at: number): void;
  /** Deletes cleared and released alerts older than `before`; returns how many. */
  prune(before: number): number;
  /** True when another process (the CLI) wrote since the last call. */
  changedElsewhere(): boolean;
  close(): void;
}
