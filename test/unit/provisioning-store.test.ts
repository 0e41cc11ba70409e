/**
 * The provisioning store over a real SQLite file: every method of the ProvisioningStore
 * port, the "once" guarantees (a token, an ownership token, a claim slot) under a race of
 * two connections and of two processes, secrets never written in the clear, the file's
 * mode, reopening, and a schema newer than this code. Also the secret helpers.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { BastionError } from '../../src/core/errors.js';
import { CLAIM_OU, PENDING_OU, claimCommonName, isProvisioningOnlyCertificate } from '../../src/provisioning/claim-identity.js';
import { formatToken, newSecret, newTokenId, parseToken, secretHash } from '../../src/provisioning/secrets.js';
import { PROVISIONING_DB_FILE, SqliteProvisioningStore } from '../../src/provisioning/sqlite-provisioning-store.js';

const dirs: string[] = [];
function dbPath(): string {
  const dir = mkdtempSync(join(tmpdir(), 'bastion-provisioning-'));
  dirs.push(dir);
  return join(dir, PROVISIONING_DB_FILE);
}
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const T0 = Date.parse('2026-11-26T10:00:00Z');
const HOUR = 3_600_000;

function withStore<T>(fn: (store: SqliteProvisioningStore, path: string) => T, path = dbPath()): T {
  const store = SqliteProvisioningStore.open(path);
  try {
    return fn(store, path);
  } finally {
    store.close();
  }
}

/** Every byte SQLite wrote for this database (main file, WAL, shared memory). */
function dbBytes(path: string): Buffer {
  const dir = join(path, '..');
  return Buffer.concat(readdirSync(dir).filter((f) => f.startsWith(PROVISIONING_DB_FILE)).map((f) => readFileSync(join(dir, f))));
}

describe('secrets', () => {
  it('a secret is 32 random bytes in base64url; its hash is SHA-256 hex; ids are 12 hex', () => {
    const a = newSecret();
    assert.match(a, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(Buffer.from(a, 'base64url').length, 32);
    assert.notEqual(a, newSecret());
    assert.equal(secretHash('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    assert.match(newTokenId(), /^[0-9a-f]{12}$/);
  });

  it('formatToken and parseToken round-trip; anything else parses to null', () => {
    for (let i = 0; i < 50; i++) {
      const id = newTokenId();
      const secret = newSecret();
      assert.deepEqual(parseToken(formatToken(id, secret)), { id, secret });
    }
    const good = formatToken('0123456789ab', 'A'.repeat(43));
    assert.equal(good, `bpt_0123456789ab_${'A'.repeat(43)}`);
    for (const bad of ['', 'bpt_', ` ${good}`, `${good} `, `${good}\n`, good.toUpperCase(), good.replace('bpt_', 'bpx_'), `${good}A`, good.slice(0, -1), 'bpt_0123456789AB_' + 'A'.repeat(43), 'bpt_0123456789a_' + 'A'.repeat(44), 'bpt_0123456789ab_' + 'A'.repeat(42) + '=']) {
      assert.equal(parseToken(bad), null, JSON.stringify(bad));
    }
    assert.throws(() => formatToken('xyz', 'A'.repeat(43)));
    assert.throws(() => formatToken('0123456789ab', 'short'));
  });

  it('claim identity: the OUs, the common name within 64 characters', () => {
    assert.equal(CLAIM_OU, 'bastion-claim');
    assert.equal(PENDING_OU, 'bastion-pending');
    assert.equal(isProvisioningOnlyCertificate(['x', 'bastion-claim']), true);
    assert.equal(isProvisioningOnlyCertificate(['bastion-pending']), true);
    assert.equal(isProvisioningOnlyCertificate(['sensors', 'Bastion-Claim']), false);
    assert.equal(isProvisioningOnlyCertificate([]), false);
    assert.match(claimCommonName('sensor'), /^claim-sensor-[0-9a-f]{8}$/);
    assert.ok(claimCommonName('t'.repeat(64)).length <= 64);
  });
});

describe('SqliteProvisioningStore', () => {
  it('creates the file 0600 in WAL mode with a schema version', () => {
    const path = dbPath();
    withStore(() => undefined, path);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    const db = new Database(path, { readonly: true });
    try {
      assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
      assert.equal(db.pragma('user_version', { simple: true }), 2);
    } finally {
      db.close();
    }
  });

  it('refuses a schema newer than it understands', () => {
    const path = dbPath();
    withStore(() => undefined, path);
    const db = new Database(path);
    db.pragma('user_version = 99');
    db.close();
    assert.throws(() => SqliteProvisioningStore.open(path), (err: unknown) => err instanceof BastionError && /schema version 99, newer/.test(err.message));
  });

  it('claims: add, read in any serial form, list, revoke once; a duplicate is refused', () => {
    withStore((s) => {
      s.addClaim({ serialNumber: '0a:1b', template: 'sensor', maxDevices: 2, expiresAt: T0 + 365 * 24 * HOUR, createdAt: T0 });
      s.addClaim({ serialNumber: 'FF00', template: 'gateway', maxDevices: 0, expiresAt: T0 + HOUR, createdAt: T0 + 1 });
      assert.deepEqual(s.claim('0A1B'), { serialNumber: '0A1B', template: 'sensor', maxDevices: 2, devices: 0, expiresAt: T0 + 365 * 24 * HOUR, revokedAt: null, createdAt: T0 });
      assert.equal(s.claim('nope'), null);
      assert.deepEqual(s.listClaims().map((c) => c.serialNumber), ['0A1B', 'FF00']);
      assert.throws(() => s.addClaim({ serialNumber: '0A1B', template: 'x', maxDevices: 0, expiresAt: T0, createdAt: T0 }), (e: unknown) => e instanceof BastionError && e.code === 'ERR_PROVISIONING_EXISTS');
      assert.throws(() => s.addClaim({ serialNumber: 'AB', template: 'x', maxDevices: -1, expiresAt: T0, createdAt: T0 }), BastionError);
      assert.equal(s.revokeClaim('0a1b', T0 + 5), true);
      assert.equal(s.revokeClaim('0A1B', T0 + 9), false, 'a second revocation changes nothing');
      assert.equal(s.claim('0A1B')?.revokedAt, T0 + 5);
      assert.equal(s.revokeClaim('unknown', T0), false);
    });
  });

  it('takeClaimSlot stops at maxDevices, is unlimited at 0, and refuses a revoked or unknown claim', () => {
    withStore((s) => {
      s.addClaim({ serialNumber: 'A1', template: 'sensor', maxDevices: 3, expiresAt: T0 + HOUR, createdAt: T0 });
      s.addClaim({ serialNumber: 'B2', template: 'sensor', maxDevices: 0, expiresAt: T0 + HOUR, createdAt: T0 });
      const taken = Array.from({ length: 5 }, () => s.takeClaimSlot('A1'));
      assert.deepEqual(taken, [true, true, true, false, false]);
      assert.equal(s.claim('A1')?.devices, 3);
      for (let i = 0; i < 100; i++) assert.equal(s.takeClaimSlot('b2'), true);
      assert.equal(s.claim('B2')?.devices, 100);
      s.revokeClaim('B2', T0);
      assert.equal(s.takeClaimSlot('B2'), false);
      assert.equal(s.takeClaimSlot('C3'), false);
    });
  });

  it('tokens: stored by hash, found by hash or id, listed; spent once; revoked; expired ones cannot be spent', () => {
    withStore((s) => {
      const secret = newSecret();
      s.addToken({ id: 'aaaaaaaaaaaa', template: 'sensor', expiresAt: T0 + HOUR, createdAt: T0 }, secretHash(secret));
      s.addToken({ id: 'bbbbbbbbbbbb', template: 'sensor', expiresAt: T0 + HOUR, createdAt: T0 + 1 }, secretHash(newSecret()));
      s.addTokens([
        { token: { id: 'cccccccccccc', template: 'gw', expiresAt: T0 + HOUR, createdAt: T0 + 2 }, secretHash: secretHash(newSecret()) },
        { token: { id: 'dddddddddddd', template: 'gw', expiresAt: T0 + HOUR, createdAt: T0 + 3 }, secretHash: secretHash(newSecret()) },
      ]);
      assert.deepEqual(s.tokenByHash(secretHash(secret)), { id: 'aaaaaaaaaaaa', template: 'sensor', expiresAt: T0 + HOUR, usedAt: null, usedBy: null, revokedAt: null, createdAt: T0 });
      assert.equal(s.tokenByHash(secretHash('wrong')), null);
      assert.equal(s.token('aaaaaaaaaaaa')?.template, 'sensor');
      assert.equal(s.token('zzzzzzzzzzzz'), null);
      assert.deepEqual(s.listTokens().map((t) => t.id), ['aaaaaaaaaaaa', 'bbbbbbbbbbbb', 'cccccccccccc', 'dddddddddddd']);

      assert.equal(s.spendToken('aaaaaaaaaaaa', 'sensor-1', T0 + 10), true);
      assert.equal(s.spendToken('aaaaaaaaaaaa', 'sensor-2', T0 + 11), false, 'a token works once');
      assert.deepEqual({ usedAt: s.token('aaaaaaaaaaaa')?.usedAt, usedBy: s.token('aaaaaaaaaaaa')?.usedBy }, { usedAt: T0 + 10, usedBy: 'sensor-1' });
      assert.equal(s.revokeToken('aaaaaaaaaaaa', T0 + 12), false, 'a used token is not revoked');

      assert.equal(s.revokeToken('bbbbbbbbbbbb', T0 + 20), true);
      assert.equal(s.revokeToken('bbbbbbbbbbbb', T0 + 21), false);
      const revoked = s.token('bbbbbbbbbbbb');
      assert.equal(revoked?.revokedAt, T0 + 20);
      assert.equal(revoked?.expiresAt, T0 + 20, 'revocation cuts the expiry, so an expiry check refuses it too');
      assert.equal(s.spendToken('bbbbbbbbbbbb', 'sensor-3', T0 + 21), false);
      assert.equal(s.revokeToken('zzzzzzzzzzzz', T0), false);

      assert.equal(s.spendToken('cccccccccccc', 'gw-1', T0 + HOUR), false, 'expired at its expiry instant');
      assert.equal(s.spendToken('dddddddddddd', 'gw-1', T0 + HOUR - 1), true);
    });
  });

  it('a duplicate token id or secret is refused, and a batch is all or none; a non-hash is never stored', () => {
    withStore((s) => {
      const h = secretHash(newSecret());
      s.addToken({ id: 'aaaaaaaaaaaa', template: 't', expiresAt: T0 + HOUR, createdAt: T0 }, h);
      assert.throws(() => s.addToken({ id: 'aaaaaaaaaaaa', template: 't', expiresAt: T0, createdAt: T0 }, secretHash(newSecret())), (e: unknown) => e instanceof BastionError && e.code === 'ERR_PROVISIONING_EXISTS');
      assert.throws(() => s.addToken({ id: 'bbbbbbbbbbbb', template: 't', expiresAt: T0, createdAt: T0 }, h), BastionError);
      assert.throws(() =>
        s.addTokens([
          { token: { id: 'cccccccccccc', template: 't', expiresAt: T0, createdAt: T0 }, secretHash: secretHash('1') },
          { token: { id: 'aaaaaaaaaaaa', template: 't', expiresAt: T0, createdAt: T0 }, secretHash: secretHash('2') },
        ]),
      );
      assert.equal(s.token('cccccccccccc'), null, 'the batch was rolled back');
      assert.throws(() => s.addToken({ id: 'dddddddddddd', template: 't', expiresAt: T0, createdAt: T0 }, newSecret()), /SHA-256/);
      assert.throws(() => s.addOwnership('not-a-hash', { certSerial: 'AA', csrPem: 'x', claim: { kind: 'token', id: 'x' }, expiresAt: T0 }), /SHA-256/);
    });
  });

  it('ownership tokens: stored by hash, spent once and not after expiry, expired ones listed and forgotten', () => {
    withStore((s) => {
      const a = secretHash(newSecret());
      const b = secretHash(newSecret());
      const c = secretHash(newSecret());
      s.addOwnership(a, { certSerial: 'aa:01', csrPem: 'CSR-A', claim: { kind: 'claim', serialNumber: '0a1b' }, expiresAt: T0 + HOUR });
      s.addOwnership(b, { certSerial: 'AA02', csrPem: 'CSR-B', claim: { kind: 'token', id: 'aaaaaaaaaaaa' }, expiresAt: T0 + HOUR });
      s.addOwnership(c, { certSerial: 'AA03', csrPem: 'CSR-C', claim: { kind: 'token', id: 'bbbbbbbbbbbb' }, expiresAt: T0 + 2 * HOUR });
      assert.deepEqual(s.ownership(a), { certSerial: 'AA01', csrPem: 'CSR-A', claim: { kind: 'claim', serialNumber: '0A1B' }, expiresAt: T0 + HOUR, usedAt: null });
      assert.deepEqual(s.ownership(b)?.claim, { kind: 'token', id: 'aaaaaaaaaaaa' });
      assert.equal(s.ownership(secretHash('nope')), null);

      assert.equal(s.spendOwnership(a, T0 + 1), true);
      assert.equal(s.spendOwnership(a, T0 + 2), false, 'an ownership token works once');
      assert.equal(s.ownership(a)?.usedAt, T0 + 1);
      assert.equal(s.spendOwnership(b, T0 + HOUR), false, 'not at or after its expiry');
      assert.equal(s.spendOwnership(secretHash('nope'), T0), false);

      assert.deepEqual(s.expiredOwnerships(T0 + HOUR).map((o) => [o.certSerial, o.secretHash]), [['AA02', b]], 'unused and expired only');
      assert.deepEqual(s.expiredOwnerships(T0 + 3 * HOUR).map((o) => o.certSerial), ['AA02', 'AA03']);
      s.forgetOwnership(b);
      assert.equal(s.ownership(b), null);
      assert.deepEqual(s.expiredOwnerships(T0 + 3 * HOUR).map((o) => o.certSerial), ['AA03']);
    });
  });

  it('devices: put, replace by identity, find by identity or serial, list', () => {
    withStore((s) => {
      s.putDevice({ identity: 'sensor-1', template: 'sensor', certSerial: 'c1', notAfter: T0 + 30 * 24 * HOUR, claim: { kind: 'claim', serialNumber: '0A1B' }, createdAt: T0 });
      s.putDevice({ identity: 'sensor-2', template: 'sensor', certSerial: 'C2', notAfter: T0 + HOUR, claim: { kind: 'token', id: 'aaaaaaaaaaaa' }, createdAt: T0 + 1 });
      assert.deepEqual(s.device('sensor-1'), { identity: 'sensor-1', template: 'sensor', certSerial: 'C1', notAfter: T0 + 30 * 24 * HOUR, claim: { kind: 'claim', serialNumber: '0A1B' }, createdAt: T0 });
      assert.equal(s.deviceBySerial('c2')?.identity, 'sensor-2');
      assert.equal(s.device('none'), null);
      assert.equal(s.deviceBySerial('FFFF'), null);
      s.putDevice({ identity: 'sensor-1', template: 'sensor', certSerial: 'C3', notAfter: T0 + 60 * 24 * HOUR, claim: { kind: 'claim', serialNumber: '0A1B' }, createdAt: T0 + 2 });
      assert.equal(s.device('sensor-1')?.certSerial, 'C3');
      assert.equal(s.deviceBySerial('C1'), null, 'the old serial no longer names the device');
      assert.deepEqual(s.listDevices().map((d) => d.identity).sort(), ['sensor-1', 'sensor-2']);
    });
  });

  it('renewals: add, find by new serial, due ones, mark superseded once, count since', () => {
    withStore((s) => {
      s.addRenewal({ identity: 'sensor-1', oldSerial: 'o1', newSerial: 'n1', createdAt: T0, supersedeAt: T0 + 24 * HOUR });
      s.addRenewal({ identity: 'sensor-1', oldSerial: 'N1', newSerial: 'N2', createdAt: T0 + HOUR, supersedeAt: T0 + 25 * HOUR });
      s.addRenewal({ identity: 'sensor-2', oldSerial: 'P1', newSerial: 'P2', createdAt: T0 + 2 * HOUR, supersedeAt: T0 + 26 * HOUR });
      assert.deepEqual(s.renewalByNewSerial('n1'), { identity: 'sensor-1', oldSerial: 'O1', newSerial: 'N1', createdAt: T0, supersedeAt: T0 + 24 * HOUR, supersededAt: null });
      assert.equal(s.renewalByNewSerial('ZZ'), null);
      assert.throws(() => s.addRenewal({ identity: 'x', oldSerial: 'a', newSerial: 'N1', createdAt: T0, supersedeAt: T0 }), BastionError);
      assert.deepEqual(s.dueRenewals(T0 + 24 * HOUR).map((r) => r.newSerial), ['N1']);
      assert.deepEqual(s.dueRenewals(T0 + 30 * HOUR).map((r) => r.newSerial), ['N1', 'N2', 'P2']);
      s.markSuperseded('N1', T0 + 5);
      s.markSuperseded('N1', T0 + 6);
      assert.equal(s.renewalByNewSerial('N1')?.supersededAt, T0 + 5, 'the first date stays');
      assert.deepEqual(s.dueRenewals(T0 + 30 * HOUR).map((r) => r.newSerial), ['N2', 'P2']);
      assert.equal(s.renewalsSince('sensor-1', T0), 2);
      assert.equal(s.renewalsSince('sensor-1', T0 + 1), 1);
      assert.equal(s.renewalsSince('sensor-3', 0), 0);
    });
  });

  it('reopening keeps every record', () => {
    const path = dbPath();
    const secret = newSecret();
    withStore((s) => {
      s.addClaim({ serialNumber: 'A1', template: 'sensor', maxDevices: 1, expiresAt: T0 + HOUR, createdAt: T0 });
      assert.equal(s.takeClaimSlot('A1'), true);
      s.addToken({ id: 'aaaaaaaaaaaa', template: 'sensor', expiresAt: T0 + HOUR, createdAt: T0 }, secretHash(secret));
      assert.equal(s.spendToken('aaaaaaaaaaaa', 'sensor-1', T0 + 1), true);
      s.addOwnership(secretHash('o'), { certSerial: 'B1', csrPem: 'CSR', claim: { kind: 'claim', serialNumber: 'A1' }, expiresAt: T0 + HOUR });
      s.putDevice({ identity: 'sensor-1', template: 'sensor', certSerial: 'B2', notAfter: T0 + HOUR, claim: { kind: 'claim', serialNumber: 'A1' }, createdAt: T0 });
      s.addRenewal({ identity: 'sensor-1', oldSerial: 'B2', newSerial: 'B3', createdAt: T0, supersedeAt: T0 + HOUR });
    }, path);
    withStore((s) => {
      assert.equal(s.claim('A1')?.devices, 1);
      assert.equal(s.takeClaimSlot('A1'), false, 'the count survived');
      assert.equal(s.tokenByHash(secretHash(secret))?.usedBy, 'sensor-1');
      assert.equal(s.spendToken('aaaaaaaaaaaa', 'sensor-2', T0 + 2), false, 'still spent');
      assert.equal(s.ownership(secretHash('o'))?.csrPem, 'CSR');
      assert.equal(s.device('sensor-1')?.certSerial, 'B2');
      assert.equal(s.renewalByNewSerial('B3')?.oldSerial, 'B2');
    }, path);
  });

  it('secrets are never stored in the clear: the database files hold only their SHA-256', () => {
    const path = dbPath();
    const token = newSecret();
    const ownership = newSecret();
    withStore((s) => {
      s.addToken({ id: 'aaaaaaaaaaaa', template: 'sensor', expiresAt: T0 + HOUR, createdAt: T0 }, secretHash(token));
      s.addOwnership(secretHash(ownership), { certSerial: 'B1', csrPem: 'CSR', claim: { kind: 'token', id: 'aaaaaaaaaaaa' }, expiresAt: T0 + HOUR });
      const bytes = dbBytes(path);
      assert.ok(bytes.includes(Buffer.from(secretHash(token))), 'the hash is there (the check reads the right files)');
      for (const secret of [token, ownership]) {
        assert.equal(bytes.includes(Buffer.from(secret)), false);
        assert.equal(bytes.includes(Buffer.from(secret, 'base64url')), false, 'nor its raw bytes');
      }
    }, path);
    const bytes = dbBytes(path);
    assert.equal(bytes.includes(Buffer.from(token)), false, 'after the checkpoint on close');
    assert.equal(bytes.includes(Buffer.from(ownership)), false);
  });

  it('two connections interleaved: each token, ownership token and claim slot is won once', () => {
    const path = dbPath();
    const a = SqliteProvisioningStore.open(path);
    const b = SqliteProvisioningStore.open(path);
    try {
      a.addToken({ id: 'aaaaaaaaaaaa', template: 't', expiresAt: T0 + HOUR, createdAt: T0 }, secretHash('x'));
      a.addOwnership(secretHash('o'), { certSerial: 'B1', csrPem: 'CSR', claim: { kind: 'token', id: 'aaaaaaaaaaaa' }, expiresAt: T0 + HOUR });
      a.addClaim({ serialNumber: 'C1', template: 't', maxDevices: 5, expiresAt: T0 + HOUR, createdAt: T0 });
      assert.deepEqual([b.spendToken('aaaaaaaaaaaa', 'one', T0), a.spendToken('aaaaaaaaaaaa', 'two', T0)], [true, false]);
      assert.deepEqual([a.spendOwnership(secretHash('o'), T0), b.spendOwnership(secretHash('o'), T0)], [true, false]);
      const slots = Array.from({ length: 8 }, (_, i) => (i % 2 === 0 ? a : b).takeClaimSlot('C1'));
      assert.equal(slots.filter(Boolean).length, 5);
      assert.equal(a.claim('C1')?.devices, 5);
    } finally {
      a.close();
      b.close();
    }
  });

  it('two processes racing on the same tokens and claim: every token is spent exactly once, the claim stops at its limit', async () => {
    const path = dbPath();
    const ids = Array.from({ length: 300 }, () => newTokenId());
    withStore((s) => {
      s.addTokens(ids.map((id, i) => ({ token: { id, template: 't', expiresAt: T0 + HOUR, createdAt: T0 + i }, secretHash: secretHash(`${id}-secret`) })));
      s.addClaim({ serialNumber: 'C1', template: 't', maxDevices: 150, expiresAt: T0 + HOUR, createdAt: T0 });
    }, path);
    const moduleUrl = new URL('../../src/provisioning/sqlite-provisioning-store.js', import.meta.url).href;
    // Each child opens the store, says ready, waits for "go" on stdin, then tries every token
    // and a claim slot after each; it prints what it won as one JSON line.
    const script = `
      import { SqliteProvisioningStore } from ${JSON.stringify(moduleUrl)};
      const [path, idsJson, name] = process.argv.slice(1);
      const ids = JSON.parse(idsJson);
      const store = SqliteProvisioningStore.open(path);
      process.stdout.write('ready\\n');
      process.stdin.once('data', () => {
        const tokens = [];
        let slots = 0;
        for (const id of ids) {
          if (store.spendToken(id, name, ${T0 + 1})) tokens.push(id);
          if (store.takeClaimSlot('C1')) slots++;
        }
        store.close();
        process.stdout.write(JSON.stringify({ tokens, slots }) + '\\n');
        process.exit(0);
      });`;
    const children = ['p1', 'p2'].map((name) => {
      // Both try the tokens in the same order: each one is contested while both run.
      const child = spawn(process.execPath, ['--input-type=module', '-e', script, path, JSON.stringify(ids), name], { stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.setEncoding('utf8');
      child.stderr.setEncoding('utf8');
      const ready = new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (d: string) => {
          out += d;
          if (out.startsWith('ready\n')) resolve();
        });
        child.once('exit', (code) => reject(new Error(`child ${name} exited ${code} before ready: ${err}`)));
      });
      child.stderr.on('data', (d: string) => (err += d));
      const done = new Promise<{ tokens: string[]; slots: number }>((resolve, reject) => {
        child.once('exit', (code) => {
          if (code !== 0) reject(new Error(`child ${name} exited ${code}: ${err}`));
          else resolve(JSON.parse(out.split('\n')[1] ?? '') as { tokens: string[]; slots: number });
        });
      });
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      child.once('exit', () => clearTimeout(timer));
      return { child, ready, done };
    });
    await Promise.all(children.map((c) => c.ready));
    for (const c of children) c.child.stdin.end('go\n');
    const [r1, r2] = await Promise.all(children.map((c) => c.done));
    const won = [...r1!.tokens, ...r2!.tokens];
    assert.equal(won.length, ids.length, `every token won once (p1 ${r1!.tokens.length}, p2 ${r2!.tokens.length})`);
    assert.equal(new Set(won).size, ids.length, 'no token won twice');
    assert.equal(r1!.slots + r2!.slots, 150, 'the claim stopped at 150 devices');
    withStore((s) => {
      assert.equal(s.claim('C1')?.devices, 150);
      const byUser = new Map(s.listTokens().map((t) => [t.id, t.usedBy]));
      for (const id of r1!.tokens) assert.equal(byUser.get(id), 'p1');
      for (const id of r2!.tokens) assert.equal(byUser.get(id), 'p2');
    }, path);
  });
});
