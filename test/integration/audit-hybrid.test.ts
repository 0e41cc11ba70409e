/**
 * Hybrid (ECDSA P-256 + ML-DSA-65) audit checkpoints, through the real broker, the real
 * audit.db and `bastion audit verify`: the untouched log passes and names both algorithms;
 * an altered ECDSA or ML-DSA signature, an ML-DSA key swapped for another (every ML-DSA
 * signature re-made by it), a stored key replaced under its fingerprint, a checkpoint
 * stripped to the classic form and a classic-only checkpoint after a hybrid one each fail
 * naming the checkpoint and the signature; a log from before hybrid signing (old schema,
 * v1 checkpoints) verifies with a warning, and the next broker start adds the ML-DSA key.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { generateKeyPairSync } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import type { Logger } from '../../src/core/logger.js';
import { exportPublicKeyPem, generateMlDsaKeyPair, hybridSign, importMlDsaPrivateKey, publicKeyFingerprint } from '../../src/pki/hybrid-signature.js';
import { CHECKPOINT_CONTEXT_V2, hybridCheckpointMessage, loadAuditSigner, signCheckpoint } from '../../src/security/audit/checkpoint.js';
import { ensureDevPki } from '../../src/server/dev-pki.js';
import { failedWithOneLine, tamperedCopy } from '../helpers/audit-files.js';
import { startTestBroker } from '../helpers/broker.js';
import { BASTION_MAIN, run, type ProcResult } from './support.js';

/** 20 records, one per write: checkpoints (every 10) at 10 and 20. */
const RECORDS = 20;
const BOTH = 'ECDSA P-256 + ML-DSA-65';

async function writeLog(dataDir: string, logger?: Logger): Promise<void> {
  const b = await startTestBroker({ dataDir, audit: { checkpointEvery: 10 }, limits: { authFailures: { maxFailures: 0 } }, ...(logger !== undefined ? { logger } : {}) });
  try {
    for (let i = 1; i <= RECORDS; i++) {
      b.server.broker.events.emit({ type: 'ban.added', kind: 'ip', value: `192.0.2.${i}`, reason: 'test', createdBy: 'hybrid-test', expiresAt: null, auto: false });
      b.server.audit.flush();
    }
  } finally {
    await b.stop();
  }
}

function verify(dataDir: string, ...args: string[]): Promise<ProcResult> {
  return run(process.execPath, [BASTION_MAIN, 'audit', 'verify', ...args, '--data-dir', dataDir]);
}

/** The base64 `b64` with one bit of its middle byte flipped. */
function flipped(b64: string): string {
  const bytes = Buffer.from(b64, 'base64');
  bytes[bytes.length >> 1]! ^= 0x01;
  return bytes.toString('base64');
}

function flipColumn(db: Database.Database, column: 'signature' | 'pq_signature', seq: number): void {
  const row = db.prepare(`SELECT ${column} AS sig FROM checkpoints WHERE seq = ?`).get(seq) as { sig: string };
  db.prepare(`UPDATE checkpoints SET ${column} = ? WHERE seq = ?`).run(flipped(row.sig), seq);
}

/** The data directory's own classic signer, without its ML-DSA key: signs v1 checkpoints. */
function classicSigner(dataDir: string) {
  return loadAuditSigner(readFileSync(join(dataDir, 'audit', 'signer.key'), 'utf8'), readFileSync(join(dataDir, 'audit', 'signer.crt'), 'utf8'));
}

describe('hybrid audit checkpoints, checked by bastion audit verify', () => {
  let dir: string;
  let dataDir: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'bastion-audit-hybrid-'));
    dataDir = join(dir, 'data');
    // With the built-in PKI: the ECDSA signer is PKI-issued, so verify checks its chain too.
    await ensureDevPki(dataDir);
    await writeLog(dataDir);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('the untouched log passes and names both algorithms; the ML-DSA key is 0600 and stored by its fingerprint', async () => {
    const r = await verify(dataDir);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `audit log intact: ${RECORDS} records, 2 checkpoints, last signed at seq ${RECORDS}; signatures: ${BOTH}\n`);
    assert.equal(r.stderr, '', 'no warning: PKI-issued, every checkpoint hybrid, none unsigned');

    const pqKeyPath = join(dataDir, 'audit', 'signer-mldsa.key');
    assert.equal(statSync(pqKeyPath).mode & 0o777, 0o600);
    const fingerprint = publicKeyFingerprint(importMlDsaPrivateKey(readFileSync(pqKeyPath, 'utf8')));
    const json = JSON.parse((await verify(dataDir, '--json')).stdout) as { ok: boolean; pqKeysUsed: string[]; algorithms: string[] };
    assert.deepEqual([json.ok, json.pqKeysUsed, json.algorithms], [true, [fingerprint], [BOTH]]);
    const db = new Database(join(dataDir, 'audit.db'), { readonly: true });
    try {
      const rows = db.prepare('SELECT pq_key, length(pq_signature) AS n FROM checkpoints ORDER BY seq').all() as Array<{ pq_key: string; n: number }>;
      // 3309 bytes of ML-DSA-65 signature, base64.
      assert.deepEqual(rows, [
        { pq_key: fingerprint, n: 4412 },
        { pq_key: fingerprint, n: 4412 },
      ]);
    } finally {
      db.close();
    }
  });

  test('the ECDSA signature of a hybrid checkpoint altered: verify fails naming the checkpoint and ECDSA', async () => {
    const d = tamperedCopy(dataDir, 'ecdsa-altered', (db) => flipColumn(db, 'signature', 10));
    assert.equal(failedWithOneLine(await verify(d)), 'bastion: checkpoint at seq 10: bad ECDSA P-256 signature (the ML-DSA-65 signature is valid)');
  });

  test('the ML-DSA signature of a hybrid checkpoint altered: verify fails naming the checkpoint and ML-DSA', async () => {
    const d = tamperedCopy(dataDir, 'mldsa-altered', (db) => flipColumn(db, 'pq_signature', 20));
    assert.equal(failedWithOneLine(await verify(d)), 'bastion: checkpoint at seq 20: bad ML-DSA-65 signature (the ECDSA P-256 signature is valid)');
  });

  test('the ML-DSA key swapped for another, every ML-DSA signature re-made by it: the ECDSA signatures no longer match', async () => {
    const attacker = generateMlDsaKeyPair();
    const attackerFp = publicKeyFingerprint(attacker.publicKey);
    // The ECDSA half of hybridSign is thrown away; only its ML-DSA half is used (same framing: same curve name).
    const throwaway = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const d = tamperedCopy(dataDir, 'mldsa-swapped', (db) => {
      db.prepare('INSERT INTO pq_keys (fingerprint, public_key, added_at) VALUES (?, ?, ?)').run(attackerFp, exportPublicKeyPem(attacker.publicKey), Date.now());
      const rows = db.prepare('SELECT seq, hash, ts, signer FROM checkpoints').all() as Array<{ seq: number; hash: string; ts: number; signer: string }>;
      for (const r of rows) {
        const pq = hybridSign(CHECKPOINT_CONTEXT_V2, hybridCheckpointMessage(r.seq, r.hash, r.ts, r.signer, attackerFp), { classic: throwaway, pq: attacker.privateKey }).pq;
        db.prepare('UPDATE checkpoints SET pq_key = ?, pq_signature = ? WHERE seq = ?').run(attackerFp, pq, r.seq);
      }
    });
    assert.equal(failedWithOneLine(await verify(d)), 'bastion: checkpoint at seq 10: bad ECDSA P-256 signature (the ML-DSA-65 signature is valid)');

    // The same key put in place of the stored one, under the old fingerprint: refused as a mismatch.
    const original = new Database(join(dataDir, 'audit.db'), { readonly: true });
    const fp = (original.prepare('SELECT fingerprint FROM pq_keys').get() as { fingerprint: string }).fingerprint;
    original.close();
    const replaced = tamperedCopy(dataDir, 'mldsa-replaced', (db) => {
      db.prepare('UPDATE pq_keys SET public_key = ?').run(exportPublicKeyPem(attacker.publicKey));
      const rows = db.prepare('SELECT seq, hash, ts, signer FROM checkpoints').all() as Array<{ seq: number; hash: string; ts: number; signer: string }>;
      for (const r of rows) {
        const pq = hybridSign(CHECKPOINT_CONTEXT_V2, hybridCheckpointMessage(r.seq, r.hash, r.ts, r.signer, fp), { classic: throwaway, pq: attacker.privateKey }).pq;
        db.prepare('UPDATE checkpoints SET pq_signature = ? WHERE seq = ?').run(pq, r.seq);
      }
    });
    assert.equal(failedWithOneLine(await verify(replaced)), `bastion: checkpoint at seq 10: ML-DSA key ${fp} is stored with another public key`);
  });

  test('a hybrid checkpoint stripped to the classic form, or a classic-only one signed after it: refused', async () => {
    const stripped = tamperedCopy(dataDir, 'stripped', (db) => db.prepare('UPDATE checkpoints SET pq_signature = NULL, pq_key = NULL WHERE seq = 20').run());
    // Its ECDSA signature covers the hybrid message, not the classic-only one.
    assert.equal(failedWithOneLine(await verify(stripped)), 'bastion: checkpoint at seq 20: bad signature');

    // Even validly signed by the real ECDSA key (e.g. by someone who can forge ECDSA): a downgrade.
    const signer = classicSigner(dataDir);
    const downgraded = tamperedCopy(dataDir, 'downgraded', (db) => {
      const head = db.prepare('SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1').get() as { seq: number; hash: string };
      const cp = signCheckpoint(signer, head.seq, head.hash, Date.now() + 1000);
      db.prepare('INSERT INTO checkpoints (seq, hash, ts, signature, signer) VALUES (?, ?, ?, ?, ?)').run(cp.seq, cp.hash, cp.ts, cp.signature, cp.signerFingerprint);
    });
    assert.match(failedWithOneLine(await verify(downgraded)), /^bastion: checkpoint at seq 20: classic-only signature after the hybrid checkpoint at seq 10 \(a downgrade/);
  });

  test('a log from before hybrid signing (old schema, classic-only checkpoints) verifies with a warning; the next start adds the ML-DSA key', async () => {
    const signer = classicSigner(dataDir);
    const legacy = tamperedCopy(dataDir, 'legacy', (db) => {
      // What a Bastion without hybrid signatures wrote: v1 checkpoints, schema version 1.
      const rows = db.prepare('SELECT id, seq, hash, ts FROM checkpoints').all() as Array<{ id: number; seq: number; hash: string; ts: number }>;
      for (const r of rows) db.prepare('UPDATE checkpoints SET signature = ? WHERE id = ?').run(signCheckpoint(signer, r.seq, r.hash, r.ts).signature, r.id);
      db.exec('ALTER TABLE checkpoints DROP COLUMN pq_signature; ALTER TABLE checkpoints DROP COLUMN pq_key; DROP TABLE pq_keys; DROP TABLE pruned; PRAGMA user_version = 1');
    });
    rmSync(join(legacy, 'audit', 'signer-mldsa.key'));

    const old = await verify(legacy);
    assert.equal(old.code, 0, old.stderr);
    assert.equal(old.stdout, `audit log intact: ${RECORDS} records, 2 checkpoints, last signed at seq ${RECORDS}; signatures: ECDSA P-256 (classic only)\n`);
    assert.equal(old.stderr, 'bastion: warning: 2 checkpoints (seq 10 to 20) have no post-quantum signature (classic-only, written before ML-DSA signing): they hold only as long as ECDSA P-256 does\n');

    // The broker adds signer-mldsa.key to the existing classic signer, says so, and signs hybrid from then on.
    const infos: string[] = [];
    const logger: Logger = { debug() {}, info: (_o, msg) => void infos.push(msg ?? ''), warn() {}, error() {} };
    assert.equal(existsSync(join(legacy, 'audit', 'signer-mldsa.key')), false);
    await writeLog(legacy, logger);
    assert.equal(statSync(join(legacy, 'audit', 'signer-mldsa.key')).mode & 0o777, 0o600);
    assert.ok(
      infos.some((m) => m.startsWith('ML-DSA-65 key added to the existing audit signer')),
      infos.join('\n'),
    );
    const upgraded = await verify(legacy);
    assert.equal(upgraded.code, 0, upgraded.stderr);
    assert.equal(upgraded.stdout, `audit log intact: ${2 * RECORDS} records, 4 checkpoints, last signed at seq ${2 * RECORDS}; signatures: ECDSA P-256 (classic only), ${BOTH}\n`);
    assert.match(upgraded.stderr, /^bastion: warning: 2 checkpoints \(seq 10 to 20\) have no post-quantum signature/);
  });
});
