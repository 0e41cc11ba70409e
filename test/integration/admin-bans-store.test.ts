/**
 * The ban list over the real SQLite admin store: bans survive a reopen (a broker restart),
 * values are normalised (IPv4-mapped IPv6, serial spelling), expired bans stop matching,
 * and removal is durable; a version-1 file (before allow lists) is migrated in place; the
 * history of automatic bans (for growing durations) survives a restart for a day.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AuthorizedClient } from '../../src/broker/ports.js';
import Database from 'better-sqlite3';
import { AUTO_BAN_HISTORY_MS, BanList } from '../../src/security/limits/ban-list.js';
import { SqliteAdminStore } from '../../src/store/sqlite/admin-store.js';

function client(over: Partial<{ clientId: string; principal: string | null; remoteAddress: string; serial: string }> = {}): AuthorizedClient {
  return {
    clientId: over.clientId ?? 'dev-1',
    principal: over.principal ?? 'dev-1',
    identity: {
      principal: over.principal ?? 'dev-1',
      method: 'certificate',
      remoteAddress: over.remoteAddress ?? '::ffff:10.1.2.3',
      listener: 'mqtts',
      certificate: { commonName: 'dev-1', serialNumber: over.serial ?? '0A1B2C', fingerprint256: '', issuer: '', subject: 'CN=dev-1', organizationalUnits: [], sans: { dns: [], uri: [], ip: [], email: [] } },
    },
  };
}

test('bans persist across a reopen, match normalised values, expire, and unban is durable', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bastion-bans-'));
  const path = join(dir, 'admin.db');
  let now = 1_000_000;
  try {
    let store = SqliteAdminStore.open(path);
    let bans = new BanList(store, { now: () => now });
    const ipBan = bans.add({ kind: 'ip', value: '10.1.2.3', reason: 'scanner', createdBy: 'test', createdAt: now, expiresAt: null });
    bans.add({ kind: 'certSerial', value: '0a:1b:2c', reason: '', createdBy: 'test', createdAt: now, expiresAt: now + 60_000 });
    assert.equal(bans.matches(client({ serial: 'FF' }))?.kind, 'ip', 'an IPv4-mapped address matches the IPv4 ban');
    assert.equal(bans.matches(client({ remoteAddress: '10.9.9.9', serial: 'A1B2C' }))?.kind, 'certSerial', 'serial spellings are one ban');
    assert.equal(bans.matches(client({ remoteAddress: '10.9.9.9', serial: 'FF' })), null);
    store.close();

    store = SqliteAdminStore.open(path);
    bans = new BanList(store, { now: () => now });
    assert.equal(bans.list().length, 2, 'bans survive a restart');
    now += 61_000;
    assert.equal(bans.matches(client({ remoteAddress: '10.9.9.9' })), null, 'an expired ban no longer matches');
    assert.equal(bans.list().length, 1, 'and is not listed');
    assert.deepEqual(bans.admissionGuard()(client()), { reasonCode: 0x8a, reason: 'banned (ip)' });
    assert.equal(bans.remove(ipBan.id)?.value, '10.1.2.3');
    assert.equal(bans.remove(ipBan.id), null);
    store.close();

    store = SqliteAdminStore.open(path);
    bans = new BanList(store, { now: () => now });
    assert.equal(bans.matches(client()), null, 'the unban survived the reopen');
    store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a version-1 admin.db (bans without a list column) is migrated: its rows become deny entries', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bastion-bans-'));
  const path = join(dir, 'admin.db');
  try {
    const old = new Database(path);
    old.exec(`
      CREATE TABLE admin_tokens (name TEXT NOT NULL PRIMARY KEY, hash TEXT NOT NULL UNIQUE, created_at INTEGER NOT NULL);
      CREATE TABLE bans (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, value TEXT NOT NULL, reason TEXT NOT NULL, created_by TEXT NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER);
      INSERT INTO bans (kind, value, reason, created_by, created_at, expires_at) VALUES ('ip', '::ffff:10.1.2.3', 'old', 'token:x', 1, NULL);
    `);
    old.pragma('user_version = 1');
    old.close();
    const store = SqliteAdminStore.open(path);
    const bans = new BanList(store);
    assert.deepEqual(bans.list().map((b) => [b.list, b.kind, b.value]), [['deny', 'ip', '10.1.2.3']], 'the old spelling is read in canonical form');
    assert.equal(bans.matches(client())?.reason, 'old');
    store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('automatic-ban history outlives the ban by a day, across a reopen; operator bans are pruned when they end', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bastion-bans-'));
  const path = join(dir, 'admin.db');
  let now = 5_000_000;
  try {
    let store = SqliteAdminStore.open(path);
    let bans = new BanList(store, { now: () => now });
    bans.add({ kind: 'ip', value: '10.0.0.9', reason: 'x', createdBy: 'auto:brute-force', createdAt: now, expiresAt: now + 60_000 });
    bans.add({ kind: 'clientId', value: 'dev-9', reason: 'y', createdBy: 'token:op', createdAt: now, expiresAt: now + 60_000 });
    now += 61_000;
    bans.sweep();
    assert.equal(bans.list().length, 0, 'both ended');
    store.close();

    store = SqliteAdminStore.open(path);
    assert.deepEqual(store.listBans().map((b) => b.createdBy), ['auto:brute-force'], 'the ended operator ban is gone, the automatic one kept as history');
    bans = new BanList(store, { now: () => now });
    assert.equal(bans.autoBanCount('ip', '10.0.0.9', 'auto:brute-force'), 1);
    now += AUTO_BAN_HISTORY_MS;
    bans.sweep();
    assert.equal(bans.autoBanCount('ip', '10.0.0.9', 'auto:brute-force'), 0, 'forgotten after a day');
    store.close();
    store = SqliteAdminStore.open(path);
    assert.equal(store.listBans().length, 0);
    store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
