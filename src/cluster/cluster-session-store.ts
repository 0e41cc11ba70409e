/**
 * The `SessionStore` of a cluster node: persistent sessions kept in the sessions bucket
 * (through the registry, compare-and-set on each key), so any node can resume them. Owns:
 * turning the broker's store calls into each session's durable state, and writing it in
 * batches (one write per changed session per turn of the event loop); `afterFlush` calls
 * back once everything recorded before it is written. Must not: hold messages. A message
 * is in the cluster's stream already; a session records only how far it got there
 * (`cursor`) and its QoS 2 exchanges in progress, and a new owner replays the stream
 * after the cursor.
 *
 * Cursor: the stream sequence below which every message for the session is done. With
 * messages in flight or queued it is just below the oldest of them; otherwise the newest
 * seen (or, for a session that has seen none, the stream's end when it was first written).
 * A crash loses at most the acknowledgements since the last write: those messages are
 * delivered again (QoS 1 with DUP; QoS 2 with its recorded packet id, so once).
 */
import type { OutboundState, PersistedState, SessionRecord, SessionStore, StoredOutbound } from '../broker/ports.js';
import type { Logger } from '../core/logger.js';
import type { SessionRegistry } from './session-registry.js';
import type { DurableQos2, DurableSession } from './session-record.js';

/** The pause after a failed write before the next batch. */
const RETRY_PAUSE_MS = 500;

interface Pending {
  streamSeq: number;
  qos: number;
  state: OutboundState;
  packetId: number;
}

interface ClientState {
  record: SessionRecord | null;
  pending: Map<number, Pending>;
  incomingQos2: Set<number>;
  /** Highest stream sequence seen for this session. */
  maxSeen: number;
  /** The cursor the session started from (adopted, or the stream's end when first written); -1 until known. */
  base: number;
}

export interface ClusterSessionStoreOptions {
  registry: SessionRegistry;
  /** The stream's last sequence now (the cursor of a session that has seen nothing yet). */
  streamEnd(): Promise<number>;
  /** This node lost `clientId` to another node while writing. */
  onLost(clientId: string): void;
  logger: Logger;
}

export class ClusterSessionStore implements SessionStore {
  private readonly clients = new Map<string, ClientState>();
  private readonly dirtyIds = new Set<string>();
  private waiters: Array<() => void> = [];
  private scheduled = false;
  private inFlight: Promise<void> | null = null;
  private seq = 1;
  /** No batch before this time (ms since the epoch): the pause after a failed write. */
  private retryAt = 0;
  writeFailures = 0;

  constructor(private readonly opts: ClusterSessionStoreOptions) {}

  /** Sessions live in the cluster and are resumed at CONNECT (a claim), not loaded at start. */
  load(): PersistedState {
    return { sessions: [], outbound: [], incomingQos2: new Map(), retained: [] };
  }

  /**
   * A session resumed from the cluster starts from the record and cursor its previous
   * owner wrote (never from an empty record: a write before the broker saves its own
   * would otherwise erase the session in the bucket).
   */
  adopt(record: SessionRecord, durable: DurableSession): void {
    this.clients.set(record.clientId, { record, pending: new Map(), incomingQos2: new Set(durable.incomingQos2), maxSeen: durable.cursor, base: durable.cursor });
  }

  /** Forgets a client id another node owns now (nothing more is written for it). */
  forget(clientId: string): void {
    this.clients.delete(clientId);
    this.dirtyIds.delete(clientId);
  }

  private state(clientId: string): ClientState {
    let st = this.clients.get(clientId);
    if (st === undefined) {
      st = { record: null, pending: new Map(), incomingQos2: new Set(), maxSeen: 0, base: -1 };
      this.clients.set(clientId, st);
    }
    return st;
  }

  private touch(clientId: string): void {
    this.dirtyIds.add(clientId);
    if (this.scheduled) return;
    this.scheduled = true;
    // After a failed write, the next batch waits for the pause (no retry storm while NATS is in trouble).
    const wait = this.retryAt - Date.now();
    const run = (): void => {
      this.scheduled = false;
      void this.flushNow();
    };
    if (wait > 0) setTimeout(run, wait).unref();
    else setImmediate(run);
  }

  saveSession(record: SessionRecord): void {
    this.state(record.clientId).record = record;
    this.touch(record.clientId);
  }

  deleteSession(clientId: string): void {
    const st = this.clients.get(clientId);
    if (st === undefined) return;
    st.record = null;
    st.pending.clear();
    st.incomingQos2.clear();
    this.touch(clientId);
  }

  addOutbound(entry: StoredOutbound): void {
    const st = this.state(entry.clientId);
    const streamSeq = entry.message.streamSeq ?? 0;
    if (streamSeq > st.maxSeen) st.maxSeen = streamSeq;
    // A message that is not in the stream (a retained message sent at SUBSCRIBE) cannot be
    // replayed: it is delivered from memory only.
    if (streamSeq === 0) return;
    st.pending.set(entry.seq, { streamSeq, qos: entry.qos, state: entry.state, packetId: entry.packetId });
    this.touch(entry.clientId);
  }

  updateOutbound(clientId: string, seq: number, state: OutboundState, packetId: number): void {
    const p = this.clients.get(clientId)?.pending.get(seq);
    if (p === undefined) return;
    p.state = state;
    p.packetId = packetId;
    // Only QoS 2 exchanges are written: their packet id makes a resend arrive once.
    if (p.qos === 2) this.touch(clientId);
  }

  removeOutbound(clientId: string, seq: number): void {
    if (this.clients.get(clientId)?.pending.delete(seq) === true) this.touch(clientId);
  }

  addIncomingQos2(clientId: string, packetId: number): void {
    this.state(clientId).incomingQos2.add(packetId);
    this.touch(clientId);
  }

  removeIncomingQos2(clientId: string, packetId: number): void {
    if (this.clients.get(clientId)?.incomingQos2.delete(packetId) === true) this.touch(clientId);
  }

  nextSeq(): number {
    return this.seq++;
  }

  get dirty(): boolean {
    return this.dirtyIds.size > 0 || this.inFlight !== null;
  }

  afterFlush(cb: () => void): void {
    if (!this.dirty) {
      queueMicrotask(cb);
      return;
    }
    this.waiters.push(cb);
  }

  /** Starts writing now; `drain` waits for it. */
  flush(): void {
    void this.flushNow();
  }

  /** Resolves once everything recorded so far is written (or failed). */
  async drain(): Promise<void> {
    while (this.dirty) {
      await new Promise<void>((resolve) => this.afterFlush(resolve));
    }
  }

  /** Writes the state of `clientId` now (at takeover, before another node reads it). */
  async flushClient(clientId: string): Promise<void> {
    if (this.dirtyIds.delete(clientId)) await this.write(clientId);
    // A batch in flight may hold an older write for it: that one lands first.
    await this.opts.registry.settled(clientId);
  }

  private async flushNow(): Promise<void> {
    // One batch at a time: the running one starts the next when it ends.
    if (this.inFlight !== null) return;
    if (this.dirtyIds.size === 0) {
      this.release();
      return;
    }
    const ids = [...this.dirtyIds];
    this.dirtyIds.clear();
    const waiters = this.waiters;
    this.waiters = [];
    const failuresBefore = this.writeFailures;
    const batch = Promise.all(ids.map((id) => this.write(id))).then(() => undefined);
    this.inFlight = batch;
    await batch;
    this.inFlight = null;
    if (this.writeFailures !== failuresBefore) {
      // A failed write is retried after a pause (NATS may be away), with its waiters still waiting.
      this.waiters.unshift(...waiters);
      this.retryAt = Date.now() + RETRY_PAUSE_MS;
      setTimeout(() => void this.flushNow(), RETRY_PAUSE_MS).unref();
      return;
    }
    for (const w of waiters) w();
    if (this.dirtyIds.size > 0) void this.flushNow();
    else this.release();
  }

  /** Calls back every waiter (nothing is waiting to be written). */
  private release(): void {
    const rest = this.waiters;
    this.waiters = [];
    for (const w of rest) w();
  }

  private async write(clientId: string): Promise<void> {
    const st = this.clients.get(clientId);
    if (st === undefined) return;
    try {
      let session: DurableSession | null = null;
      if (st.record !== null) {
        if (st.base < 0) st.base = await this.opts.streamEnd();
        session = durable(st);
      }
      await this.opts.registry.write(clientId, { session }, () => this.opts.onLost(clientId));
      if (st.record === null && this.clients.get(clientId) === st) this.clients.delete(clientId);
    } catch (err) {
      // Kept dirty: written again with the next batch (acknowledgements waiting on it wait on).
      this.writeFailures++;
      this.dirtyIds.add(clientId);
      this.opts.logger.error({ clientId, err: err instanceof Error ? err.message : String(err) }, 'cluster session write failed; retried with the next change');
    }
  }

  close(): void {
    // Nothing held open: the registry's connection belongs to the cluster node.
  }
}

/** The durable form of a client's state (the record is present). */
function durable(st: ClientState): DurableSession {
  const rec = st.record!;
  let oldest = Infinity;
  const outboundQos2: DurableQos2[] = [];
  for (const p of st.pending.values()) {
    if (p.streamSeq < oldest) oldest = p.streamSeq;
    if (p.qos === 2 && p.packetId !== 0 && p.state !== 'queued') outboundQos2.push({ streamSeq: p.streamSeq, packetId: p.packetId, state: p.state });
  }
  const cursor = oldest !== Infinity ? oldest - 1 : Math.max(st.base, st.maxSeen);
  return {
    protocolVersion: rec.protocolVersion,
    expiryInterval: rec.expiryInterval,
    disconnectedAt: rec.disconnectedAt,
    subscriptions: rec.subscriptions,
    ...(rec.identity !== undefined ? { identity: rec.identity } : {}),
    cursor,
    incomingQos2: [...st.incomingQos2],
    outboundQos2,
  };
}
