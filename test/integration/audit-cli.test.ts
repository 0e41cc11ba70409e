/**
 * `bastion audit verify|tail|query` as a user runs them, on a data directory a real broker
 * wrote: verify passes on the intact log, and names the record after each tampering done
 * with SQLite directly (an edited event, a deleted record, two swapped seq values, an edit
 * with the whole chain re-hashed, a cut tail, a touched checkpoint, and a log re-signed
 * with an attacker's own key); tail prints JSON lines and follows new records; query
 * filters by type, client and time; bad input is one line and a non-zero exit.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import type { SecurityEvent } from '../../src/core/security-events.js';
import { createRootCa } from '../../src/pki/index.js';
import { loadAuditSigner, signCheckpoint } from '../../src/security/audit/checkpoint.js';
import { hashRecordJson } from '../../src/security/audit/record.js';
import { ensureDevPki } from '../../src/server/dev-pki.js';
import { failedWithOneLine, tamperedCopy } from '../helpers/audit-files.js';
import { startTestBroker, type TestBroker } from '../helpers/broker.js';
import { BASTION_MAIN, Proc, run, type ProcResult } from './support.js';

/** 60 records, one per write, so checkpoints (every 10) land at 10, 20, ..., 60. */
const RECORDS = 60;

function eventFor(i: number): SecurityEvent {
  if (i % 5 === 0) return { type: 'ban.added', kind: 'ip', value: `192.0.2.${i}`, reason: 'test', createdBy: 'cli-test', expiresAt: null, auto: false };
  return { type: 'auth.failure', listener: 'plain', remoteAddress: '127.0.0.1', clientId: `dev-${i % 3}`, provider: 'password', reasonCode: 0x86, reason: 'bad user name or password' };
}

async function writeLog(dataDir: string): Promise<void> {
  // No automatic bans: they would add their own records to the synthetic failures.
  const b = await startTestBroker({ dataDir, audit: { checkpointEvery: 10 }, limits: { authFailures: { maxFailures: 0 } } });
  try {
    for (let i = 1; i <= RECORDS; i++) {
      b.server.broker.events.emit(eventFor(i));
      b.server.audit.flush();
    }
  } finally {
    await b.stop();
  }
}

function audit(args: string[], dataDir: string): Promise<ProcResult> {
  return run(process.execPath, [BASTION_MAIN, 'audit', ...args, '--data-dir', dataDir]);
}

/** Re-computes every hash from `fromSeq` on, as someone without the signing key can. */
function rehashFrom(db: Database.Database, fromSeq: number): void {
  const rows = db.prepare('SELECT seq, ts, event, prev_hash, hash FROM records WHERE seq >= ? - 1 ORDER BY seq').all(fromSeq) as Array<{ seq: number; ts: number; event: string; prev_hash: string; hash: string }>;
  let prev = rows[0]!.hash;
  const update = db.prepare('UPDATE records SET prev_hash = ?, hash = ? WHERE seq = ?');
  for (const r of rows.slice(1)) {
    const hash = hashRecordJson(r.seq, r.ts, prev, r.event);
    update.run(prev, hash, r.seq);
    prev = hash;
  }
}

describe('bastion audit on a data directory a broker wrote', () => {
  let dir: string;
  let dataDir: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'bastion-audit-cli-'));
    dataDir = join(dir, 'data');
    await writeLog(dataDir);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('verify passes on the intact log', async () => {
    const r = await audit(['verify'], dataDir);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `audit log intact: ${RECORDS} records, 6 checkpoints, last signed at seq ${RECORDS}; signatures: ECDSA P-256 + ML-DSA-65\n`);
    // No built-in PKI here: the self-signed signer is said so.
    assert.match(r.stderr, /warning: checkpoints are self-signed/);
    const json = await audit(['verify', '--json'], dataDir);
    assert.equal(json.code, 0);
    const parsed = JSON.parse(json.stdout) as { ok: boolean; records: number; lastSignedSeq: number };
    assert.deepEqual([parsed.ok, parsed.records, parsed.lastSignedSeq], [true, RECORDS, RECORDS]);
  });

  test('an edited event: "record 42 was altered (hash mismatch)"', async () => {
    const d = tamperedCopy(dataDir, 'edited', (db) => db.prepare("UPDATE records SET event = replace(event, 'dev-0', 'dev-9') WHERE seq = 42").run());
    assert.equal(failedWithOneLine(await audit(['verify'], d)), 'bastion: record 42 was altered (hash mismatch)');
    const json = await audit(['verify', '--json'], d);
    assert.equal(json.code, 1);
    assert.deepEqual((JSON.parse(json.stdout) as { problem: unknown }).problem, { kind: 'altered', seq: 42, message: 'record 42 was altered (hash mismatch)' });
  });

  test('a deleted record: "record 42 is missing (deleted)"', async () => {
    const d = tamperedCopy(dataDir, 'deleted', (db) => db.prepare('DELETE FROM records WHERE seq = 42').run());
    assert.equal(failedWithOneLine(await audit(['verify'], d)), 'bastion: record 42 is missing (deleted)');
  });

  test('two records with their seq values swapped: "records 42 and 43 are out of order"', async () => {
    const d = tamperedCopy(dataDir, 'swapped', (db) => {
      db.prepare('UPDATE records SET seq = -1 WHERE seq = 42').run();
      db.prepare('UPDATE records SET seq = 42 WHERE seq = 43').run();
      db.prepare('UPDATE records SET seq = 43 WHERE seq = -1').run();
    });
    assert.equal(failedWithOneLine(await audit(['verify'], d)), 'bastion: records 42 and 43 are out of order');
  });

  test('an edit with every later hash re-computed is caught by the next signed checkpoint', async () => {
    const d = tamperedCopy(dataDir, 'rechained', (db) => {
      db.prepare("UPDATE records SET event = replace(event, 'dev-0', 'dev-9'), client_id = 'dev-9' WHERE seq = 42").run();
      rehashFrom(db, 42);
    });
    const line = failedWithOneLine(await audit(['verify'], d));
    // The key-less rewrite is pinned to the window between two checkpoints (41..50), which holds record 42.
    assert.match(line, /^bastion: records 41 to 50 were rewritten: .*checkpoint at seq 50 does not match; checkpoint at seq 40 does\)$/);
  });

  test('deleting a record and renumbering and re-hashing the rest is caught too', async () => {
    const d = tamperedCopy(dataDir, 'renumbered', (db) => {
      db.prepare('DELETE FROM records WHERE seq = 45').run();
      db.prepare('UPDATE records SET seq = -seq WHERE seq > 45').run();
      db.prepare('UPDATE records SET seq = -seq - 1 WHERE seq < 0').run();
      rehashFrom(db, 45);
    });
    assert.match(failedWithOneLine(await audit(['verify'], d)), /^bastion: records 41 to 50 were rewritten/);
  });

  test('the last records deleted after the final checkpoint: the tail was cut', async () => {
    const d = tamperedCopy(dataDir, 'cut', (db) => db.prepare('DELETE FROM records WHERE seq > 58').run());
    assert.equal(failedWithOneLine(await audit(['verify'], d)), 'bastion: records 59 to 60 are missing (the tail was cut: checkpoint at seq 60 names a record that is not there)');
  });

  test('an edit re-hashed with the checkpoints after it removed: a warning, and a failure with --strict', async () => {
    const d = tamperedCopy(dataDir, 'uncheckpointed', (db) => {
      db.prepare("UPDATE records SET event = replace(event, 'dev-0', 'dev-9'), client_id = 'dev-9' WHERE seq = 42").run();
      rehashFrom(db, 42);
      db.prepare('DELETE FROM checkpoints WHERE seq > 40').run();
    });
    const lenient = await audit(['verify'], d);
    assert.equal(lenient.code, 0, lenient.stderr);
    assert.match(lenient.stdout, /^audit log intact: 60 records, 4 checkpoints, last signed at seq 40; signatures: ECDSA P-256 \+ ML-DSA-65\n$/);
    assert.match(lenient.stderr, /warning: records after seq 40 are not covered by a checkpoint \(records 41 to 60/);
    assert.match(failedWithOneLine(await audit(['verify', '--strict'], d)), /^bastion: records after seq 40 are not covered by a checkpoint .*: checkpoints were removed, or the broker did not stop cleanly$/);
    // The intact log of a cleanly stopped broker passes --strict.
    assert.equal((await audit(['verify', '--strict'], dataDir)).code, 0);
  });

  test('a checkpoint touched: "checkpoint at seq 30: bad signature"', async () => {
    const d = tamperedCopy(dataDir, 'badsig', (db) => db.prepare('UPDATE checkpoints SET ts = ts + 1 WHERE seq = 30').run());
    assert.equal(failedWithOneLine(await audit(['verify'], d)), 'bastion: checkpoint at seq 30: bad signature');
  });

  test('tail --json prints the last records as JSON lines', async () => {
    const r = await audit(['tail', '-n', '3', '--json'], dataDir);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { seq: number; event: { type: string }; hash: string; prevHash: string });
    assert.deepEqual(
      lines.map((l) => l.seq),
      [RECORDS - 2, RECORDS - 1, RECORDS],
    );
    assert.equal(lines[1]!.prevHash, lines[0]!.hash);
    assert.equal(lines[2]!.event.type, 'ban.added');
    const human = await audit(['tail', '-n', '1'], dataDir);
    assert.match(human.stdout, new RegExp(`^${RECORDS} \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z ban\\.added .*value=192\\.0\\.2\\.${RECORDS}`));
  });

  test('query --type auth.failure --client X returns exactly that client\'s failures; --since/--until filter by time', async () => {
    const expected = Array.from({ length: RECORDS }, (_, k) => k + 1).filter((i) => i % 5 !== 0 && i % 3 === 1);
    const r = await audit(['query', '--type', 'auth.failure', '--client', 'dev-1', '--json'], dataDir);
    assert.equal(r.code, 0, r.stderr);
    const rows = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { seq: number; event: { type: string; clientId: string } });
    assert.deepEqual(
      rows.map((x) => x.seq),
      expected,
    );
    assert.ok(rows.every((x) => x.event.type === 'auth.failure' && x.event.clientId === 'dev-1'));
    const limited = await audit(['query', '--type', 'ban.added', '--since', '1h', '--limit', '2'], dataDir);
    assert.equal(limited.stdout.trim().split('\n').length, 2);
    const future = await audit(['query', '--since', new Date(Date.now() + 3600_000).toISOString()], dataDir);
    assert.equal(future.code, 0);
    assert.equal(future.stdout, '');
    const past = await audit(['query', '--until', '2020-01-01T00:00:00Z'], dataDir);
    assert.equal(past.stdout, '');
  });

  test('bad input: one line and a non-zero exit', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['query', '--since', 'yesterday'], /^bastion: --since yesterday: expected an ISO time/],
      [['query', '--type', 'auth.fail'], /^bastion: --type auth.fail: not an audit event type/],
      [['query', '--limit', '0'], /^bastion: --limit 0: expected a whole number/],
      [['tail', '-n', 'x'], /^bastion: -n x: expected a whole number/],
    ];
    for (const [args, re] of cases) {
      const r = await audit(args, dataDir);
      assert.notEqual(r.code, 0, args.join(' '));
      assert.match(r.stderr, re);
      assert.equal(r.stderr.trim().split('\n').length, 1);
    }
    const missing = await audit(['verify'], join(dir, 'nowhere'));
    assert.equal(failedWithOneLine(missing), `bastion: no audit log at ${join(dir, 'nowhere', 'audit.db')} (the broker creates it at its first start)`);
  });

  test('tail --follow prints a record written after it started, until SIGINT', async () => {
    const b: TestBroker = await startTestBroker({ dataDir, audit: { checkpointEvery: 10 } });
    const follow = Proc.spawn(process.execPath, [BASTION_MAIN, 'audit', 'tail', '-n', '1', '--follow', '--json', '--data-dir', dataDir]);
    try {
      await follow.waitForOutput(new RegExp(`"seq":${RECORDS},`), 10_000);
      b.server.broker.events.emit({ type: 'ban.removed', kind: 'ip', value: '192.0.2.200', removedBy: 'follow-test' });
      b.server.audit.flush();
      await follow.waitForOutput(/"seq":61,.*"removedBy":"follow-test"/, 10_000);
      follow.kill('SIGINT');
      const done = await follow.waitExit(10_000);
      assert.equal(done.code, 0, done.stderr);
    } finally {
      await follow.stop();
      await b.stop();
    }
    // Still intact with the broker's new records and its shutdown checkpoint.
    const r = await audit(['verify'], dataDir);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^audit log intact: 61 records, 7 checkpoints, last signed at seq 61; signatures: ECDSA P-256 \+ ML-DSA-65\n$/);
  });
});

test('with a built-in PKI, a log re-hashed and re-signed with the attacker\'s own key is refused', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bastion-audit-cli-pki-'));
  try {
    const dataDir = join(dir, 'data');
    await ensureDevPki(dataDir);
    await writeLog(dataDir);
    const ok = await audit(['verify'], dataDir);
    assert.equal(ok.code, 0, ok.stderr);
    assert.doesNotMatch(ok.stderr, /self-signed/);

    const attacker = await createRootCa({ commonName: 'bastion-audit-signer' });
    const forger = loadAuditSigner(attacker.keyPem, attacker.certPem);
    const d = tamperedCopy(dataDir, 'resigned', (db) => {
      db.prepare("UPDATE records SET event = replace(event, 'dev-0', 'dev-9'), client_id = 'dev-9' WHERE seq = 42").run();
      rehashFrom(db, 42);
      db.prepare('INSERT INTO signers (fingerprint, cert_pem, added_at) VALUES (?, ?, ?)').run(forger.fingerprint, forger.certPem, Date.now());
      const rows = db.prepare('SELECT c.seq AS seq, r.hash AS hash, c.ts AS ts FROM checkpoints c JOIN records r ON r.seq = c.seq').all() as Array<{ seq: number; hash: string; ts: number }>;
      db.prepare('DELETE FROM checkpoints').run();
      const insert = db.prepare('INSERT INTO checkpoints (seq, hash, ts, signature, signer) VALUES (?, ?, ?, ?, ?)');
      for (const r of rows) {
        const cp = signCheckpoint(forger, r.seq, r.hash, r.ts);
        insert.run(cp.seq, cp.hash, cp.ts, cp.signature, cp.signerFingerprint);
      }
    });
    assert.equal(failedWithOneLine(await audit(['verify'], d)), `bastion: checkpoint at seq 10: signer ${forger.fingerprint} does not chain to the PKI root`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
