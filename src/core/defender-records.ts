/**
 * The records of behaviour detection's alerts and the restrictions they put on identities
 * (issue 15): plain data shared by the detection (defender/), its SQLite store (store/) and
 * the admin API's view. Owns: the shapes. Must not: hold logic. They live in core because
 * both defender/ and store/ use them and neither may import the other.
 */
import type { DefenderActionName } from './defender-config.js';

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
