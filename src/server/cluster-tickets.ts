/**
 * One TLS session ticket key for the whole cluster (issue 12): a device that resumed its
 * TLS session with one node resumes it with any other, so a node's death or a load
 * balancer's choice does not cost every device a full handshake. The key lives in the
 * shared state bucket as `tls.ticketkey`; each node keeps it in its ticket key file(s),
 * which its listeners already follow (tls-tickets.ts, tls-context.ts). Owns: the entry's
 * wire form and validation, and the rule that makes the nodes agree: of two keys, the one
 * made later wins (ties: the greater key bytes), whoever saw it first. A node that holds a
 * key newer than the bucket's (it rotated, or it just joined with a newer one) writes it;
 * a node that sees a newer one in the bucket installs it in its files. Must not: apply a
 * key to a TLS server (the listeners' context managers do) or rotate on its own schedule
 * beyond what `TicketKeyStore` does.
 *
 * SECURITY: the ticket key decrypts recorded TLS 1.2 resumptions and forges tickets, so
 * the bucket holding it must be as private as the key file: NATS with credentials and TLS
 * (the config refuses a non-loopback NATS without them). An entry must carry exactly 48
 * bytes and a creation time no more than an hour ahead of this node's clock (a far-future
 * time would stop rotation for good); one that fails is logged and ignored.
 */
import { join, resolve } from 'node:path';
import { z } from 'zod';
import type { SharedKind, SharedState } from '../cluster/shared-state.js';
import type { BastionConfig } from '../core/config.js';
import type { Logger } from '../core/logger.js';
import { TICKET_KEY_BYTES, TicketKeyStore } from '../transport/tls-tickets.js';

export const TICKET_PREFIX = 'tls';
/** The one key of this kind. */
export const TICKET_ENTRY = `${TICKET_PREFIX}.ticketkey`;
/** How far ahead of this node's clock a key's creation time may be (clock skew between machines). */
const MAX_AHEAD_MS = 3_600_000;

interface SharedKey {
  createdAt: number;
  key: Buffer;
}

const entrySchema = z
  .object({
    v: z.literal(1),
    createdAt: z.number().int().nonnegative(),
    key: z.string().regex(new RegExp(`^[0-9a-f]{${TICKET_KEY_BYTES * 2}}$`)),
  })
  .strict();

/** Whether `a` wins over `b`: made later, or at the same time with greater bytes. */
function supersedes(a: SharedKey, b: SharedKey): boolean {
  if (a.createdAt !== b.createdAt) return a.createdAt > b.createdAt;
  return Buffer.compare(a.key, b.key) > 0;
}

function encode(k: SharedKey): Uint8Array {
  return Buffer.from(JSON.stringify({ v: 1, createdAt: k.createdAt, key: k.key.toString('hex') }));
}

/** The entry's key, or why it is refused. */
export function decodeTicketEntry(bytes: Uint8Array, now: number): SharedKey | string {
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    return 'not JSON';
  }
  const parsed = entrySchema.safeParse(raw);
  if (!parsed.success) return parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
  if (parsed.data.createdAt > now + MAX_AHEAD_MS) return 'made more than an hour in the future';
  return { createdAt: parsed.data.createdAt, key: Buffer.from(parsed.data.key, 'hex') };
}

/**
 * The ticket key files this node's listeners use (each listener's `keyFile`, else the data
 * directory's), with the shortest rotation period configured for each.
 */
export function ticketKeyFiles(config: BastionConfig, baseDir: string, dataDir: string): Map<string, number> {
  const files = new Map<string, number>();
  for (const l of config.listeners) {
    const st = l.tls?.sessionTickets;
    if (st === undefined || !st.enabled) continue;
    const file = st.keyFile !== undefined ? resolve(baseDir, st.keyFile) : join(dataDir, 'tls-ticket-keys');
    files.set(file, Math.min(files.get(file) ?? Infinity, st.rotateHours));
  }
  return files;
}

export class ClusterTicketKeys implements SharedKind {
  private readonly stores: TicketKeyStore[] = [];
  private readonly offs: Array<() => void> = [];
  /** The bucket's key as last read (null: none yet). */
  private shared: SharedKey | null = null;
  private state: SharedState | null = null;

  constructor(
    files: Map<string, number>,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {
    for (const [file, rotateHours] of files) {
      const store = TicketKeyStore.shared(file, rotateHours, logger);
      // A rotation here (or by another process on the file) goes out to the cluster. The
      // store is the one the listeners on the file hold, so what is installed here reaches
      // their TLS servers at once.
      this.offs.push(store.onChange(() => this.offer()));
      this.stores.push(store);
    }
  }

  /** Before the shared state's start; a node whose listeners use no tickets shares none. */
  register(state: SharedState): void {
    if (this.stores.length === 0) return;
    this.state = state;
    state.register(TICKET_PREFIX, this);
  }

  apply(key: string, value: Uint8Array | null): void {
    if (key !== TICKET_ENTRY) throw new Error('not a key of this kind');
    if (value === null) {
      this.shared = null;
      return;
    }
    const decoded = decodeTicketEntry(value, this.now());
    // A refused entry leaves the bucket with no usable key: settled() writes ours over it.
    this.shared = typeof decoded === 'string' ? null : decoded;
    if (typeof decoded === 'string') throw new Error(decoded);
  }

  /** After each read or change: the newer key wins, here (installed) or in the bucket (written). */
  settled(): void {
    const shared = this.shared;
    for (const store of this.stores) {
      store.refresh();
      if (shared !== null && supersedes(shared, { createdAt: store.createdAt, key: store.key })) {
        store.install(shared.createdAt, shared.key);
        this.logger.info({ file: store.file, createdAt: new Date(shared.createdAt).toISOString() }, 'TLS session ticket key from the cluster installed');
      }
    }
    this.offer();
  }

  stop(): void {
    for (const off of this.offs) off();
    for (const store of this.stores) store.close();
  }

  /** Writes this node's newest key when it supersedes the bucket's (or the bucket has none). */
  private offer(): void {
    if (this.state === null) return;
    let best: SharedKey | null = null;
    for (const store of this.stores) {
      const mine = { createdAt: store.createdAt, key: store.key };
      if (best === null || supersedes(mine, best)) best = mine;
    }
    if (best === null || (this.shared !== null && !supersedes(best, this.shared))) return;
    this.shared = best;
    this.state.write(TICKET_ENTRY, encode(best));
  }
}
