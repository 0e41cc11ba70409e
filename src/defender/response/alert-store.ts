/**
 * Where alerts and the restrictions they put on identities are kept (issue 15 item 3): the
 * port (its records are core/defender-records.ts). The SQLite adapter is
 * store/sqlite/defender-store.ts (`<dataDir>/defender.db`, shared with the CLI). Owns: the
 * port. Must not: do I/O.
 *
 * A restriction (quarantine, throttle, ban) outlives the alarm that caused it: it stays
 * until an operator releases it (`bastion defender release`, the admin API) or, for a
 * ban with an end, until it expires. That is what makes every action reversible: the
 * record says what was done, by which alert, and how to undo it.
 */

export type { ActionOutcome, AlertQuery, AlertState, DefenderAlert, NewAlert, Restriction, RestrictionKind } from '../../core/defender-records.js';
import type { ActionOutcome, AlertQuery, DefenderAlert, NewAlert, Restriction, RestrictionKind } from '../../core/defender-records.js';

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
