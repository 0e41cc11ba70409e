/**
 * The admin API bearer tokens of a cluster (issue 12). Tokens are made and revoked by
 * `bastion admin token create|revoke`, which writes this data directory's admin.db and
 * knows no cluster; every node publishes what the CLI changed there as
 * `token.<hash of the name>` entries of the shared state bucket (cluster/shared-state.ts),
 * and its admin API accepts the cluster's tokens besides its own admin.db's. So a token
 * made on any node is accepted by every node, and one revoked on any node is refused by
 * every node (a revocation also removes the token of that name from each node's admin.db),
 * within a second. Owns: the entries' keys and wire form, their validation on read, that
 * union and the sync. Must not: make or check tokens (admin/api does) or talk to NATS.
 *
 * A revocation is a tombstone entry (name and time), not a key deletion: a node that was
 * away learns at start which of its tokens were revoked meanwhile (its copy is older than
 * the tombstone) and which were made again since (newer: it publishes them). Of two tokens
 * of one name made on two nodes, the later one is the cluster's; the earlier one stays
 * valid on the node whose admin.db holds it, until revoked.
 *
 * SECURITY: an entry carries the token's SHA-256 hash (as admin.db does), never the token.
 * An entry read from the bucket must sit under its own name's key and carry a valid name
 * and a 64-hex-digit hash; one that fails is logged and ignored.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { Logger } from '../core/logger.js';
import { isValidTokenName } from '../admin/api/tokens.js';
import type { AdminScope, TokenStore } from '../admin/api/services.js';
import type { SharedKind, SharedState } from '../cluster/shared-state.js';
import type { StoredAdminToken } from '../store/sqlite/admin-store.js';

/** Lists admin.db's tokens with their hashes (SqliteAdminStore), which the TokenStore port does not. */
export interface TokenRecords {
  listTokenRecords(): StoredAdminToken[];
}

export const TOKEN_PREFIX = 'token';
/** How often admin.db is read for the CLI's changes. */
const POLL_MS = 250;

interface Live {
  name: string;
  hash: string;
  createdAt: number;
  scope: AdminScope;
}
interface Revoked {
  name: string;
  revokedAt: number;
}
type Entry = Live | Revoked;

const name = z.string().refine(isValidTokenName, 'invalid token name');
const tokenEntry = z.union([
  // A token shared before scopes existed could change everything: it stays an admin token.
  z.object({ name, hash: z.string().regex(/^[0-9a-f]{64}$/), createdAt: z.number().int().nonnegative(), scope: z.enum(['admin', 'viewer']).default('admin') }).strict(),
  z.object({ name, revokedAt: z.number().int().nonnegative() }).strict(),
]);

export function tokenKey(tokenName: string): string {
  return `${TOKEN_PREFIX}.${createHash('sha256').update(tokenName).digest('hex').slice(0, 40)}`;
}

function decode(key: string, bytes: Uint8Array): Entry | string {
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    return 'not JSON';
  }
  const parsed = tokenEntry.safeParse(raw);
  if (!parsed.success) return parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
  if (tokenKey(parsed.data.name) !== key) return 'a token under another token\'s key';
  return parsed.data;
}

function isLive(e: Entry): e is Live {
  return 'hash' in e;
}

/** When an entry was written: a token's creation, a tombstone's revocation. */
function stampOf(e: Entry): number {
  return isLive(e) ? e.createdAt : e.revokedAt;
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class ClusterTokens implements SharedKind, TokenStore {
  /** The bucket's entries, by name. */
  private readonly entries = new Map<string, Entry>();
  /** admin.db's rows as last synced, by name. */
  private known = new Map<string, Live>();
  private local: TokenStore | null = null;
  /** admin.db's tokens with their hashes (the CLI writes them there from another process). */
  private records: TokenRecords | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly state: SharedState,
    private readonly logger: Logger,
  ) {}

  register(): void {
    this.state.register(TOKEN_PREFIX, this);
  }

  /** After the bucket was read: reconciles admin.db (`local`) with it, then follows both. */
  attach(local: TokenStore & TokenRecords): void {
    this.local = local;
    this.records = local;
    for (const row of this.rows().values()) {
      const there = this.entries.get(row.name);
      if (there === undefined || (isLive(there) ? there.createdAt < row.createdAt : there.revokedAt < row.createdAt)) this.publish(row);
    }
    for (const entry of this.entries.values()) if (!isLive(entry)) this.revokeHere(entry);
    this.known = this.rows();
    this.timer = setInterval(() => this.poll(), POLL_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  // --- SharedKind ---

  apply(key: string, value: Uint8Array | null): void {
    if (value === null) {
      // A purged key: the tombstone is gone, and with it nothing to enforce.
      for (const [n, e] of [...this.entries]) if (tokenKey(n) === key && !isLive(e)) this.entries.delete(n);
      return;
    }
    const entry = decode(key, value);
    if (typeof entry === 'string') {
      this.logger.error({ key, why: entry }, 'an admin token entry from the cluster is malformed; ignored');
      return;
    }
    const had = this.entries.get(entry.name);
    // SECURITY: a write older than what this node holds (its own earlier write, delivered by a
    // watcher running behind) must not bring back a token revoked since: the newer stands,
    // and at equal times the revocation.
    if (had !== undefined && (stampOf(had) > stampOf(entry) || (stampOf(had) === stampOf(entry) && !isLive(had) && isLive(entry)))) return;
    this.entries.set(entry.name, entry);
    if (isLive(entry)) {
      if (had === undefined || !isLive(had) || had.hash !== entry.hash) this.logger.info({ name: entry.name }, 'admin token from the cluster');
      return;
    }
    if (had !== undefined && isLive(had)) this.logger.warn({ name: entry.name }, 'admin token revoked by another node of the cluster');
    if (this.local !== null) this.revokeHere(entry);
  }

  /** Removes the token of a tombstone's name from admin.db unless it was made after the revocation. */
  private revokeHere(tomb: Revoked): void {
    const have = this.rows().get(tomb.name);
    if (have === undefined || have.createdAt > tomb.revokedAt) return;
    this.local!.revokeToken(tomb.name);
    this.known.delete(tomb.name);
    this.logger.warn({ name: tomb.name }, 'admin token of this data directory revoked by another node of the cluster');
  }

  // --- TokenStore: the admin API's ---

  findTokenByHash(hash: string): { name: string; scope: AdminScope } | null {
    for (const e of this.entries.values()) if (isLive(e) && e.hash === hash) return { name: e.name, scope: e.scope };
    return this.local?.findTokenByHash(hash) ?? null;
  }

  /** Into admin.db; the next poll publishes it. */
  createToken(token: { name: string; hash: string; createdAt: number; scope: AdminScope }): boolean {
    return this.local?.createToken(token) ?? false;
  }

  listTokens(): Array<{ name: string; createdAt: number; scope: AdminScope }> {
    const all = new Map<string, { createdAt: number; scope: AdminScope }>();
    for (const e of this.entries.values()) if (isLive(e)) all.set(e.name, { createdAt: e.createdAt, scope: e.scope });
    for (const t of this.local?.listTokens() ?? []) all.set(t.name, { createdAt: t.createdAt, scope: t.scope });
    return [...all].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)).map(([n, t]) => ({ name: n, ...t }));
  }

  /** Everywhere: admin.db's and the cluster's. */
  revokeToken(tokenName: string): boolean {
    const shared = this.entries.get(tokenName);
    const here = this.local?.revokeToken(tokenName) ?? false;
    this.known.delete(tokenName);
    if (!here && (shared === undefined || !isLive(shared))) return false;
    this.tombstone(tokenName, shared !== undefined && isLive(shared) ? shared.createdAt : 0);
    return true;
  }

  /** The CLI's changes to admin.db since the last poll go to the cluster. */
  private poll(): void {
    let now: Map<string, Live>;
    try {
      now = this.rows();
    } catch (err) {
      this.logger.error({ err: errText(err) }, 'cannot read the admin tokens of this data directory; retrying');
      return;
    }
    for (const row of now.values()) {
      const was = this.known.get(row.name);
      if (was === undefined || was.hash !== row.hash) this.publish(row);
    }
    for (const was of this.known.values()) if (!now.has(was.name)) this.tombstone(was.name, was.createdAt);
    this.known = now;
  }

  private tombstone(tokenName: string, createdAt: number): void {
    const revoked: Revoked = { name: tokenName, revokedAt: Math.max(Date.now(), createdAt) };
    this.entries.set(tokenName, revoked);
    this.state.write(tokenKey(tokenName), Buffer.from(JSON.stringify(revoked)));
  }

  private publish(row: Live): void {
    const { name: n, hash, createdAt, scope } = row;
    this.entries.set(n, { name: n, hash, createdAt, scope });
    this.state.write(tokenKey(n), Buffer.from(JSON.stringify({ name: n, hash, createdAt, scope })));
  }

  private rows(): Map<string, Live> {
    return new Map((this.records?.listTokenRecords() ?? []).map((r) => [r.name, { name: r.name, hash: r.hash, createdAt: r.createdAt, scope: r.scope }]));
  }
}
