/**
 * The ban list over the real SQLite admin store: bans survive a reopen (a broker restart),
 * values are normalised (IPv4-mapped IPv6, serial spelling), expired bans stop matching,
 * and removal is durable.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AuthorizedClient } from '../../src/broker/ports.js';
import { BanList } from '../../src/security/limits/ban-list.js';
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
    let bans = new BanList(store, () => now);
    const ipBan = bans.add({ kind: 'ip', value: '10.1.2.3', reason: 'scanner', createdBy: 'test', createdAt: now, expiresAt: null });
    bans.add({ kind: 'certSerial', value: '0a:1b:2c', reason: '', createdBy: 'test', createdAt: now, expiresAt: now + 60_000 });
    assert.equal(bans.matches(client())?.kind, 'ip', 'an IPv4-mapped address matches the IPv4 ban');
    assert.equal(bans.matches(client({ remoteAddress: '10.9.9.9', serial: 'A1B2C' }))?.kind, 'certSerial', 'serial spellings are one ban');
    assert.equal(bans.matches(client({ remoteAddress: '10.9.9.9', serial: 'FF' })), null);
    store.close();

    store = SqliteAdminStore.open(path);
    bans = new BanList(store, () => now);
    assert.equal(bans.list().length, 2, 'bans survive a restart');
    now += 61_000;
    assert.equal(bans.matches(client({ remoteAddress: '10.9.9.9' })), null, 'an expired ban no longer matches');
    assert.equal(bans.list().length, 1, 'and is not listed');
    assert.deepEqual(bans.admissionGuard()(client()), { reasonCode: 0x8a, reason: 'banned (ip)' });
    assert.equal(bans.remove(ipBan.id)?.value, '10.1.2.3');
    assert.equal(bans.remove(ipBan.id), null);
    store.close();

    store = SqliteAdminStore.open(path);
    bans = new BanList(store, () => now);
    assert.equal(bans.matches(client()), null, 'the unban survived the reopen');
    store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
