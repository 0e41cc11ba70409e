/**
 * Every stored column of the audit log is covered: a real broker writes 60 records (a
 * signed checkpoint every 10), then each column of `records` and of `checkpoints` is
 * altered in turn, through SQLite, in a copy of the data directory, and `bastion audit
 * verify` must fail with one line naming the record (or checkpoint). The query columns
 * `type` and `client_id` are the point: they sit beside the hashed event and are what
 * `audit query --type/--client` filters on, so an unchecked edit would hide a record.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { SecurityEvent } from '../../src/core/security-events.js';
import { failedWithOneLine, tamperedCopy } from '../helpers/audit-files.js';
import { startTestBroker } from '../helpers/broker.js';
import { BASTION_MAIN, run, type ProcResult } from './support.js';

function eventFor(i: number): SecurityEvent {
  if (i % 5 === 0) return { type: 'ban.added', kind: 'ip', value: `192.0.2.${i}`, reason: 'test', createdBy: 'columns-test', expiresAt: null, auto: false };
  return { type: 'auth.failure', listener: 'plain', remoteAddress: '127.0.0.1', clientId: `dev-${i % 3}`, provider: 'password', reasonCode: 0x86, reason: 'bad user name or password' };
}

function verify(dataDir: string): Promise<ProcResult> {
  return run(process.execPath, [BASTION_MAIN, 'audit', 'verify', '--data-dir', dataDir]);
}

/** Flips the first hex digit of a hash column's value (SQL expression). */
const FLIP = (col: string): string => `(CASE substr(${col}, 1, 1) WHEN 'a' THEN 'b' ELSE 'a' END) || substr(${col}, 2)`;

describe('audit verify covers every stored column', () => {
  let dir: string;
  let dataDir: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'bastion-audit-columns-'));
    dataDir = join(dir, 'data');
    const b = await startTestBroker({ dataDir, audit: { checkpointEvery: 10 }, limits: { authFailures: { maxFailures: 0 } } });
    try {
      for (let i = 1; i <= 60; i++) {
        b.server.broker.events.emit(eventFor(i));
        b.server.audit.flush();
      }
    } finally {
      await b.stop();
    }
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('altering any one column of a record or a checkpoint fails verify with one line naming it', async () => {
    const intact = await verify(dataDir);
    assert.equal(intact.code, 0, intact.stderr);

    // Every column of `records` (record 42 is an auth.failure of dev-0; record 45 a ban without a client id).
    const recordCases: Array<[string, string, string]> = [
      ['seq', 'UPDATE records SET seq = 1042 WHERE seq = 42', 'bastion: record 42 is missing (deleted)'],
      ['ts', 'UPDATE records SET ts = ts + 1 WHERE seq = 42', 'bastion: record 42 was altered (hash mismatch)'],
      ['type', "UPDATE records SET type = 'connection.accepted' WHERE seq = 42", 'bastion: record 42 was altered (its stored type column does not match the hashed event)'],
      ['client_id', "UPDATE records SET client_id = 'dev-9' WHERE seq = 42", 'bastion: record 42 was altered (its stored client_id column does not match the hashed event)'],
      ['client_id (set where the event has none)', "UPDATE records SET client_id = 'dev-9' WHERE seq = 45", 'bastion: record 45 was altered (its stored client_id column does not match the hashed event)'],
      ['client_id (cleared)', 'UPDATE records SET client_id = NULL WHERE seq = 42', 'bastion: record 42 was altered (its stored client_id column does not match the hashed event)'],
      ['event', "UPDATE records SET event = replace(event, 'dev-0', 'dev-9') WHERE seq = 42", 'bastion: record 42 was altered (hash mismatch)'],
      ['prev_hash', `UPDATE records SET prev_hash = ${FLIP('prev_hash')} WHERE seq = 42`, 'bastion: record 42 was altered (hash mismatch)'],
      ['hash', `UPDATE records SET hash = ${FLIP('hash')} WHERE seq = 42`, 'bastion: record 42 was altered (hash mismatch)'],
    ];
    for (const [column, sql, expected] of recordCases) {
      const d = tamperedCopy(dataDir, `records-${column.replace(/\W+/g, '-')}`, (db) => db.prepare(sql).run());
      assert.equal(failedWithOneLine(await verify(d)), expected, `records.${column}`);
    }

    // Every column of `checkpoints` that means something (id only orders two checkpoints at one seq).
    const checkpointCases: Array<[string, string, RegExp]> = [
      ['seq', 'UPDATE checkpoints SET seq = 31 WHERE seq = 30', /^bastion: checkpoint at seq 31: bad signature$/],
      ['hash', `UPDATE checkpoints SET hash = ${FLIP('hash')} WHERE seq = 30`, /^bastion: checkpoint at seq 30: bad signature$/],
      ['ts', 'UPDATE checkpoints SET ts = ts + 1 WHERE seq = 30', /^bastion: checkpoint at seq 30: bad signature$/],
      ['signature', "UPDATE checkpoints SET signature = 'AAAA' || substr(signature, 5) WHERE seq = 30", /^bastion: checkpoint at seq 30: bad ECDSA P-256 signature \(the ML-DSA-65 signature is valid\)$/],
      ['signer', "UPDATE checkpoints SET signer = 'AB:CD' WHERE seq = 30", /^bastion: checkpoint at seq 30: unknown signer AB:CD$/],
      ['pq_signature', "UPDATE checkpoints SET pq_signature = 'AAAA' || substr(pq_signature, 5) WHERE seq = 30", /^bastion: checkpoint at seq 30: bad ML-DSA-65 signature \(the ECDSA P-256 signature is valid\)$/],
      ['pq_key', "UPDATE checkpoints SET pq_key = 'AB:CD' WHERE seq = 30", /^bastion: checkpoint at seq 30: unknown ML-DSA key AB:CD$/],
    ];
    for (const [column, sql, expected] of checkpointCases) {
      const d = tamperedCopy(dataDir, `checkpoints-${column}`, (db) => db.prepare(sql).run());
      assert.match(failedWithOneLine(await verify(d)), expected, `checkpoints.${column}`);
    }
  });

  test('a record hidden from query --type by editing its type column is what verify now names', async () => {
    // The attack the column check closes: the record vanishes from the filtered query...
    const d = tamperedCopy(dataDir, 'hidden', (db) => db.prepare("UPDATE records SET type = 'ban.removed' WHERE seq = 42").run());
    const q = await run(process.execPath, [BASTION_MAIN, 'audit', 'query', '--type', 'auth.failure', '--client', 'dev-0', '--json', '--data-dir', d]);
    assert.equal(q.code, 0, q.stderr);
    assert.ok(!q.stdout.includes('"seq":42,'), 'the edited record no longer matches the filter');
    // ...and verify, which used to pass, fails naming it.
    assert.equal(failedWithOneLine(await verify(d)), 'bastion: record 42 was altered (its stored type column does not match the hashed event)');
  });
});
