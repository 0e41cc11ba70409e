/**
 * The writes the SQLite store records between commits, and the transaction that runs a
 * batch of them. Owns: the shape of each recorded write and which statements it runs.
 * Must not: coalesce or schedule writes (sqlite-store.ts does).
 */
import type Database from 'better-sqlite3';
import type { OutboundParams, RetainedParams, SessionParams, Statements } from './statements.js';

/** Indexes into OutboundParams that a coalesced update rewrites. */
export const OUT_STATE = 12;
export const OUT_PACKET_ID = 13;

export type Op =
  | { k: 'saveSession'; p: SessionParams }
  | { k: 'deleteSession'; clientId: string }
  | { k: 'addOutbound'; p: OutboundParams; at: number }
  | { k: 'updateOutbound'; p: [state: number, packetId: number, clientId: string, seq: number] }
  | { k: 'removeOutbound'; p: [clientId: string, seq: number] }
  | { k: 'addIncomingQos2'; p: [clientId: string, packetId: number] }
  | { k: 'removeIncomingQos2'; p: [clientId: string, packetId: number] }
  | { k: 'setRetained'; p: RetainedParams }
  | { k: 'clearRetained'; topic: string };

export type AddOutboundOp = Extract<Op, { k: 'addOutbound' }>;

/** The transaction that runs a batch of recorded writes in order; null entries were coalesced away. */
export function createCommit(db: Database.Database, s: Statements): (ops: ReadonlyArray<Op | null>) => void {
  return db.transaction((ops: ReadonlyArray<Op | null>) => {
    for (const op of ops) {
      if (op === null) continue;
      switch (op.k) {
        case 'saveSession':
          s.saveSession.run(...op.p);
          break;
        case 'deleteSession':
          s.deleteSessionOutbound.run(op.clientId);
          s.deleteSessionIncoming.run(op.clientId);
          s.deleteSession.run(op.clientId);
          break;
        case 'addOutbound':
          s.addOutbound.run(...op.p);
          break;
        case 'updateOutbound':
          s.updateOutbound.run(...op.p);
          break;
        case 'removeOutbound':
          s.removeOutbound.run(...op.p);
          break;
        case 'addIncomingQos2':
          s.addIncomingQos2.run(...op.p);
          break;
        case 'removeIncomingQos2':
          s.removeIncomingQos2.run(...op.p);
          break;
        case 'setRetained':
          s.setRetained.run(...op.p);
          break;
        case 'clearRetained':
          s.clearRetained.run(op.topic);
          break;
      }
    }
  });
}
