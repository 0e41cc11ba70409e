/**
 * Which node owns each client id, cluster-wide, with the durable state that moves with it:
 * a JetStream KV bucket (key: the client id's token, value: session-record.ts) written only
 * by compare-and-set, plus a takeover request to the previous owner. Owns: claims, epochs,
 * fences, the revision of every key this node owns, the writes of the durable session and
 * will, and answering takeover requests. Must not: touch sessions itself (it calls the
 * broker through `TakeoverTarget`).
 *
 * Takeover: a CONNECT on node B reads the key; when another node A owns it, B first asks A
 * to let go (A disconnects its connection with 0x8E, writes the session's last state,
 * drops its copy and answers), reads the key again, then writes `{owner: B, epoch: e+1}`
 * with the revision it read. A concurrent claim makes one of two writes fail; the loser
 * starts over. The request carries the epoch B is about to take: A keeps it as a fence, so
 * a session A was still opening under an older epoch is taken over as soon as it opens.
 * So of CONNECTs with one client id racing on several nodes, exactly one stays.
 *
 * SECURITY: the revision fences a stale owner: every write is a compare-and-set on the
 * revision this node last wrote, so after another node's claim nothing this node writes
 * lands; a failed write means ownership was lost, and the local copy is released.
 */
import type { KV } from '@nats-io/kv';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from '../core/logger.js';
import { ReasonCode } from '../protocol/reason-codes.js';
import { clientIdToKey, isCodecRefusal } from './subject-codec.js';
import { encodeOwnerRecord, ownerRecordOf, type DurableSession, type DurableWill, type OwnerRecord } from './session-record.js';

/** The KV bucket of client id owners and their durable sessions. */
export const SESSIONS_BUCKET = 'bmq_sessions';

/** How long a claim waits for the previous owner to let go (it may be dead: then its last written state is used). */
const TAKEOVER_WAIT_MS = 1500;
/** Fences older than this are forgotten: a claim resolves within the connect timeout. */
const FENCE_TTL_MS = 60_000;
const MAX_CLAIM_ATTEMPTS = 8;

/** What the registry asks of the local broker. */
export interface TakeoverTarget {
  /**
   * Another node takes `clientId`: disconnect its local connection (0x8E), write its last
   * state, and drop the local copy. Resolves once the state is written.
   */
  release(clientId: string): Promise<void>;
}

/** A successful claim: the epoch taken and the record as the previous owner left it. */
export interface ClaimResult {
  epoch: number;
  /** The previous record (null on a clean start: nothing carries over). */
  previous: OwnerRecord | null;
  /** The will of a connection whose node never let go of it (dead), now this node's to publish. */
  orphanWill: DurableWill | null;
}

/** The takeover subject of a node. */
export function takeoverSubject(nodeId: string): string {
  return `bmc.node.${nodeId}.takeover`;
}

/** A JetStream "wrong last sequence" (or create on an existing key): another writer won the race. */
export function isConflict(err: unknown): boolean {
  const msg = err instanceof Error ? err.message : String(err);
  return /wrong last sequence|10071|key exists/i.test(msg);
}

interface Owned {
  key: string;
  revision: number;
  record: OwnerRecord;
  /** Writes are serialized per key: each one compares against the revision of the one before. */
  writing: Promise<void>;
}

export class SessionRegistry {
  /** Client ids this node owns, with the revision it last wrote. */
  private readonly owned = new Map<string, Owned>();
  /** Client ids whose session is open on this node, with the epoch it was claimed with. */
  private readonly local = new Map<string, number>();
  /** Newer claims (from other nodes) seen for client ids, for sessions still opening here. */
  private readonly fences = new Map<string, { epoch: number; at: number }>();
  private sub: Subscription | null = null;
  /** Whether a node's lease expired (node-leases.ts): a dead node is not asked to let go. */
  presumedDead: (node: string) => boolean = () => false;
  takeoversAnswered = 0;
  /** Writes refused because another node claimed the client id meanwhile. */
  fencedWrites = 0;

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
        void this.takeover(req.c, req.e).finally(() => msg.respond('{"ok":true}'));
      },
    });
  }

  /** Another node is about to claim `clientId` with `epoch`. */
  private async takeover(clientId: string, epoch: number): Promise<void> {
    this.fence(clientId, epoch);
    const held = this.local.get(clientId);
    if (held !== undefined && held >= epoch) return; // ours is newer: a stale request
    if (!this.owned.has(clientId) && held === undefined) return;
    this.takeoversAnswered++;
    try {
      await this.target.release(clientId);
    } catch (err) {
      this.logger.warn({ clientId, err: err instanceof Error ? err.message : String(err) }, 'session state not written at takeover');
    }
    this.owned.delete(clientId);
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

  /**
   * Claims `clientId` for this node (compare-and-set), after a previous owner elsewhere let
   * go. The durable session carries over only with `keepSession` (not a clean start).
   */
  async claim(clientId: string, keepSession: boolean): Promise<ClaimResult | { refused: string; reasonCode: number }> {
    const key = clientIdToKey(clientId);
    if (isCodecRefusal(key)) return { refused: `client id refused by the cluster: ${key.message}`, reasonCode: ReasonCode.ClientIdentifierNotValid };
    // Writes of a previous claim of ours finish first: their revisions are what we compare against.
    await this.owned.get(clientId)?.writing;
    for (let attempt = 0; attempt < MAX_CLAIM_ATTEMPTS; attempt++) {
      let entry = await this.kv.get(key);
      let previous = ownerRecordOf(entry);
      if (previous !== null && previous.node !== this.nodeId && !this.presumedDead(previous.node)) {
        const asked = previous;
        await this.askToLetGo(asked.node, clientId, asked.epoch + 1);
        // What it wrote while letting go.
        entry = await this.kv.get(key);
        previous = ownerRecordOf(entry);
        // Someone claimed meanwhile (the owner itself again, or a third node): the node we
        // asked may not be the owner any more, so ask whoever is, with a newer epoch.
        if (previous !== null && (previous.epoch !== asked.epoch || previous.node !== asked.node) && previous.node !== this.nodeId) continue;
      }
      const kept = keepSession ? previous?.session : undefined;
      const record: OwnerRecord = { node: this.nodeId, epoch: (previous?.epoch ?? 0) + 1, claimedAt: Date.now(), ...(kept !== undefined ? { session: kept } : {}) };
      let revision: number;
      try {
        revision = entry === null ? await this.kv.create(key, encodeOwnerRecord(record)) : await this.kv.update(key, encodeOwnerRecord(record), entry.revision);
      } catch (err) {
        if (isConflict(err)) continue;
        throw err;
      }
      this.owned.set(clientId, { key, revision, record, writing: Promise.resolve() });
      // A will still recorded for a connection on another node: that connection ended without
      // its node letting go (the node is dead or did not answer).
      const orphanWill = previous !== null && previous.node !== this.nodeId ? (previous.will ?? null) : null;
      return { epoch: record.epoch, previous: keepSession ? previous : null, orphanWill };
    }
    return { refused: 'the client id is being claimed on several nodes at once; try again', reasonCode: ReasonCode.ServerBusy };
  }

  private async askToLetGo(node: string, clientId: string, epoch: number): Promise<void> {
    try {
      await this.nc.request(takeoverSubject(node), JSON.stringify({ c: clientId, e: epoch }), { timeout: TAKEOVER_WAIT_MS });
    } catch (err) {
      // No answer: the node is gone or stuck. What it wrote last is the session's state.
      this.logger.info({ clientId, previousNode: node, err: err instanceof Error ? err.message : String(err) }, 'previous owner did not answer the takeover');
    }
  }

  /**
   * Writes the durable session (null: none any more) and/or the will of a client id this
   * node owns. Serialized per key; a write after another node's claim is refused by the
   * compare-and-set, and `onLost` runs (this node no longer owns the client id).
   */
  write(clientId: string, change: { session?: DurableSession | null; will?: DurableWill | null }, onLost: () => void): Promise<void> {
    const owned = this.owned.get(clientId);
    if (owned === undefined) return Promise.resolve();
    const next = owned.writing.then(async () => {
      if (this.owned.get(clientId) !== owned) return;
      const record: OwnerRecord = { ...owned.record };
      if (change.session !== undefined) {
        if (change.session === null) delete record.session;
        else record.session = change.session;
      }
      if (change.will !== undefined) {
        if (change.will === null) delete record.will;
        else record.will = change.will;
      }
      try {
        owned.revision = await this.kv.update(owned.key, encodeOwnerRecord(record), owned.revision);
        owned.record = record;
      } catch (err) {
        if (!isConflict(err)) throw err;
        // A write that timed out (a JetStream election) may have landed after all: the key
        // then still names this node at this epoch, at a newer revision. Only another
        // node's claim means the client id is lost.
        const now = await this.kv.get(owned.key);
        const current = ownerRecordOf(now);
        if (now !== null && current !== null && current.node === this.nodeId && current.epoch === owned.record.epoch) {
          owned.revision = await this.kv.update(owned.key, encodeOwnerRecord(record), now.revision);
          owned.record = record;
          return;
        }
        this.fencedWrites++;
        this.owned.delete(clientId);
        onLost();
      }
    });
    owned.writing = next.catch(() => undefined);
    return next;
  }

  /** Settles once every write queued for `clientId` so far has landed (or failed). */
  async settled(clientId: string): Promise<void> {
    await this.owned.get(clientId)?.writing;
  }

  /** True while this node owns `clientId` (its writes land). */
  owns(clientId: string): boolean {
    return this.owned.has(clientId);
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

  /**
   * Forgets a client id whose session ended here (memory stays bounded by the live client
   * ids), once the writes queued for it landed. Its record stays in the bucket: a later
   * claim elsewhere finds this node no longer holds it and does not wait for an answer.
   */
  disown(clientId: string, stillHere: () => boolean): void {
    const owned = this.owned.get(clientId);
    if (owned === undefined) return;
    void owned.writing.then(() => {
      if (this.owned.get(clientId) === owned && !this.local.has(clientId) && !stillHere()) this.owned.delete(clientId);
    });
  }

  stop(): void {
    this.sub?.unsubscribe();
    this.sub = null;
  }
}
