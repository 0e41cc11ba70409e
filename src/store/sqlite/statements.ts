/**
 * The prepared statements of the SQLite store. Owns: the SQL text, the parameter tuples
 * and row shapes of each statement, and turning a stored message row back into a
 * Message. Must not: decide when to write (sqlite-store.ts batches the writes).
 */
import type Database from 'better-sqlite3';
import type { Message } from '../../broker/message.js';
import { decodeProperties, toQos } from './encoding.js';

export type SessionParams = [clientId: string, protocolVersion: number, expiryInterval: number, disconnectedAt: number, subscriptions: string, identity: string | null];
export type OutboundParams = [
  clientId: string,
  seq: number,
  topic: string,
  payload: Buffer,
  qos: number,
  grantedQos: number,
  retainFlag: number,
  msgRetain: number,
  origin: string,
  expiresAt: number,
  properties: string | null,
  subscriptionIds: string,
  state: number,
  packetId: number,
];
export type RetainedParams = [
  topic: string,
  payload: Buffer,
  qos: number,
  msgRetain: number,
  origin: string,
  expiresAt: number,
  properties: string | null,
];

export interface SessionRow {
  client_id: string;
  protocol_version: number;
  expiry_interval: number;
  disconnected_at: number;
  subscriptions: string;
  identity: string | null;
}
export interface MessageColumns {
  topic: string;
  payload: Buffer;
  qos: number;
  msg_retain: number;
  origin: string;
  expires_at: number;
  properties: string | null;
}
export interface OutboundRow extends MessageColumns {
  client_id: string;
  seq: number;
  granted_qos: number;
  retain_flag: number;
  subscription_ids: string;
  state: number;
  packet_id: number;
}
export interface IncomingRow {
  client_id: string;
  packet_id: number;
}

export interface Statements {
  saveSession: Database.Statement<SessionParams>;
  deleteSession: Database.Statement<[string]>;
  deleteSessionOutbound: Database.Statement<[string]>;
  deleteSessionIncoming: Database.Statement<[string]>;
  addOutbound: Database.Statement<OutboundParams>;
  updateOutbound: Database.Statement<[number, number, string, number]>;
  removeOutbound: Database.Statement<[string, number]>;
  addIncomingQos2: Database.Statement<[string, number]>;
  removeIncomingQos2: Database.Statement<[string, number]>;
  setRetained: Database.Statement<RetainedParams>;
  clearRetained: Database.Statement<[string]>;
  loadSessions: Database.Statement<[], SessionRow>;
  loadOutbound: Database.Statement<[], OutboundRow>;
  loadIncoming: Database.Statement<[], IncomingRow>;
  loadRetained: Database.Statement<[], MessageColumns>;
}

export function prepare(db: Database.Database): Statements {
  return {
    saveSession: db.prepare<SessionParams>(
      `INSERT INTO sessions (client_id, protocol_version, expiry_interval, disconnected_at, subscriptions, identity)
       VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (client_id) DO UPDATE SET
         protocol_version = excluded.protocol_version, expiry_interval = excluded.expiry_interval,
         disconnected_at = excluded.disconnected_at, subscriptions = excluded.subscriptions, identity = excluded.identity`,
    ),
    deleteSession: db.prepare<[string]>('DELETE FROM sessions WHERE client_id = ?'),
    deleteSessionOutbound: db.prepare<[string]>('DELETE FROM outbound WHERE client_id = ?'),
    deleteSessionIncoming: db.prepare<[string]>('DELETE FROM incoming_qos2 WHERE client_id = ?'),
    addOutbound: db.prepare<OutboundParams>(
      `INSERT OR REPLACE INTO outbound (client_id, seq, topic, payload, qos, granted_qos, retain_flag, msg_retain,
         origin, expires_at, properties, subscription_ids, state, packet_id)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    updateOutbound: db.prepare<[number, number, string, number]>(
      'UPDATE outbound SET state = ?, packet_id = ? WHERE client_id = ? AND seq = ?',
    ),
    removeOutbound: db.prepare<[string, number]>('DELETE FROM outbound WHERE client_id = ? AND seq = ?'),
    addIncomingQos2: db.prepare<[string, number]>(
      'INSERT OR IGNORE INTO incoming_qos2 (client_id, packet_id) VALUES (?, ?)',
    ),
    removeIncomingQos2: db.prepare<[string, number]>(
      'DELETE FROM incoming_qos2 WHERE client_id = ? AND packet_id = ?',
    ),
    setRetained: db.prepare<RetainedParams>(
      `INSERT OR REPLACE INTO retained (topic, payload, qos, msg_retain, origin, expires_at, properties)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
    ),
    clearRetained: db.prepare<[string]>('DELETE FROM retained WHERE topic = ?'),
    loadSessions: db.prepare<[], SessionRow>(
      'SELECT client_id, protocol_version, expiry_interval, disconnected_at, subscriptions, identity FROM sessions',
    ),
    loadOutbound: db.prepare<[], OutboundRow>(
      `SELECT client_id, seq, topic, payload, qos, granted_qos, retain_flag, msg_retain, origin, expires_at,
         properties, subscription_ids, state, packet_id
       FROM outbound ORDER BY seq`,
    ),
    loadIncoming: db.prepare<[], IncomingRow>(
      'SELECT client_id, packet_id FROM incoming_qos2 ORDER BY client_id, packet_id',
    ),
    loadRetained: db.prepare<[], MessageColumns>(
      'SELECT topic, payload, qos, msg_retain, origin, expires_at, properties FROM retained',
    ),
  };
}

export function rowToMessage(r: MessageColumns): Message {
  return {
    topic: r.topic,
    payload: r.payload,
    qos: toQos(r.qos),
    retain: r.msg_retain !== 0,
    properties: decodeProperties(r.properties),
    expiresAt: r.expires_at,
    origin: r.origin,
  };
}
