/**
 * The cluster's PKI inventory entries (server/cluster-pki-entry.ts) and the inventory
 * methods the kind relies on (store/sqlite/pki-inventory.ts), over real PKI directories
 * (PkiService, real SQLite in a temporary directory, real certificates): an entry of a
 * certificate this CA issued decodes into the row the certificate itself says (never the
 * entry's claims), malformed entries are refused with a reason, another CA's certificate is
 * 'foreign' (skipped, not an error); the join is commutative, idempotent, never
 * un-revokes, keeps the earliest revocation; the SQL rule (revokeNoLaterThan) agrees with
 * it in both orders; raiseCounter moves the next CRL number above another node's.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseCrls } from '../../src/pki/index.js';
import { decodeEntry, encodeEntry, joinStanding, pkiKeyOf, sameStanding, standingOf, type IssuingCaCert, type PkiEntry, type Standing } from '../../src/server/cluster-pki-entry.js';
import { PkiService } from '../../src/server/pki-service.js';
import { PkiInventory, type InventoryRecord } from '../../src/store/sqlite/pki-inventory.js';

let dir: string;
let ours: PkiService;
let other: PkiService;
let issuing: IssuingCaCert;
let client: InventoryRecord;
let server: InventoryRecord;
let foreignClient: InventoryRecord;

function caOf(pem: string): IssuingCaCert {
  const cert = new X509Certificate(pem);
  return { cert, serialNumber: cert.serialNumber };
}

function entry(record: InventoryRecord, over: Record<string, unknown> = {}): Uint8Array {
  return Buffer.from(JSON.stringify({ certPem: record.certPem, issuedAt: record.issuedAt.getTime(), status: 'valid', revokedAt: null, reason: null, ...over }));
}

function decoded(key: string, bytes: Uint8Array): PkiEntry {
  const d = decodeEntry(key, bytes, issuing);
  assert.ok(d !== 'foreign' && !('why' in d), JSON.stringify(d));
  return d;
}

function refusal(key: string, bytes: Uint8Array): string {
  const d = decodeEntry(key, bytes, issuing);
  assert.ok(d !== 'foreign' && 'why' in d, `expected a refusal, got ${JSON.stringify(d)}`);
  return d.why;
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'bastion-cluster-pki-unit-'));
  ours = await PkiService.init(join(dir, 'a', 'pki'), { commonName: 'Cluster Root' });
  await ours.createIntermediate({ commonName: 'Cluster Issuing' });
  issuing = caOf(readFileSync(ours.layout.intermediateCert, 'utf8'));
  const c = await ours.issue({ profile: 'client', commonName: 'dev-1', sans: [{ type: 'dns', value: 'dev-1.example' }] });
  const s = await ours.issue({ profile: 'server', commonName: 'node-a' });
  client = ours.show(c.serialNumber);
  server = ours.show(s.serialNumber);
  other = await PkiService.init(join(dir, 'b', 'pki'), { commonName: 'Cluster Issuing' });
  foreignClient = other.show((await other.issue({ profile: 'client', commonName: 'dev-1' })).serialNumber);
});

after(() => {
  ours?.close();
  other?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('cluster PKI entries', () => {
  it('an entry of a certificate this CA issued decodes into the row the certificate itself says', () => {
    const key = pkiKeyOf(client.serialNumber);
    const d = decoded(key, entry(client, { status: 'revoked', revokedAt: 1_700_000_000_000, reason: 'keyCompromise' }));
    assert.equal(d.serialNumber, client.serialNumber);
    assert.equal(d.record.kind, 'client');
    assert.equal(d.record.commonName, 'dev-1');
    assert.deepEqual(d.record.sans, client.sans);
    assert.equal(d.record.subject, client.subject);
    assert.equal(d.record.fingerprint256, client.fingerprint256);
    assert.equal(d.record.issuerSerial, client.issuerSerial);
    assert.equal(d.record.notAfter.getTime(), client.notAfter.getTime());
    assert.deepEqual(d.standing, { issuedAt: client.issuedAt.getTime(), status: 'revoked', revokedAt: 1_700_000_000_000, reason: 'keyCompromise' });
    assert.equal(decoded(pkiKeyOf(server.serialNumber), entry(server)).record.kind, 'server');
  });

  it('encodeEntry writes the canonical form decodeEntry reads back', () => {
    const s: Standing = { issuedAt: 5, status: 'revoked', revokedAt: 7, reason: 'superseded' };
    const bytes = encodeEntry(client.certPem, s);
    assert.equal(Buffer.from(bytes).toString(), JSON.stringify({ certPem: client.certPem, issuedAt: 5, status: 'revoked', revokedAt: 7, reason: 'superseded' }));
    assert.deepEqual(decoded(pkiKeyOf(client.serialNumber), bytes).standing, s);
  });

  it('SECURITY: malformed entries are refused with a reason', () => {
    const key = pkiKeyOf(client.serialNumber);
    assert.match(refusal(key, Buffer.from('not json')), /not JSON/);
    assert.match(refusal(key, entry(client, { extra: 1 })), /Unrecognized key/);
    assert.match(refusal(key, entry(client, { revokedAt: 5 })), /valid entry has no revokedAt/);
    assert.match(refusal(key, entry(client, { status: 'revoked' })), /revoked one has a revokedAt/);
    assert.match(refusal(key, entry(client, { status: 'revoked', revokedAt: 5, reason: 'because' })), /reason/);
    assert.match(refusal(key, entry(client, { status: 'unknown' })), /status/);
    assert.match(refusal(key, entry(client, { issuedAt: -1 })), /issuedAt/);
    assert.match(refusal(key, entry(client, { certPem: client.certPem + server.certPem })), /exactly one certificate/);
    assert.match(refusal(key, entry(client, { certPem: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n' })), /.+/);
    // The certificate of another serial under this key.
    assert.match(refusal(key, entry(server)), /not the key's/);
    assert.match(refusal('pki.lowercase', entry(client)), /upper-case hex/);
    // The issuing CA's own certificate verifies under itself when it is the root: not a leaf.
    const rootDir = join(dir, 'c', 'pki');
    return (async () => {
      const rootOnly = await PkiService.init(rootDir, { commonName: 'Lone Root' });
      try {
        const rootPem = readFileSync(rootOnly.layout.rootCert, 'utf8');
        const root = rootOnly.list({ kinds: ['root'] })[0]!;
        const d = decodeEntry(pkiKeyOf(root.serialNumber), entry(root), caOf(rootPem));
        assert.ok(d !== 'foreign' && 'why' in d && /not a server or client leaf/.test(d.why), JSON.stringify(d));
      } finally {
        rootOnly.close();
      }
    })();
  });

  it("another CA's certificate (same name, other key) is 'foreign': skipped, not refused", () => {
    assert.equal(decodeEntry(pkiKeyOf(foreignClient.serialNumber), entry(foreignClient), issuing), 'foreign');
    // The root of our own PKI did not issue the leaves (the intermediate did): foreign to a root-only view.
    assert.equal(decodeEntry(pkiKeyOf(client.serialNumber), entry(client), caOf(readFileSync(ours.layout.rootCert, 'utf8'))), 'foreign');
  });
});

describe('the join', () => {
  const valid: Standing = { issuedAt: 100, status: 'valid', revokedAt: null, reason: null };
  const early: Standing = { issuedAt: 100, status: 'revoked', revokedAt: 200, reason: 'superseded' };
  const late: Standing = { issuedAt: 90, status: 'revoked', revokedAt: 300, reason: 'keyCompromise' };
  const sameTimeNoReason: Standing = { issuedAt: 100, status: 'revoked', revokedAt: 200, reason: null };
  const sameTimeOther: Standing = { issuedAt: 100, status: 'revoked', revokedAt: 200, reason: 'affiliationChanged' };
  const all = [valid, early, late, sameTimeNoReason, sameTimeOther];

  it('revoked wins over valid, the earliest revocation and its reason win, the earliest issuance is kept', () => {
    assert.deepEqual(joinStanding(valid, early), early);
    assert.deepEqual(joinStanding(early, valid), early);
    assert.deepEqual(joinStanding(early, late), { issuedAt: 90, status: 'revoked', revokedAt: 200, reason: 'superseded' });
    assert.deepEqual(joinStanding(sameTimeNoReason, early), early);
    assert.deepEqual(joinStanding(early, sameTimeOther), sameTimeOther);
  });

  it('is commutative, associative and idempotent; never un-revokes', () => {
    for (const a of all) {
      assert.ok(sameStanding(joinStanding(a, a), a));
      for (const b of all) {
        const ab = joinStanding(a, b);
        assert.ok(sameStanding(ab, joinStanding(b, a)), `${JSON.stringify(a)} ⊔ ${JSON.stringify(b)}`);
        if (a.status === 'revoked' || b.status === 'revoked') assert.equal(ab.status, 'revoked');
        for (const c of all) assert.ok(sameStanding(joinStanding(ab, c), joinStanding(a, joinStanding(b, c))));
      }
    }
  });

  it('PkiInventory.revokeNoLaterThan applies the same rule as the join, in either order', () => {
    const inv = PkiInventory.open(join(dir, 'join.db'));
    try {
      const revoked = all.filter((s) => s.status === 'revoked');
      let n = 0;
      for (const a of revoked) {
        for (const b of revoked) {
          const serial = `AB${(++n).toString(16).toUpperCase()}`;
          assert.equal(inv.insertRecord({ ...client, serialNumber: serial, status: 'revoked', revokedAt: new Date(a.revokedAt!), reason: a.reason }), true);
          const changed = inv.revokeNoLaterThan(serial, new Date(b.revokedAt!), b.reason);
          const row = inv.get(serial)!;
          const want = joinStanding(a, b);
          assert.deepEqual({ revokedAt: row.revokedAt?.getTime(), reason: row.reason }, { revokedAt: want.revokedAt, reason: want.reason });
          assert.equal(changed, want.revokedAt !== a.revokedAt || want.reason !== a.reason);
        }
      }
      // A valid row is revoked; an unknown serial says so; a second insert of a serial is refused.
      assert.equal(inv.insertRecord({ ...client, status: 'valid', revokedAt: null, reason: null }), true);
      assert.equal(inv.insertRecord({ ...client, status: 'revoked', revokedAt: new Date(1), reason: null }), false);
      assert.equal(inv.get(client.serialNumber)!.status, 'valid');
      assert.equal(inv.revokeNoLaterThan(client.serialNumber, new Date(500), 'keyCompromise'), true);
      assert.deepEqual(standingOf(inv.get(client.serialNumber)!), { issuedAt: client.issuedAt.getTime(), status: 'revoked', revokedAt: 500, reason: 'keyCompromise' });
      assert.equal(inv.revokeNoLaterThan('FFFF', new Date(500), null), 'unknown');
      assert.ok(inv.leafStates().some((r) => r.serialNumber === client.serialNumber && r.status === 'revoked' && r.revokedAt === 500));
    } finally {
      inv.close();
    }
  });
});

describe('inventory hooks for the cluster', () => {
  it('raiseCounter puts the next CRL number above another node\'s, and never lowers it', async () => {
    const before = parseCrls(readFileSync(ours.layout.crl, 'utf8'))[0]!.crlNumber!;
    assert.equal(ours.inventory.raiseCounter('crl.number', before + 40n), true);
    assert.equal(ours.inventory.raiseCounter('crl.number', 3n), false);
    const written = await ours.writeCrl();
    const issuingCrl = parseCrls(written.pem)[0]!;
    assert.equal(issuingCrl.issuer, 'CN=Cluster Issuing');
    assert.ok(issuingCrl.crlNumber! > before + 40n, `${issuingCrl.crlNumber} after raising to ${before + 40n}`);
  });

  it('dataVersion moves when another connection commits, not for this connection\'s own writes', async () => {
    const watcher = PkiInventory.open(ours.layout.inventory);
    try {
      const v0 = watcher.dataVersion();
      watcher.raiseCounter('crl.number', 10_000n);
      assert.equal(watcher.dataVersion(), v0);
      await ours.issue({ profile: 'client', commonName: 'dev-2' });
      assert.notEqual(watcher.dataVersion(), v0);
    } finally {
      watcher.close();
    }
  });
});
