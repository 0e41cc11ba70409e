/**
 * The rows of provisioning as a cluster shares them (src/provisioning/provisioning-rows.ts):
 * keys, the canonical text, validation of an entry from the bucket, and the join that
 * never moves a record backwards (a spent token stays spent, a count never drops, the
 * later device certificate wins), whatever order two versions meet in.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalText, decodeRow, joinRows, keyOfRow, rowKey, tableOfKey, type ProvisioningRow } from '../../src/provisioning/provisioning-rows.js';

const HASH = 'a'.repeat(64);
const token = (over: Record<string, unknown> = {}): ProvisioningRow =>
  ({ table: 'tokens', row: { id: '0123456789ab', hash: HASH, template: 'sensor', expires_at: 5000, used_at: null, used_by: null, revoked_at: null, created_at: 1000, ...over } }) as ProvisioningRow;
const claim = (over: Record<string, unknown> = {}): ProvisioningRow =>
  ({ table: 'claims', row: { serial: 'AB01', template: 'sensor', max_devices: 3, devices: 0, expires_at: 9000, revoked_at: null, created_at: 1000, ...over } }) as ProvisioningRow;
const device = (over: Record<string, unknown> = {}): ProvisioningRow =>
  ({ table: 'devices', row: { identity: 'sensor/1 #x', template: 'sensor', cert_serial: '01', not_after: 10_000, claim_kind: 'token', claim_ref: '0123456789ab', created_at: 1000, updated_at: 1000, ...over } }) as ProvisioningRow;

const bytes = (r: ProvisioningRow): Uint8Array => Buffer.from(canonicalText(r));

describe('provisioning rows', () => {
  it('keys name the table and the record; a device identity of any characters is hashed into a valid key', () => {
    assert.equal(keyOfRow(token()), 'prov.t.0123456789ab');
    assert.equal(keyOfRow(claim()), 'prov.c.AB01');
    const k = keyOfRow(device());
    assert.match(k, /^prov\.d\.[0-9a-f]{40}$/);
    assert.equal(k, rowKey('devices', 'sensor/1 #x'));
    assert.equal(tableOfKey(k), 'devices');
    assert.equal(tableOfKey('ban.x'), null);
  });

  it('the canonical text is independent of the order the columns came in', () => {
    const r = token();
    const shuffled = { table: 'tokens', row: Object.fromEntries(Object.entries(r.row).reverse()) } as ProvisioningRow;
    assert.equal(canonicalText(shuffled), canonicalText(r));
  });

  it('decodes a valid entry and refuses junk, extra fields, a secret where a hash goes, and a row under another key', () => {
    const r = token();
    assert.deepEqual(decodeRow(keyOfRow(r), bytes(r)), r);
    assert.ok('why' in decodeRow(keyOfRow(r), Buffer.from('{nope')));
    assert.ok('why' in decodeRow(keyOfRow(r), Buffer.from(JSON.stringify({ ...r.row, extra: 1 }))));
    assert.ok('why' in decodeRow(keyOfRow(r), bytes(token({ hash: 'bpt_secret' }))));
    assert.ok('why' in decodeRow('prov.t.ffffffffffff', bytes(r)), 'a row under another row\'s key');
    assert.ok('why' in decodeRow('prov.x.1', bytes(r)));
  });

  it('a spent token stays spent and keeps its first spender, in either order', () => {
    const spentA = token({ used_at: 2000, used_by: 'sensor-A' });
    const spentB = token({ used_at: 2500, used_by: 'sensor-B' });
    for (const [x, y] of [[token(), spentA], [spentA, token()]] as const) assert.equal((joinRows(x, y).row as { used_at: number }).used_at, 2000);
    assert.equal((joinRows(spentB, spentA).row as { used_by: string }).used_by, 'sensor-A');
    assert.equal((joinRows(spentA, spentB).row as { used_by: string }).used_by, 'sensor-A');
    const revoked = token({ revoked_at: 3000, expires_at: 3000 });
    const j = joinRows(spentA, revoked).row as { revoked_at: number; expires_at: number; used_at: number };
    assert.deepEqual([j.used_at, j.revoked_at, j.expires_at], [2000, 3000, 3000]);
  });

  it('a claim\'s device count never drops and its revocation keeps the first date', () => {
    const j = joinRows(claim({ devices: 2 }), claim({ devices: 1, revoked_at: 4000 })).row as { devices: number; revoked_at: number };
    assert.deepEqual([j.devices, j.revoked_at], [2, 4000]);
    assert.equal((joinRows(claim({ revoked_at: 5000 }), claim({ revoked_at: 4000 })).row as { revoked_at: number }).revoked_at, 4000);
  });

  it('the device record of the later certificate wins, and of one second\'s two the later write', () => {
    const renewed = device({ cert_serial: '02', not_after: 20_000, updated_at: 1500 });
    assert.equal((joinRows(device(), renewed).row as { cert_serial: string }).cert_serial, '02');
    assert.equal((joinRows(renewed, device()).row as { cert_serial: string }).cert_serial, '02');
    const sameSecond = device({ cert_serial: '03', updated_at: 1200 });
    assert.equal((joinRows(device(), sameSecond).row as { cert_serial: string }).cert_serial, '03');
    assert.equal((joinRows(sameSecond, device()).row as { cert_serial: string }).cert_serial, '03');
  });

  it('refuses to join two different records', () => {
    assert.throws(() => joinRows(token(), token({ id: 'ffffffffffff' })));
  });
});
