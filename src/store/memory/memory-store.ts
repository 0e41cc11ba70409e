/**
 * In-memory SessionStore + RetainStore. Owns: a copy of the state `load()` returns, kept in
 * plain maps, so a second broker instance built over the same MemoryStore object resumes
 * the sessions of the first (tests, single-process restarts of the broker core).
 * Must not: pretend to be durable. Nothing survives the process; `afterFlush` only keeps
 * the asynchronous shape of the durable adapters (callbacks on the next `setImmediate`).
 *
 * Records and arrays are copied on the way in and out, so callers may mutate what they
 * passed or got back. Messages (and their payload Buffers) are shared: the broker treats
 * a Message as an immutable value.
 */
import type { Message } from '../../broker/message.js';
import type {
  OutboundState,
  PersistedState,
  RetainStore,
  SessionRecord,
  SessionStore,
  StoredOutbound,
} from '../../broker/ports.js';
import { runAll } from '../callbacks.js';

export class MemoryStore implements SessionStore, RetainStore {
  private readonly sessions = new Map<string, SessionRecord>();
  /** clientId → seq → entry. */
  private readonly outbound = new Map<string, Map<number, StoredOutbound>>();
  private readonly incomingQos2 = new Map<string, Set<number>>();
  private readonly retained = new Map<string, Message>();
  private seq = 1;
  private callbacks: Array<() => void> = [];
  private scheduled: ReturnType<typeof setImmediate> | undefined;

  load(): PersistedState {
    const outbound: StoredOutbound[] = [];
    for (const perClient of this.outbound.values()) {
      for (const entry of perClient.values()) outbound.push(copyOutbound(entry));
    }
    outbound.sort((a, b) => a.seq - b.seq);
    const incomingQos2 = new Map<string, number[]>();
    for (const [clientId, ids] of this.incomingQos2) incomingQos2.set(clientId, [...ids]);
    return {
      sessions: [...this.sessions.values()].map(copySession),
      outbound,
      incomingQos2,
      retained: [...this.retained.values()],
    };
  }

  saveSession(record: SessionRecord): void {
    this.sessions.set(record.clientId, copySession(record));
  }

  deleteSession(clientId: string): void {
    this.sessions.delete(clientId);
    this.outbound.delete(clientId);
    this.incomingQos2.delete(clientId);
  }

  addOutbound(entry: StoredOutbound): void {
    let perClient = this.outbound.get(entry.clientId);
    if (perClient === undefined) {
      perClient = new Map();
      this.outbound.set(entry.clientId, perClient);
    }
    perClient.set(entry.seq, copyOutbound(entry));
    if (entry.seq >= this.seq) this.seq = entry.seq + 1;
  }

  updateOutbound(clientId: string, seq: number, state: OutboundState, packetId: number): void {
    const entry = this.outbound.get(clientId)?.get(seq);
    if (entry === undefined) return;
    entry.state = state;
    entry.packetId = packetId;
  }

  removeOutbound(clientId: string, seq: number): void {
    const perClient = this.outbound.get(clientId);
    if (perClient === undefined) return;
    perClient.delete(seq);
    if (perClient.size === 0) this.outbound.delete(clientId);
  }

  addIncomingQos2(clientId: string, packetId: number): void {
    let ids = this.incomingQos2.get(clientId);
    if (ids === undefined) {
      ids = new Set();
      this.incomingQos2.set(clientId, ids);
    }
    ids.add(packetId);
  }

  removeIncomingQos2(clientId: string, packetId: number): void {
    const ids = this.incomingQos2.get(clientId);
    if (ids === undefined) return;
    ids.delete(packetId);
    if (ids.size === 0) this.incomingQos2.delete(clientId);
  }

  setRetained(topic: string, message: Message | null): void {
    if (message === null) this.retained.delete(topic);
    else this.retained.set(topic, message);
  }

  nextSeq(): number {
    return this.seq++;
  }

  /** True while afterFlush callbacks are waiting for their turn. */
  get dirty(): boolean {
    return this.callbacks.length > 0;
  }

  afterFlush(cb: () => void): void {
    this.callbacks.push(cb);
    this.scheduled ??= setImmediate(() => {
      this.scheduled = undefined;
      this.runCallbacks();
    });
  }

  /** Runs the waiting afterFlush callbacks now. */
  flush(): void {
    if (this.scheduled !== undefined) {
      clearImmediate(this.scheduled);
      this.scheduled = undefined;
    }
    this.runCallbacks();
  }

  /** Runs the waiting callbacks. The state stays: the object may back another broker. */
  close(): void {
    this.flush();
  }

  private runCallbacks(): void {
    const callbacks = this.callbacks;
    this.callbacks = [];
    runAll(callbacks);
  }
}

function copySession(record: SessionRecord): SessionRecord {
  return {
    clientId: record.clientId,
    protocolVersion: record.protocolVersion,
    expiryInterval: record.expiryInterval,
    disconnectedAt: record.disconnectedAt,
    subscriptions: record.subscriptions.map((s) => ({ ...s })),
    ...(record.identity !== undefined ? { identity: structuredClone(record.identity) } : {}),
  };
}

function copyOutbound(entry: StoredOutbound): StoredOutbound {
  return {
    seq: entry.seq,
    clientId: entry.clientId,
    message: entry.message,
    qos: entry.qos,
    retainFlag: entry.retainFlag,
    subscriptionIds: [...entry.subscriptionIds],
    state: entry.state,
    packetId: entry.packetId,
  };
}
