/**
 * SessionStore + RetainStore over SQLite (better-sqlite3, WAL). Owns: the database file,
 * group commit, and the row encodings. Must not: decide anything about sessions (expiry,
 * takeover): `load()` returns rows as stored.
 *
 * Group commit: every write is recorded synchronously in an in-memory list; one
 * `setImmediate` per event-loop turn runs the whole list in a single transaction with
 * statements prepared once. `afterFlush` callbacks registered during the turn run after
 * that transaction has committed, so an acknowledgement that waits on them never covers a
 * write that a `kill -9` could lose. (With `synchronous=NORMAL` a committed transaction
 * survives a process crash; `FULL` also survives power loss, at a cost.)
 *
 * Coalescing: an outbound message added and then updated or removed within one batch is
 * updated in the pending insert or dropped with it. Safe because sequence numbers are
 * unique per store, so a pending insert is the only row the removal could touch.
 *
 * Failure: a transaction that fails (disk full, I/O error) rolls back; the batch stays
 * pending, its afterFlush callbacks do not run, and `flush()` throws a BastionError
 * ERR_STORE_WRITE. A background flush reports it to `onError`, or, without one, throws
 * it from the immediate (an uncaught exception: loud, never silent).
 */
import Database from 'better-sqlite3';
import type { Message } from '../../broker/message.js';
import type {
  OutboundState,
  PersistedState,
  RetainStore,
  SessionRecord,
  SessionStore,
  StoredOutbound,
} from '../../broker/ports.js';
import { BastionError } from '../../core/errors.js';
import { runAll } from '../callbacks.js';
import {
  decodeState,
  decodeSubscriptionIds,
  decodeSubscriptions,
  identityField,
  encodeProperties,
  encodeState,
  encodeSubscriptionIds,
  encodeSubscriptions,
  toProtocolVersion,
  toQos,
} from './encoding.js';
import { migrate } from './migrations.js';
import { prepare, rowToMessage, type Statements } from './statements.js';
import { createCommit, OUT_PACKET_ID, OUT_STATE, type AddOutboundOp, type Op } from './write-ops.js';

export interface SqliteStoreOptions {
  /** Database file. Created (with its schema) when missing. */
  path: string;
  /** NORMAL (default) survives a process crash; FULL also survives power loss. */
  synchronous?: 'NORMAL' | 'FULL';
  /**
   * Receives the ERR_STORE_WRITE error of a background (per-turn) flush. Without it the
   * error is thrown from the immediate and crashes the process.
   */
  onError?: (err: BastionError) => void;
}

export class SqliteStore implements SessionStore, RetainStore {
  private readonly db: Database.Database;
  private readonly stmt: Statements;
  private readonly commit: (ops: ReadonlyArray<Op | null>) => void;
  private readonly onError: ((err: BastionError) => void) | undefined;
  /** Writes recorded since the last commit, in order; null where coalesced away. */
  private ops: Array<Op | null> = [];
  /** seq → pending insert in `ops`, for coalescing. */
  private pendingAdds = new Map<number, AddOutboundOp>();
  private callbacks: Array<() => void> = [];
  private scheduled: ReturnType<typeof setImmediate> | undefined;
  private seq: number;
  private closed = false;

  constructor(options: SqliteStoreOptions) {
    this.onError = options.onError;
    const synchronous = options.synchronous ?? 'NORMAL';
    if (synchronous !== 'NORMAL' && synchronous !== 'FULL') {
      throw new BastionError('ERR_STORE_OPEN', `invalid synchronous mode: ${String(synchronous)}`);
    }
    let db: Database.Database | undefined;
    try {
      db = new Database(options.path);
      db.pragma('journal_mode = WAL');
      db.pragma(`synchronous = ${synchronous}`);
      migrate(db);
      this.stmt = prepare(db);
      const max = db.prepare<[], { m: number | null }>('SELECT MAX(seq) AS m FROM outbound').get();
      this.seq = (max?.m ?? 0) + 1;
    } catch (err) {
      db?.close();
      if (err instanceof BastionError) throw err;
      throw wrap('ERR_STORE_OPEN', `cannot open session store ${options.path}`, err);
    }
    this.db = db;
    this.commit = createCommit(db, this.stmt);
  }

  /** Commits pending writes, then reads everything back. Nothing is filtered. */
  load(): PersistedState {
    this.flush();
    const sessions = this.stmt.loadSessions.all().map(
      (r): SessionRecord => ({
        clientId: r.client_id,
        protocolVersion: toProtocolVersion(r.protocol_version),
        expiryInterval: r.expiry_interval,
        disconnectedAt: r.disconnected_at,
        subscriptions: decodeSubscriptions(r.subscriptions),
        ...identityField(r.identity),
      }),
    );
    const outbound = this.stmt.loadOutbound.all().map(
      (r): StoredOutbound => ({
        seq: r.seq,
        clientId: r.client_id,
        message: rowToMessage(r),
        qos: toQos(r.granted_qos),
        retainFlag: r.retain_flag !== 0,
        subscriptionIds: decodeSubscriptionIds(r.subscription_ids),
        state: decodeState(r.state),
        packetId: r.packet_id,
      }),
    );
    const incomingQos2 = new Map<string, number[]>();
    for (const r of this.stmt.loadIncoming.all()) {
      const ids = incomingQos2.get(r.client_id);
      if (ids === undefined) incomingQos2.set(r.client_id, [r.packet_id]);
      else ids.push(r.packet_id);
    }
    const retained = this.stmt.loadRetained.all().map(rowToMessage);
    return { sessions, outbound, incomingQos2, retained };
  }

  saveSession(record: SessionRecord): void {
    this.record({
      k: 'saveSession',
      p: [
        record.clientId,
        record.protocolVersion,
        record.expiryInterval,
        record.disconnectedAt,
        encodeSubscriptions(record.subscriptions),
        record.identity !== undefined ? JSON.stringify(record.identity) : null,
      ],
    });
  }

  /** Also deletes the client's outbound messages and incoming QoS 2 packet ids. */
  deleteSession(clientId: string): void {
    this.record({ k: 'deleteSession', clientId });
    // Pending inserts before this point are deleted by it; stop coalescing against them.
    for (const [seq, op] of this.pendingAdds) if (op.p[0] === clientId) this.pendingAdds.delete(seq);
  }

  addOutbound(entry: StoredOutbound): void {
    const m = entry.message;
    const op: AddOutboundOp = {
      k: 'addOutbound',
      p: [
        entry.clientId,
        entry.seq,
        m.topic,
        m.payload,
        m.qos,
        entry.qos,
        entry.retainFlag ? 1 : 0,
        m.retain ? 1 : 0,
        m.origin,
        m.expiresAt,
        encodeProperties(m.properties),
        encodeSubscriptionIds(entry.subscriptionIds),
        encodeState(entry.state),
        entry.packetId,
      ],
      at: this.ops.length,
    };
    this.record(op);
    this.pendingAdds.set(entry.seq, op);
    if (entry.seq >= this.seq) this.seq = entry.seq + 1;
  }

  updateOutbound(clientId: string, seq: number, state: OutboundState, packetId: number): void {
    const pending = this.pendingAdds.get(seq);
    if (pending !== undefined && pending.p[0] === clientId) {
      this.assertOpen();
      pending.p[OUT_STATE] = encodeState(state);
      pending.p[OUT_PACKET_ID] = packetId;
      return;
    }
    this.record({ k: 'updateOutbound', p: [encodeState(state), packetId, clientId, seq] });
  }

  removeOutbound(clientId: string, seq: number): void {
    const pending = this.pendingAdds.get(seq);
    if (pending !== undefined && pending.p[0] === clientId) {
      this.assertOpen();
      this.ops[pending.at] = null;
      this.pendingAdds.delete(seq);
      return;
    }
    this.record({ k: 'removeOutbound', p: [clientId, seq] });
  }

  addIncomingQos2(clientId: string, packetId: number): void {
    this.record({ k: 'addIncomingQos2', p: [clientId, packetId] });
  }

  removeIncomingQos2(clientId: string, packetId: number): void {
    this.record({ k: 'removeIncomingQos2', p: [clientId, packetId] });
  }

  setRetained(topic: string, message: Message | null): void {
    if (message === null) {
      this.record({ k: 'clearRetained', topic });
      return;
    }
    this.record({
      k: 'setRetained',
      p: [
        topic,
        message.payload,
        message.qos,
        message.retain ? 1 : 0,
        message.origin,
        message.expiresAt,
        encodeProperties(message.properties),
      ],
    });
  }

  nextSeq(): number {
    return this.seq++;
  }

  /** True while recorded writes wait for their transaction. */
  get dirty(): boolean {
    return this.ops.length > 0;
  }

  afterFlush(cb: () => void): void {
    this.assertOpen();
    this.callbacks.push(cb);
    this.schedule();
  }

  /**
   * Commits every recorded write now, then runs the waiting afterFlush callbacks.
   * Throws ERR_STORE_WRITE (batch kept, callbacks kept) when the transaction fails.
   */
  flush(): void {
    this.assertOpen();
    if (this.scheduled !== undefined) {
      clearImmediate(this.scheduled);
      this.scheduled = undefined;
    }
    const ops = this.ops;
    if (ops.length > 0) {
      const pendingAdds = this.pendingAdds;
      this.ops = [];
      this.pendingAdds = new Map();
      try {
        this.commit(ops);
      } catch (err) {
        this.ops = ops;
        this.pendingAdds = pendingAdds;
        throw wrap('ERR_STORE_WRITE', 'session store write failed', err);
      }
    }
    const callbacks = this.callbacks;
    this.callbacks = [];
    runAll(callbacks);
  }

  /** Flushes, then closes the database. Idempotent. */
  close(): void {
    if (this.closed) return;
    try {
      this.flush();
    } finally {
      if (this.scheduled !== undefined) clearImmediate(this.scheduled);
      this.scheduled = undefined;
      this.closed = true;
      this.db.close();
    }
  }

  private record(op: Op): void {
    this.assertOpen();
    this.ops.push(op);
    this.schedule();
  }

  private schedule(): void {
    this.scheduled ??= setImmediate(this.onImmediate);
  }

  private readonly onImmediate = (): void => {
    this.scheduled = undefined;
    if (this.closed) return;
    try {
      this.flush();
    } catch (err) {
      if (this.onError !== undefined && err instanceof BastionError && err.code === 'ERR_STORE_WRITE') {
        this.onError(err);
        return;
      }
      throw err;
    }
  };

  private assertOpen(): void {
    if (this.closed) throw new BastionError('ERR_STORE_CLOSED', 'session store is closed');
  }
}

function wrap(code: string, message: string, cause: unknown): BastionError {
  const detail = cause instanceof Error ? cause.message : String(cause);
  const err = new BastionError(code, `${message}: ${detail}`);
  err.cause = cause;
  return err;
}
