/**
 * Behaviour detection across a cluster (issue 15 item 5): a kind of the shared state
 * bucket (cluster/shared-state.ts) carrying four things between nodes, so that a device
 * keeps its baselines, its restrictions and its alerts when it moves:
 *
 * - `defender.r.<hash>`: a restriction (quarantine, throttle, ban) and whether it was
 *   released. Every node writes it into its own defender.db and enforces it, so a
 *   quarantined device is quarantined on whichever node it reaches.
 * - `defender.x.<hash>`: an identity released on some node (its API or its CLI): every
 *   node releases its own alerts of it too.
 * - `defender.l.<hash>`: what detection learned about an identity (baselines, known
 *   topics and addresses, alarm cooldowns), written when its last session on a node
 *   closes and adopted by the node where it connects next.
 * - `defender.a.<node>.<id>`: an alert record, so any node's admin API lists the cluster's.
 *
 * Owns: the entries' form, validation and joins. Must not: decide or enforce anything (the
 * responder and the detector do), or keep unbounded memory (learned states and remote
 * alerts are capped, least recent dropped).
 *
 * SECURITY: entries are validated like operator input; one that fails is logged by the
 * shared state and ignored. A restriction entry can restrict or release; releases are
 * audited on the node that receives them (defender.action released, actor from the entry).
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { SharedKind, SharedState } from '../cluster/shared-state.js';
import type { Logger } from '../core/logger.js';
import type { LearnedState } from '../defender/detect/evaluator.js';
import type { AlertQuery, DefenderAlert, DefenderStore, Restriction } from '../defender/response/alert-store.js';
import type { Responder, ResponderListener } from '../defender/response/responder.js';
import type { Detector } from '../defender/runtime/detector.js';
import { parseRulesDocument, type LiveRules, type RulesOverride } from './defender-rules.js';

export const DEFENDER_PREFIX = 'defender';
/** Learned states and remote alerts kept in memory, at most. */
const MAX_LEARNED = 100_000;
const MAX_REMOTE_ALERTS = 10_000;

function digest(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 40);
}

const identity = z.string().min(1).max(512);
const time = z.number().int().nonnegative();
const restrictionEntry = z
  .object({
    identity,
    kind: z.enum(['quarantine', 'throttle', 'ban']),
    alertId: z.number().int().nonnegative(),
    appliedAt: time,
    expiresAt: time.nullable(),
    banKind: z.string().max(32).optional(),
    banValue: z.string().max(512).optional(),
    releasedAt: time.nullable(),
    releasedBy: z.string().max(300).nullable(),
    node: z.string().max(200),
  })
  .strict();
const RULES_KEY = `${DEFENDER_PREFIX}.rules`;
/** The document is checked by parseRulesDocument (the config's schema) when applied. */
const rulesEntry = z.object({ override: z.object({ doc: z.unknown(), by: z.string().max(300), at: time }).strict().nullable(), at: time }).strict();
const releaseEntry = z.object({ identity, by: z.string().max(300), at: time, node: z.string().max(200) }).strict();
const stat = z.number().finite();
const learnedEntry = z
  .object({
    identity,
    node: z.string().max(200),
    at: time,
    learned: z
      .object({
        datapoints: z.number().int().nonnegative(),
        baselines: z.array(z.object({ n: stat, mean: stat, variance: stat }).strict().nullable()).max(256),
        known: z.array(z.array(z.string().max(1024)).max(1024).nullable()).max(256),
        alarms: z.array(z.object({ state: z.enum(['ALARM', 'CLEAR']), lastAlarmAt: time.nullable() }).strict().nullable()).max(256),
      })
      .strict(),
  })
  .strict();
const alertEntry = z
  .object({
    id: z.number().int().positive(),
    rule: z.string().max(64),
    identity,
    role: z.string().max(128),
    state: z.enum(['active', 'cleared', 'released']),
    value: stat,
    threshold: stat,
    items: z.array(z.string().max(1024)).max(64),
    raisedAt: time,
    clearedAt: time.nullable(),
    releasedAt: time.nullable(),
    releasedBy: z.string().max(300).nullable(),
    node: z.string().max(200),
    dryRun: z.boolean(),
    actions: z
      .array(z.object({ action: z.enum(['quarantine', 'throttle', 'disconnect', 'ban', 'webhook']), outcome: z.enum(['applied', 'dry-run', 'failed']), detail: z.string().max(1000).optional() }).strict())
      .max(32),
  })
  .strict();

type RestrictionEntry = z.infer<typeof restrictionEntry>;

function parse<T>(schema: z.ZodType<T>, bytes: Uint8Array): T {
  return schema.parse(JSON.parse(Buffer.from(bytes).toString('utf8')));
}

function json(value: unknown): Uint8Array {
  return Buffer.from(JSON.stringify(value));
}

/** Of two versions of one restriction: the later application; at the same time, the released one. */
function newer(a: RestrictionEntry, b: RestrictionEntry): RestrictionEntry {
  if (a.appliedAt !== b.appliedAt) return a.appliedAt > b.appliedAt ? a : b;
  return a.releasedAt !== null ? a : b;
}

export interface ClusterDefenderDeps {
  nodeId: string;
  /** The rules in force (a run-time replacement is shared as `defender.rules`). */
  rules: LiveRules;
  store: DefenderStore;
  responder: Responder;
  detector: Detector | null;
  logger: Logger;
  now: () => number;
}

export class ClusterDefender implements SharedKind, ResponderListener {
  private state: SharedState | null = null;
  /** The bucket's restrictions by key (as last read or written). */
  private readonly restrictions = new Map<string, RestrictionEntry>();
  /** Restriction keys changed by the bucket since the last settle. */
  private readonly changed = new Set<string>();
  /** The newest release applied or made here, per identity. */
  private readonly releases = new Map<string, number>();
  private readonly pendingReleases: Array<z.infer<typeof releaseEntry>> = [];
  private readonly learned = new Map<string, { at: number; learned: LearnedState }>();
  private readonly remoteAlerts = new Map<string, DefenderAlert>();
  /** The newest rules entry seen (ms), and one read but not yet applied. */
  private rulesAt = -1;
  private pendingRules: { override: RulesOverride | null } | null = null;
  /** Until attached (after the first read), the bucket is only read, never acted on. */
  private live = false;

  constructor(private readonly deps: ClusterDefenderDeps) {}

  register(state: SharedState): void {
    this.state = state;
    state.register(DEFENDER_PREFIX, this);
  }

  /** After the first read: this node's restrictions and alerts go out, the bucket's are enforced here, and changes flow both ways. */
  attach(): void {
    const { responder, detector, store } = this.deps;
    responder.listener = this;
    this.live = true;
    for (const r of store.activeRestrictions()) this.restriction(r);
    for (const a of store.listAlerts({ limit: 1000 }).alerts) this.alert(a.id);
    this.settled();
    if (detector !== null) {
      detector.onIdentityOpened = (id) => {
        const found = this.learned.get(id);
        if (found !== undefined) detector.importState(id, found.learned);
      };
      detector.onIdentityClosed = (id) => {
        const learned = detector.exportState(id);
        if (learned !== null && learned.datapoints > 0) this.write(`${DEFENDER_PREFIX}.l.${digest(id)}`, { identity: id, node: this.deps.nodeId, at: this.deps.now(), learned });
      };
    }
  }

  apply(key: string, value: Uint8Array | null): void {
    if (value === null) return;
    if (key === RULES_KEY) {
      const entry = parse(rulesEntry, value);
      const override = entry.override === null ? null : { doc: parseRulesDocument(entry.override.doc), by: entry.override.by, at: entry.override.at };
      if (entry.at > this.rulesAt) {
        this.rulesAt = entry.at;
        this.pendingRules = { override };
      }
      return;
    }
    const kind = key.slice(DEFENDER_PREFIX.length + 1, DEFENDER_PREFIX.length + 2);
    switch (kind) {
      case 'r': {
        const entry = parse(restrictionEntry, value);
        if (key !== this.restrictionKey(entry.kind, entry.identity)) throw new Error('restriction key does not match its entry');
        const known = this.restrictions.get(key);
        const next = known === undefined ? entry : newer(known, entry);
        if (next !== known) {
          this.restrictions.set(key, next);
          this.changed.add(key);
        }
        return;
      }
      case 'x': {
        const entry = parse(releaseEntry, value);
        if (key !== `${DEFENDER_PREFIX}.x.${digest(entry.identity)}`) throw new Error('release key does not match its entry');
        if (entry.at <= (this.releases.get(entry.identity) ?? -1)) return;
        this.releases.set(entry.identity, entry.at);
        if (this.live && entry.node !== this.deps.nodeId) this.pendingReleases.push(entry);
        return;
      }
      case 'l': {
        const entry = parse(learnedEntry, value);
        if (key !== `${DEFENDER_PREFIX}.l.${digest(entry.identity)}`) throw new Error('learned-state key does not match its entry');
        const known = this.learned.get(entry.identity);
        if (known !== undefined && known.at >= entry.at) return;
        this.learned.delete(entry.identity);
        this.learned.set(entry.identity, { at: entry.at, learned: entry.learned });
        if (this.learned.size > MAX_LEARNED) this.learned.delete(this.learned.keys().next().value!);
        // A device that moved here before its old node handed over: adopt it now (if this node knows less).
        const detector = this.deps.detector;
        if (this.live && entry.node !== this.deps.nodeId && detector?.liveClient(entry.identity) != null) detector.importState(entry.identity, entry.learned);
        return;
      }
      case 'a': {
        const alert = parse(alertEntry, value) as DefenderAlert;
        if (key !== this.alertKey(alert.node, alert.id)) throw new Error('alert key does not match its entry');
        if (alert.node === this.deps.nodeId) return;
        const k = `${alert.node}\u0000${alert.id}`;
        this.remoteAlerts.delete(k);
        this.remoteAlerts.set(k, alert);
        if (this.remoteAlerts.size > MAX_REMOTE_ALERTS) this.remoteAlerts.delete(this.remoteAlerts.keys().next().value!);
        return;
      }
      default:
        throw new Error('not a key of this kind');
    }
  }

  /** After a read or a change: restrictions and releases from the bucket reach the store and the enforcement. */
  settled(): void {
    if (!this.live) return;
    const { store, responder, logger, now } = this.deps;
    try {
      if (this.changed.size > 0) {
        const active = new Map(store.activeRestrictions().map((r) => [this.restrictionKey(r.kind, r.identity), r]));
        for (const key of this.changed) {
          const entry = this.restrictions.get(key);
          if (entry === undefined) continue;
          const local = active.get(key);
          if (entry.releasedAt !== null) {
            if (local !== undefined && local.appliedAt <= entry.appliedAt) store.releaseRestriction(entry.identity, entry.kind, entry.releasedBy ?? 'cluster', entry.releasedAt);
          } else if (local === undefined || local.appliedAt < entry.appliedAt) {
            if (entry.expiresAt === null || entry.expiresAt > now()) {
              const { node: _node, releasedAt: _r, releasedBy: _b, ...restriction } = entry;
              store.addRestriction(restriction);
            }
          }
        }
        this.changed.clear();
        responder.reconcile(false);
      }
      for (const release of this.pendingReleases.splice(0)) responder.release(release.identity, release.by, true);
      const rules = this.pendingRules;
      this.pendingRules = null;
      if (rules !== null) {
        this.deps.rules.adopt(rules.override).catch((err: unknown) => logger.error({ err: err instanceof Error ? err.message : String(err) }, 'cannot keep the cluster’s detection rules'));
      }
    } catch (err) {
      logger.error({ err: err instanceof Error ? err.message : String(err) }, 'defender could not apply the cluster’s restrictions');
    }
  }

  // ---- ResponderListener: this node's changes go out ----

  restriction(r: Restriction): void {
    if (!this.live) return;
    const key = this.restrictionKey(r.kind, r.identity);
    const entry: RestrictionEntry = {
      identity: r.identity,
      kind: r.kind,
      alertId: r.alertId,
      appliedAt: r.appliedAt,
      expiresAt: r.expiresAt,
      ...(r.banKind !== undefined ? { banKind: r.banKind } : {}),
      ...(r.banValue !== undefined ? { banValue: r.banValue } : {}),
      releasedAt: r.releasedAt,
      releasedBy: r.releasedBy,
      node: this.deps.nodeId,
    };
    const known = this.restrictions.get(key);
    if (known !== undefined && JSON.stringify(newer(known, entry)) === JSON.stringify(known)) return;
    this.restrictions.set(key, entry);
    this.write(key, entry);
  }

  released(id: string, by: string, at: number): void {
    if (at <= (this.releases.get(id) ?? -1)) return;
    this.releases.set(id, at);
    this.write(`${DEFENDER_PREFIX}.x.${digest(id)}`, { identity: id, by, at, node: this.deps.nodeId });
  }

  alert(alertId: number): void {
    if (!this.live) return;
    const alert = this.deps.store.getAlert(alertId);
    if (alert !== null) this.write(this.alertKey(alert.node, alert.id), alert);
  }

  /** The rules were replaced (or reset, null) here: every node takes them. */
  rulesChanged(override: RulesOverride | null): void {
    const at = override?.at ?? this.deps.now();
    this.rulesAt = Math.max(this.rulesAt, at);
    this.write(RULES_KEY, { override, at });
  }

  // ---- reads for the facade ----

  /** Alerts of the other nodes matching `query` (newest first). */
  remote(query: AlertQuery): DefenderAlert[] {
    const out: DefenderAlert[] = [];
    for (const a of this.remoteAlerts.values()) {
      if (query.state !== undefined && a.state !== query.state) continue;
      if (query.identity !== undefined && a.identity !== query.identity) continue;
      if (query.rule !== undefined && a.rule !== query.rule) continue;
      out.push(a);
    }
    return out.sort((a, b) => b.raisedAt - a.raisedAt);
  }

  private restrictionKey(kind: string, id: string): string {
    return `${DEFENDER_PREFIX}.r.${digest(`${kind}\u0000${id}`)}`;
  }

  private alertKey(node: string, id: number): string {
    return `${DEFENDER_PREFIX}.a.${digest(node)}.${id}`;
  }

  private write(key: string, value: unknown): void {
    this.state?.write(key, json(value));
  }
}

/**
 * One page of the cluster's alerts: this node's (from its store) merged with the others'
 * (from the bucket), newest first. `local` is asked for enough rows to fill the page.
 */
export function mergedAlerts(local: (q: AlertQuery) => { total: number; alerts: DefenderAlert[] }, remote: DefenderAlert[], query: AlertQuery): { total: number; alerts: DefenderAlert[] } {
  const offset = Math.max(0, query.offset ?? 0);
  const limit = Math.min(1000, Math.max(1, query.limit ?? 100));
  const mine = local({ ...query, offset: 0, limit: Math.min(1000, offset + limit) });
  const all = [...mine.alerts, ...remote].sort((a, b) => b.raisedAt - a.raisedAt || (a.node < b.node ? -1 : a.node > b.node ? 1 : 0) || b.id - a.id);
  return { total: mine.total + remote.length, alerts: all.slice(offset, offset + limit) };
}
