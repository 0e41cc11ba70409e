/**
 * The audit record and its place in the hash chain. Owns: the record shape, the canonical
 * bytes a record's hash covers, and the hash itself. Must not: store or export records
 * (store/sqlite/audit-store.ts and server/audit/* do).
 *
 * SECURITY: each record's hash covers its sequence number, time, event and the previous
 * record's hash, so altering, deleting or reordering a record breaks every hash after it;
 * signed checkpoints (checkpoint.ts) pin the chain so it cannot be rebuilt silently.
 */
import { hash } from 'node:crypto';
import type { SecurityEvent } from '../../core/security-events.js';

/** The previous hash of the first record. */
export const GENESIS_HASH = '0'.repeat(64);

export interface AuditRecord {
  /** 1, 2, 3, ...: consecutive, no gaps. */
  seq: number;
  /** ms since the epoch, when the event happened. */
  ts: number;
  event: SecurityEvent;
  /** Hex SHA-256 of the previous record (GENESIS_HASH for seq 1). */
  prevHash: string;
  /** Hex SHA-256 of canonicalRecordBytes(this). */
  hash: string;
}

/**
 * JSON with object keys sorted at every level, so the same record always hashes the same
 * whatever order its fields were built in (and after a round trip through SQLite).
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  // Loops rather than entries/filter/map: this runs once per audit record under a flood.
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) {
      if (i > 0) out += ',';
      // A hole stays empty (as the first version's map/join left it); undefined is null.
      if (i in value) out += canonicalJson(value[i] === undefined ? null : value[i]);
    }
    return `${out}]`;
  }
  const obj = value as Record<string, unknown>;
  // The default sort orders by UTF-16 code units, the same order as `<` on strings.
  const keys = Object.keys(obj).sort();
  let out = '{';
  for (const k of keys) {
    const v = obj[k];
    if (v === undefined) continue;
    if (out.length > 1) out += ',';
    out += `${JSON.stringify(k)}:${canonicalJson(v)}`;
  }
  return `${out}}`;
}

/** What a record's hash covers. */
export function canonicalRecordBytes(r: Omit<AuditRecord, 'hash'>): string {
  return canonicalRecordBytesOf(r.seq, r.ts, r.prevHash, canonicalJson(r.event));
}

/** canonicalRecordBytes for an event already in canonical JSON (what the audit store keeps). */
export function canonicalRecordBytesOf(seq: number, ts: number, prevHash: string, eventJson: string): string {
  return `bastion-audit-v1\n${seq}\n${ts}\n${prevHash}\n${eventJson}`;
}

/** hashRecord for an event already in canonical JSON: the store and verify hash the stored bytes once. */
export function hashRecordJson(seq: number, ts: number, prevHash: string, eventJson: string): string {
  // The one-shot hash (no Hash object): a record is chained for every accepted connection.
  return hash('sha256', canonicalRecordBytesOf(seq, ts, prevHash, eventJson), 'hex');
}

export function hashRecord(r: Omit<AuditRecord, 'hash'>): string {
  return hash('sha256', canonicalRecordBytes(r), 'hex');
}

/** Chains `event` after `prev` (null: the first record). */
export function chainRecord(prev: { seq: number; hash: string } | null, ts: number, event: SecurityEvent): AuditRecord {
  const body = { seq: prev === null ? 1 : prev.seq + 1, ts, event, prevHash: prev === null ? GENESIS_HASH : prev.hash };
  return { ...body, hash: hashRecord(body) };
}
