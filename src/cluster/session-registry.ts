/**
 * Which node owns each client id, cluster-wide: a JetStream KV bucket (key: the client id's
 * token, value: owner node and epoch) written by compare-and-set, plus a takeover request
 * to the previous owner. Owns: claims, epochs, fences, and answering takeover requests.
 * Must not: touch sessions itself (it calls back into the broker through `TakeoverTarget`).
 *
 * Takeover: a CONNECT on node B reads the key and writes `{owner: B, epoch: e+1}` with the
 * revision it read (a concurrent claim makes one of the two writes fail, and it retries),
 * then asks the previous owner A to let go. A disconnects its connection with 0x8E and
 * drops its copy of the session. A claim that A learns of before its own session opened
 * leaves a fence: when that session opens with an older epoch, it is taken over at once.
 * So of two CONNECTs with one client id racing on two nodes, exactly one stays: the one
 * with the higher epoch.
 *
 * SECURITY: the epoch fences a stale owner: a node answers takeover only for older epochs
 * than the claim's, and a session opened under an epoch older than a fence is closed.
 */
import type { KV } from '@nats-io/kv';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from '../core/logger.js';
import type { ClusterClaim } from '../broker/ports.js';
import { ReasonCode } from '../protocol/reason-codes.js';
import { clientIdToKey, isCodecRefusal } from './subject-codec.js';

/** The KV bucket of client id owners. */
export const SESSIONS_BUCKET = 'bmq_sessions';

/** How long a claim waits for the previous owner to let go (it may be dead: its lease covers it then). */
const TAKEOVER_WAIT_MS = 1000;
/** Fences older than this are forgotten: a claim resolves within the connect timeout. */
const FENCE_TTL_MS = 60_000;
const MAX_CLAIM_ATTEMPTS = 8;

/** What the registry asks of the local broker. */
export interface TakeoverTarget {
  /** Disconnects the local connection of `clientId` (0x8E) and drops the local copy of its session. */
  release(clientId: string): void;
}

interface OwnerRecord {
  /** Owner node id. */
  n: string;
  /** Epoch: +1 at every claim. */
  e: number;
  /** When it was claimed (ms since the epoch). */
  t: number;
}

/** The takeover subject of a node. */
export function takeoverSubject(nodeId: string): string {
  return `bmc.node.${nodeId}.takeover`;
}

function parseOwner(value: Uint8Array): OwnerRecord | null {
  try {
    const v: unknown = JSON.parse(Buffer.from(value).toString('utf8'));
    if (typeof v !== 'object' || v === null) return null;
    const { n, e, t } = v as Record<string, unknown>;
    return typeof n === 'string' && typeof e === 'number' && Number.isSafeInteger(e) && typeof t === 'number' ? { n, e, t } : null;
  } catch {
    return null;
  }
}

/** A JetStream "wrong last sequence" (or create on an existing key): another claim won the race. */
function isConflict(err: unknown): boolean {
  const msg = err instanceof Error ? err.message : String(err);
  return /wrong last sequence|10071|key exists/i.test(msg);
}

export class SessionRegistry {
  /** Client ids whose session is open on this node, with the epoch it was claimed with. */
  private readonly local = new Map<string, number>();
  /** Newer claims (from other nodes) seen for client ids, for sessions still opening here. */
  private readonly fences = new Map<string, { epoch: number; at: number }>();
  private sub: Subscription | null = null;
  takeoversAnswered = 0;

  constructor(
    private readonly nc: NatsConnection,
    private readonly kv: KV,
    private readonly nodeId: string,
    private readonly target: TakeoverTarget,
    private readonly logger: Logger,
  ) {}

  /** Starts answering takeover requests for this node. */
  start(): void {
    this.sub = this.nc.subscribe(takeoverSubject(this.nodeId), {
      callback: (err, msg) => {
        if (err !== null) return;
        let req: { c?: unknown; e?: unknown };
        try {
          req = msg.json();
        } catch {
          return;
        }
        if (typeof req.c !== 'string' || typeof req.e !== 'number') return;
        this.takeover(req.c, req.e);
        msg.respond(new TextEncoder().encode('{"ok":true}'));
      },
    });
  }

  /** Another node claimed `clientId` with `epoch`. */
  private takeover(clientId: string, epoch: number): void {
    this.fence(clientId, epoch);
    const held = this.local.get(clientId);
    if (held !== undefined && held >= epoch) return; // ours is newer: a stale request
    this.takeoversAnswered++;
    this.target.release(clientId);
  }

  private fence(clientId: string, epoch: number): void {
    const now = Date.now();
    const known = this.fences.get(clientId);
    if (known === undefined || known.epoch < epoch) this.fences.set(clientId, { epoch, at: now });
    // Forget old fences (amortized: a sweep when the map has grown).
    if (this.fences.size > 1024 && this.fences.size % 1024 === 0) {
      for (const [id, f] of this.fences) if (now - f.at > FENCE_TTL_MS) this.fences.delete(id);
    }
  }

  /** Claims `clientId` for this node (compare-and-set), and tells a previous owner elsewhere to let go. */
  async claim(clientId: string): Promise<ClusterClaim> {
    const key = clientIdToKey(clientId);
    if (isCodecRefusal(key)) return { ok: false, reasonCode: ReasonCode.ClientIdentifierNotValid, reason: `client id refused by the cluster: ${key.message}` };
    for (let attempt = 0; attempt < MAX_CLAIM_ATTEMPTS; attempt++) {
      const entry = await this.kv.get(key);
      const previous = entry !== null && entry.operation === 'PUT' ? parseOwner(entry.value) : null;
      const epoch = (previous?.e ?? 0) + 1;
      const value = JSON.stringify({ n: this.nodeId, e: epoch, t: Date.now() } satisfies OwnerRecord);
      try {
        if (entry === null) await this.kv.create(key, value);
        else await this.kv.update(key, value, entry.revision);
      } catch (err) {
        if (isConflict(err)) continue;
        throw err;
      }
      if (previous !== null && previous.n !== this.nodeId) await this.askToLetGo(previous.n, clientId, epoch);
      return { ok: true, epoch };
    }
    return { ok: false, reasonCode: ReasonCode.ServerBusy, reason: 'the client id is being claimed on several nodes at once; try again' };
  }

  private async askToLetGo(node: string, clientId: string, epoch: number): Promise<void> {
    try {
      await this.nc.request(takeoverSubject(node), JSON.stringify({ c: clientId, e: epoch }), { timeout: TAKEOVER_WAIT_MS });
    } catch (err) {
      // No answer: the node is gone or stuck. Its connection (if any) is fenced by the epoch.
      this.logger.info({ clientId, previousNode: node, err: err instanceof Error ? err.message : String(err) }, 'previous owner did not answer the takeover');
    }
  }

  /** The session claimed with `epoch` opened here; false when a newer claim elsewhere fenced it. */
  opened(clientId: string, epoch: number): boolean {
    const fence = this.fences.get(clientId);
    if (fence !== undefined && fence.epoch > epoch) return false;
    this.local.set(clientId, epoch);
    return true;
  }

  released(clientId: string): void {
    this.local.delete(clientId);
  }

  stop(): void {
    this.sub?.unsubscribe();
    this.sub = null;
  }
}
