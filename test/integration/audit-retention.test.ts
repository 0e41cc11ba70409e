/**
 * Audit retention on a real broker with a built-in PKI: 60 records (a checkpoint every
 * 10), `retention.maxRecords: 20`, one pruning pass. `bastion audit verify` passes and
 * says records 1 to 40 were pruned and when; an edit or a consistent rewrite of the kept
 * part still fails; a pruning marker that is missing, unsigned, altered, relabelled from a
 * checkpoint or signed by another key fails; records deleted behind the marker's back are
 * still "missing"; a restart continues the chain after pruning.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type Database from 'better-sqlite3';
import type { SecurityEvent } from '../../src/core/security-events.js';
import { createRootCa } from '../../src/pki/index.js';
import { HYBRID_SIGNATURES, exportMlDsaPrivateKeyPem, generateMlDsaKeyPair } from '../../src/pki/hybrid-signature.js';
import { loadAuditSigner } from '../../src/security/audit/checkpoint.js';
import { signPruneMarker } from '../../src/security/audit/prune.js';
import { hashRecordJson } from '../../src/security/audit/record.js';
import { ensureDevPki } from '../../src/server/dev-pki.js';
import { failedWithOneLine, tamperedCopy } from '../helpers/audit-files.js';
import { startTestBroker } from '../helpers/broker.js';
import { BASTION_MAIN, run, type ProcResult } from './support.js';

const ISO = '\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z';

function eventFor(i: number): SecurityEvent {
  return { type: 'auth.failure', listener: 'plain', remoteAddress: '127.0.0.1', clientId: `dev-${i % 3}`, provider: 'password', reasonCode: 0x86, reason: 'bad user name or password' };
}

function verify(dataDir: string, ...flags: string[]): Promise<ProcResult> {
  return run(process.execPath, [BASTION_MAIN, 'audit', 'verify', ...flags, '--data-dir', dataDir]);
}

const BROKER = { audit: { checkpointEvery: 10, retention: { maxRecords: 20, intervalSeconds: 3600 } }, limits: { authFailures: { maxFailures: 0 } } };

/** Re-computes every hash from `fromSeq` on, as someone without the signing key can. */
function rehashFrom(db: Database.Database, fromSeq: number): void {
  const rows = db.prepare('SELECT seq, ts, event, prev_hash FROM records WHERE seq >= ? ORDER BY seq').all(fromSeq) as Array<{ seq: number; ts: number; event: string; prev_hash: string }>;
  let prev = rows[0]!.prev_hash;
  const update = db.prepare('UPDATE records SET prev_hash = ?, hash = ? WHERE seq = ?');
  for (const r of rows) {
    const hash = hashRecordJson(r.seq, r.ts, prev, r.event);
    update.run(prev, hash, r.seq);
    prev = hash;
  }
}

function recordAt(db: Database.Database, seq: number): { hash: string; ts: number } {
  return db.prepare('SELECT hash, ts FROM records WHERE seq = ?').get(seq) as { hash: string; ts: number };
}

function insertMarker(db: Database.Database, m: { seq: number; hash: string; headTs: number; ts: number; signature: string; signerFingerprint: string; pqSignature?: string | null | undefined; pqKeyFingerprint?: string | null | undefined }): void {
  db.prepare('INSERT INTO pruned (seq, hash, head_ts, ts, signature, signer, pq_signature, pq_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)').run(m.seq, m.hash, m.headTs, m.ts, m.signature, m.signerFingerprint, m.pqSignature ?? null, m.pqKeyFingerprint ?? null);
}

describe('audit retention: pruning behind a signed checkpoint', () => {
  let dir: string;
  let dataDir: string;
  const MARKER = 'pruning checkpoint (records up to seq 40)';

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'bastion-audit-retention-'));
    dataDir = join(dir, 'data');
    await ensureDevPki(dataDir);
    const b = await startTestBroker({ dataDir, ...BROKER });
    try {
      for (let i = 1; i <= 60; i++) {
        b.server.broker.events.emit(eventFor(i));
        b.server.audit.flush();
      }
      const report = await b.server.audit.prune();
      assert.ok(report !== null);
      assert.equal(report.throughSeq, 40);
    } finally {
      await b.stop();
    }
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('verify passes on the pruned log and says what was pruned and when', async () => {
    const r = await verify(dataDir, '--strict');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^audit log intact: 20 records, 2 checkpoints, last signed at seq 60; records 1 to 40 pruned at ${ISO} by retention \\(the newest of them from ${ISO}\\); signatures: ECDSA P-256 \\+ ML-DSA-65\\n$`));
    const json = JSON.parse((await verify(dataDir, '--json')).stdout) as { ok: boolean; pruned: { throughSeq: number; prunedAt: number; headTs: number } };
    assert.equal(json.ok, true);
    assert.equal(json.pruned.throughSeq, 40);
    assert.ok(json.pruned.prunedAt >= json.pruned.headTs);
  });

  test('the kept part is still proven: an edit, and an edit with the chain re-hashed, fail', async () => {
    const edited = tamperedCopy(dataDir, 'kept-edited', (db) => db.prepare("UPDATE records SET event = replace(event, 'dev-2', 'dev-9') WHERE seq = 50").run());
    assert.equal(failedWithOneLine(await verify(edited)), 'bastion: record 50 was altered (hash mismatch)');
    // The first kept record rewritten and every hash after it re-computed: its link to the signed pruning point holds, the checkpoint at 50 does not.
    const rewritten = tamperedCopy(dataDir, 'kept-rewritten', (db) => {
      db.prepare("UPDATE records SET event = replace(event, 'dev-2', 'dev-9'), client_id = 'dev-9' WHERE seq = 41").run();
      rehashFrom(db, 41);
    });
    assert.match(failedWithOneLine(await verify(rewritten)), /^bastion: records 41 to 50 were rewritten: .*checkpoint at seq 50 does not match/);
    // A new first record linked elsewhere: it does not link to the signed head hash.
    const relinked = tamperedCopy(dataDir, 'kept-relinked', (db) => {
      db.prepare("UPDATE records SET prev_hash = '0000000000000000000000000000000000000000000000000000000000000000' WHERE seq = 41").run();
      rehashFrom(db, 41);
    });
    assert.equal(failedWithOneLine(await verify(relinked)), 'bastion: record 41 is missing (deleted; the record now at seq 41 does not link to record 40)');
  });

  test('records deleted without a pruning checkpoint are still missing', async () => {
    const gone = tamperedCopy(dataDir, 'deleted-after-marker', (db) => db.prepare('DELETE FROM records WHERE seq BETWEEN 41 AND 45').run());
    assert.equal(failedWithOneLine(await verify(gone)), 'bastion: records 41 to 45 are missing (deleted)');
    const noMarker = tamperedCopy(dataDir, 'marker-deleted', (db) => db.prepare('DELETE FROM pruned').run());
    assert.equal(failedWithOneLine(await verify(noMarker)), 'bastion: records 1 to 40 are missing (deleted; no signed pruning checkpoint covers them)');
  });

  test('a forged pruning marker fails: unsigned, altered, relabelled from a checkpoint, or signed by another key', async () => {
    const unsigned = tamperedCopy(dataDir, 'marker-unsigned', (db) => db.prepare("UPDATE pruned SET signature = '', pq_signature = NULL, pq_key = NULL").run());
    assert.equal(failedWithOneLine(await verify(unsigned)), `bastion: ${MARKER}: bad signature`);

    // "Pruned up to 45": records 41..45 deleted, the marker moved onto record 45.
    const moved = tamperedCopy(dataDir, 'marker-moved', (db) => {
      const r45 = recordAt(db, 45);
      db.prepare('DELETE FROM records WHERE seq <= 45').run();
      db.prepare('UPDATE pruned SET seq = 45, hash = ?, head_ts = ?').run(r45.hash, r45.ts);
    });
    assert.equal(failedWithOneLine(await verify(moved)), 'bastion: pruning checkpoint (records up to seq 45): bad signature');

    const retimed = tamperedCopy(dataDir, 'marker-retimed', (db) => db.prepare('UPDATE pruned SET ts = ts + 86400000').run());
    assert.equal(failedWithOneLine(await verify(retimed)), `bastion: ${MARKER}: bad signature`);

    // A genuine checkpoint's signatures (over seq 50 and its hash) relabelled as a pruning marker.
    const relabelled = tamperedCopy(dataDir, 'marker-relabelled', (db) => {
      db.prepare('DELETE FROM records WHERE seq <= 50').run();
      db.prepare('DELETE FROM pruned').run();
      db.prepare('INSERT INTO pruned (seq, hash, head_ts, ts, signature, signer, pq_signature, pq_key) SELECT seq, hash, ts, ts, signature, signer, pq_signature, pq_key FROM checkpoints WHERE seq = 50').run();
      db.prepare('DELETE FROM checkpoints WHERE seq <= 50').run();
    });
    assert.equal(failedWithOneLine(await verify(relabelled)), 'bastion: pruning checkpoint (records up to seq 50): bad signature');

    // Hybrid-signed by an attacker's own ECDSA and ML-DSA keys, their certificate and key put in audit.db.
    const attacker = await createRootCa({ commonName: 'bastion-audit-signer' });
    const forger = loadAuditSigner(attacker.keyPem, attacker.certPem, { keyPem: exportMlDsaPrivateKeyPem(generateMlDsaKeyPair().privateKey), scheme: HYBRID_SIGNATURES });
    const foreign = tamperedCopy(dataDir, 'marker-foreign', (db) => {
      const r45 = recordAt(db, 45);
      db.prepare('DELETE FROM records WHERE seq <= 45').run();
      db.prepare('DELETE FROM pruned').run();
      db.prepare('INSERT INTO signers (fingerprint, cert_pem, added_at) VALUES (?, ?, ?)').run(forger.fingerprint, forger.certPem, Date.now());
      db.prepare('INSERT INTO pq_keys (fingerprint, public_key, added_at) VALUES (?, ?, ?)').run(forger.pq!.fingerprint, forger.pq!.publicKeyPem, Date.now());
      insertMarker(db, signPruneMarker(forger, 45, r45.hash, r45.ts, Date.now()));
    });
    assert.equal(failedWithOneLine(await verify(foreign)), `bastion: pruning checkpoint (records up to seq 45): signer ${forger.fingerprint} does not chain to the PKI root`);

    // Classic-only (no ML-DSA signature) in a hybrid log: a downgrade, even from the genuine key.
    const classic = tamperedCopy(dataDir, 'marker-classic', (db) => db.prepare('UPDATE pruned SET pq_signature = NULL, pq_key = NULL').run());
    assert.equal(failedWithOneLine(await verify(classic)), `bastion: ${MARKER}: bad signature`);
  });

  test('a restart continues the chain after the pruning point, and prunes again', async () => {
    const restartDir = tamperedCopy(dataDir, 'restarted', () => undefined);
    const b = await startTestBroker({ dataDir: restartDir, ...BROKER });
    try {
      b.server.broker.events.emit(eventFor(61));
      b.server.audit.flush();
      const report = await b.server.audit.prune();
      assert.equal(report?.throughSeq, 41);
    } finally {
      await b.stop();
    }
    const r = await verify(restartDir, '--strict');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^audit log intact: 20 records, 3 checkpoints, last signed at seq 61; records 1 to 41 pruned at ${ISO}`));
  });
});
