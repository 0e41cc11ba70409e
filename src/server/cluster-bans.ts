/**
 * The ban list of a cluster: a BanStore (security/limits/ban-list.ts) whose rows are the
 * `ban.<id>` entries of the shared state bucket (cluster/shared-state.ts), so a ban or
 * allow entry added, removed or ended on one node is in force (or lifted) on every node.
 * Owns: the entries' ids and wire form, their validation on read, and moving the rows of
 * this data directory's admin.db into the cluster at start. Must not: decide what an entry
 * matches (ban-list.ts) or disconnect anyone (cluster-shared-state.ts cuts the clients the
 * list refuses after a change from another node).
 *
 * The store answers from memory (the ban list reads it synchronously); a change made here
 * is applied at once and written to the bucket behind it (retried until it lands).
 *
 * SECURITY: an entry read from the bucket is checked like one an operator typed (kind,
 * list, canonical value, bounded texts, times); one that fails is logged and ignored, and
 * never stops the others. Rows already in admin.db when a node joins the cluster are moved
 * into it, not dropped: turning cluster mode on never lifts a ban. Their ids come from
 * their content, so workers sharing one admin.db move each row once.
 */
import { createHash, randomInt } from 'node:crypto';
import { z } from 'zod';
import type { Logger } from '../core/logger.js';
import { BAN_KINDS, BAN_LISTS, canonicalBanValue, type Ban, type BanFields, type BanStore } from '../security/limits/ban-list.js';
import type { SharedKind, SharedState } from '../cluster/shared-state.js';

/** The key prefix of ban entries in the shared state bucket. */
export const BAN_PREFIX = 'ban';
/** Ids are below 2^47: at most 15 digits, as the admin API takes them. */
const ID_LIMIT = 2 ** 47;

const banEntry = z
  .object({
    id: z.number().int().min(1).max(ID_LIMIT),
    kind: z.enum(BAN_KINDS),
    value: z.string().min(1).max(256),
    list: z.enum(BAN_LISTS),
    reason: z.string().max(1000),
    createdBy: z.string().max(300),
    createdAt: z.number().int().nonnegative(),
    expiresAt: z.number().int().nonnegative().nullable(),
  })
  .strict();

function keyOf(id: number): string {
  return `${BAN_PREFIX}.${id}`;
}

function idOfKey(key: string): number | null {
  const m = /^ban\.([1-9][0-9]{0,14})$/.exec(key);
  return m === null ? null : Number(m[1]);
}

function encode(ban: Ban): Uint8Array {
  const { id, kind, value, list, reason, createdBy, createdAt, expiresAt } = ban;
  return Buffer.from(JSON.stringify({ id, kind, value, list, reason, createdBy, createdAt, expiresAt }));
}

/** The entry of `key`, or why it is refused. */
function decode(key: string, bytes: Uint8Array): Ban | string {
  const id = idOfKey(key);
  if (id === null) return 'not a ban key';
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    return 'not JSON';
  }
  const parsed = banEntry.safeParse(raw);
  if (!parsed.success) return parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
  const ban = parsed.data;
  if (ban.id !== id) return `id ${ban.id} under the key of ${id}`;
  const canonical = canonicalBanValue(ban.kind, ban.value);
  // SECURITY: a value in another spelling would be indexed as typed and never match.
  if (!canonical.ok || canonical.value !== ban.value) return `${ban.kind} value is not canonical`;
  return ban;
}

function same(a: Ban, b: Ban): boolean {
  return a.kind === b.kind && a.value === b.value && a.list === b.list && a.reason === b.reason && a.createdBy === b.createdBy && a.createdAt === b.createdAt && a.expiresAt === b.expiresAt;
}

/** The id of a row moved from admin.db: the same on every worker that moves it. */
function contentId(b: BanFields): number {
  const digest = createHash('sha256').update(JSON.stringify([b.kind, b.value, b.list, b.reason, b.createdBy, b.createdAt, b.expiresAt])).digest();
  return (digest.readUIntBE(0, 6) % (ID_LIMIT - 1)) + 1;
}

/** Whether a row ended at or before `before` (automatic ones: `autoBefore`), as SqliteAdminStore.pruneBans judges. */
function prunable(b: Ban, before: number, autoBefore: number): boolean {
  if (b.expiresAt === null) return false;
  return (b.expiresAt <= before && !b.createdBy.startsWith('auto:')) || b.expiresAt <= autoBefore;
}

export class ClusterBanStore implements BanStore, SharedKind {
  private readonly bans = new Map<number, Ban>();
  /** Whether entries changed from the bucket since the last `settled`. */
  private changed = false;

  constructor(
    private readonly state: SharedState,
    private readonly logger: Logger,
    /** After entries changed from the bucket (another node): reload the ban list, cut who it refuses. */
    private readonly onChange: () => void,
  ) {}

  // --- SharedKind: the bucket's entries ---

  apply(key: string, value: Uint8Array | null): void {
    const id = idOfKey(key);
    if (value === null) {
      if (id !== null && this.bans.delete(id)) this.changed = true;
      return;
    }
    const ban = decode(key, value);
    if (typeof ban === 'string') {
      this.logger.error({ key, why: ban }, 'a ban entry from the cluster is malformed; ignored');
      return;
    }
    const had = this.bans.get(ban.id);
    if (had !== undefined && same(had, ban)) return;
    this.bans.set(ban.id, ban);
    this.changed = true;
  }

  settled(): void {
    if (!this.changed) return;
    this.changed = false;
    this.onChange();
  }

  /**
   * Moves the rows of this node's own store (admin.db) into the cluster, then removes them
   * there; returns how many were new to the cluster.
   */
  adopt(local: BanStore): number {
    let added = 0;
    for (const row of local.listBans()) {
      const fields: BanFields = { kind: row.kind, value: row.value, list: row.list, reason: row.reason, createdBy: row.createdBy, createdAt: row.createdAt, expiresAt: row.expiresAt };
      const id = contentId(fields);
      if (!this.bans.has(id)) {
        const ban: Ban = { ...fields, id };
        this.bans.set(id, ban);
        this.state.write(keyOf(id), encode(ban));
        added++;
      }
      local.removeBan(row.id);
    }
    return added;
  }

  // --- BanStore: the ban list's rows ---

  listBans(): Ban[] {
    return [...this.bans.values()].sort((a, b) => a.createdAt - b.createdAt || a.id - b.id);
  }

  addBan(fields: BanFields): Ban {
    let id = randomInt(1, ID_LIMIT);
    while (this.bans.has(id)) id = randomInt(1, ID_LIMIT);
    const ban: Ban = { ...fields, id };
    this.bans.set(id, ban);
    this.state.write(keyOf(id), encode(ban));
    return ban;
  }

  removeBan(id: number): boolean {
    if (!this.bans.delete(id)) return false;
    this.state.write(keyOf(id), null);
    return true;
  }

  pruneBans(before: number, autoBefore: number): number {
    let n = 0;
    for (const b of [...this.bans.values()]) {
      if (!prunable(b, before, autoBefore)) continue;
      this.bans.delete(b.id);
      this.state.write(keyOf(b.id), null);
      n++;
    }
    return n;
  }
}
