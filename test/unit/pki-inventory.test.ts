/**
 * The PKI inventory over a real SQLite file: records, filters, revocation outcomes, the
 * per-issuer revoked list (the CRL entries), counters shared by two connections (two
 * processes: the CLI and the broker), and a schema newer than this code.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { BastionError } from '../../src/core/errors.js';
import { PkiInventory, type NewInventoryRecord } from '../../src/store/sqlite/pki-inventory.js';

const dirs: string[] = [];
function dbPath(): string {
  const dir = mkdtempSync(join(tmpdir(), 'bastion-inventory-'));
  dirs.push(dir);
  return join(dir, 'inventory.db');
}
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const DAY = 86_400_000;
const T0 = new Date('2026-11-26T10:00:00Z');

function rec(serial: string, over: Partial<NewInventoryRecord> = {}): NewInventoryRecord {
  return {
    serialNumber: serial,
    kind: 'client',
    issuerSerial: 'CA01',
    subject: `CN=${serial}`,
    commonName: `dev-${serial}`,
    sans: ['URI:spiffe://x/dev'],
    fingerprint256: 'AA:BB',
    notBefore: T0,
    notAfter: new Date(T0.getTime() + 365 * DAY),
    certPem: '-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n',
    issuedAt: T0,
    ...over,
  };
}

describe('PkiInventory', () => {
  it('stores a record and reads it back by serial in any case or with colons', () => {
    const inv = PkiInventory.open(dbPath());
    inv.add(rec('0A1B'));
    const got = inv.get('0a:1b');
    assert.ok(got !== undefined);
    assert.equal(got.serialNumber, '0A1B');
    assert.equal(got.status, 'valid');
    assert.deepEqual(got.sans, ['URI:spiffe://x/dev']);
    assert.equal(got.notAfter.getTime(), T0.getTime() + 365 * DAY);
    assert.equal(got.revokedAt, null);
    assert.equal(inv.get('FFFF'), undefined);
    inv.close();
  });

  it('refuses a duplicate serial', () => {
    const inv = PkiInventory.open(dbPath());
    inv.add(rec('01'));
    assert.throws(() => inv.add(rec('01')), /UNIQUE/);
    inv.close();
  });

  it('revokes once: unknown, revoked, then already-revoked keeping the first date and reason', () => {
    const inv = PkiInventory.open(dbPath());
    inv.add(rec('01'));
    assert.deepEqual(inv.revoke('99', T0, null), { result: 'unknown' });
    const first = inv.revoke('01', T0, 'keyCompromise');
    assert.equal(first.result, 'revoked');
    const second = inv.revoke('01', new Date(T0.getTime() + DAY), 'superseded');
    assert.equal(second.result, 'already-revoked');
    assert.ok(second.result === 'already-revoked');
    assert.equal(second.record.reason, 'keyCompromise');
    assert.equal(second.record.revokedAt?.getTime(), T0.getTime());
    inv.close();
  });

  it('filters by status, expiry, issuer and kind; lists the revoked entries of one issuer', () => {
    const inv = PkiInventory.open(dbPath());
    inv.add(rec('01', { notAfter: new Date(T0.getTime() + 10 * DAY) }));
    inv.add(rec('02'));
    inv.add(rec('03', { issuerSerial: 'CA02', kind: 'server' }));
    inv.revoke('02', T0, null);
    inv.revoke('03', T0, 'superseded');
    assert.deepEqual(inv.list({ status: 'valid' }).map((r) => r.serialNumber), ['01']);
    assert.deepEqual(inv.list({ expiringBefore: new Date(T0.getTime() + 30 * DAY) }).map((r) => r.serialNumber), ['01']);
    assert.deepEqual(inv.list({ kinds: ['server'] }).map((r) => r.serialNumber), ['03']);
    assert.deepEqual(inv.list({ issuerSerial: 'ca01' }).map((r) => r.serialNumber), ['01', '02']);
    assert.deepEqual(inv.revokedIssuedBy('CA01'), [{ serialNumber: '02', revokedAt: T0, reason: null }]);
    assert.deepEqual(inv.revokedIssuedBy('CA02'), [{ serialNumber: '03', revokedAt: T0, reason: 'superseded' }]);
    // Entries whose certificate expired before the cut-off leave the CRL (RFC 5280 §3.3).
    const notAfter03 = inv.list({ issuerSerial: 'CA02' })[0]!.notAfter.getTime();
    assert.deepEqual(inv.revokedIssuedBy('CA02', new Date(notAfter03)).map((e) => e.serialNumber), ['03'], 'kept on the day it expires');
    assert.deepEqual(inv.revokedIssuedBy('CA02', new Date(notAfter03 + 1)), [], 'gone once expired before the cut-off');
    inv.close();
  });

  it('hands out strictly increasing counter values across two connections to one file', () => {
    const path = dbPath();
    const a = PkiInventory.open(path);
    const b = PkiInventory.open(path);
    const seen = [a.nextCounter('crl.number'), b.nextCounter('crl.number'), a.nextCounter('crl.number'), b.nextCounter('crl.number')];
    assert.deepEqual(seen, [1n, 2n, 3n, 4n]);
    a.setSetting('ocsp.url', 'http://127.0.0.1:8888/');
    assert.equal(b.getSetting('ocsp.url'), 'http://127.0.0.1:8888/');
    b.setSetting('ocsp.url', null);
    assert.equal(a.getSetting('ocsp.url'), undefined);
    a.close();
    b.close();
  });

  it('refuses a database from a newer Bastion with a clear error', () => {
    const path = dbPath();
    PkiInventory.open(path).close();
    const raw = new Database(path);
    raw.pragma('user_version = 99');
    raw.close();
    assert.throws(
      () => PkiInventory.open(path),
      (err: unknown) => err instanceof BastionError && err.code === 'ERR_PKI_INVENTORY' && /newer than this Bastion/.test(err.message),
    );
  });
});
