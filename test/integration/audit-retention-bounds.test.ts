/**
 * Retention's bounds with the real writer (AuditWriter) on a real audit.db, the real
 * signer files and the real `bastion audit verify`: records older than `maxAgeDays` are
 * pruned in bounded batches; under connect/disconnect churn with `maxBytes` the file stays
 * bounded and its space is given back (incremental vacuum). The clock is passed in (the
 * writer and the pruner take `now`), so "400 days ago" needs no waiting. Figures (bytes per
 * record, sizes, batch times) are printed as test diagnostics.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { auditSchema, type AuditRetentionConfig } from '../../src/core/audit-config.js';
import { silentLogger } from '../../src/core/logger.js';
import type { SecurityEvent } from '../../src/core/security-events.js';
import { AuditPruner } from '../../src/server/audit-pruner.js';
import { ensureAuditSigner } from '../../src/server/audit-signer.js';
import { AuditWriter } from '../../src/server/audit-writer.js';
import { AUDIT_DB_FILE, SqliteAuditStore } from '../../src/store/sqlite/audit-store.js';
import { BASTION_MAIN, run } from './support.js';

const DAY_MS = 86_400_000;
const ISO = '\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z';
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A connect and a disconnect of device `i`, as the broker records them. */
function cycle(i: number): [SecurityEvent, SecurityEvent] {
  const clientId = `sensor-${String(i % 5000).padStart(5, '0')}`;
  const remoteAddress = `10.0.${(i >> 8) & 255}.${i & 255}:${40000 + (i % 20000)}`;
  return [
    { type: 'connection.accepted', listener: 'mqtts', remoteAddress, clientId, principal: clientId, method: 'certificate', protocolVersion: 5 },
    { type: 'client.disconnected', clientId, remoteAddress, listener: 'mqtts', reasonCode: 0, reason: 'normal disconnection' },
  ];
}

async function openLog(): Promise<{ dataDir: string; store: SqliteAuditStore; writer: AuditWriter; signer: Awaited<ReturnType<typeof ensureAuditSigner>>['signer']; clock: { now: number } }> {
  const dataDir = join(mkdtempSync(join(tmpdir(), 'bastion-audit-bounds-')), 'data');
  dirs.push(join(dataDir, '..'));
  const { signer } = await ensureAuditSigner(dataDir, silentLogger);
  const store = SqliteAuditStore.open(join(dataDir, AUDIT_DB_FILE), { create: true });
  store.addSigner(signer.fingerprint, signer.certPem, Date.now());
  const clock = { now: Date.now() };
  const writer = new AuditWriter({ store, signer, checkpointEvery: 1000, exports: null, logger: silentLogger, now: () => clock.now });
  return { dataDir, store, writer, signer, clock };
}

function retention(over: Partial<AuditRetentionConfig>): AuditRetentionConfig {
  return { ...auditSchema.parse({}).retention, ...over };
}

test('retention by age: records older than maxAgeDays go in batches of 1000 behind one signed marker; verify names what went', async () => {
  const { dataDir, store, writer, signer, clock } = await openLog();
  const old = clock.now - 400 * DAY_MS;
  for (let i = 0; i < 2500; i++) for (const e of cycle(i)) writer.append(old + i, e);
  writer.flush();
  for (let i = 0; i < 500; i++) for (const e of cycle(i)) writer.append(clock.now, e);
  writer.checkpointNow();
  const pruner = new AuditPruner({ store, signer, retention: retention({ maxAgeDays: 365 }), logger: silentLogger, now: () => clock.now });
  const report = await pruner.run();
  assert.equal(report.throughSeq, 5000);
  assert.equal(report.deleted, 5000);
  assert.equal(report.batches, 5, 'batches of at most 1000 records');
  assert.deepEqual(store.bounds(), { first: 5001, last: 6000 });
  // Nothing is older than the bound now: a second pass does nothing.
  assert.equal((await pruner.run()).deleted, 0);
  writer.close();
  store.close();

  const r = await run(process.execPath, [BASTION_MAIN, 'audit', 'verify', '--strict', '--data-dir', dataDir]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`^audit log intact: 1000 records, 1 checkpoint, last signed at seq 6000; records 1 to 5000 pruned at ${ISO} by retention \\(the newest of them from ${new Date(old + 2499).toISOString().replace(/\./g, '\\.')}\\)`));
});

test('retention by size under churn: 50,000 events through the writer, pruned as they come, keep audit.db under maxBytes and give the space back', async (t) => {
  const { dataDir, store, writer, signer, clock } = await openLog();
  const maxBytes = 2 * 1024 * 1024;
  const pruner = new AuditPruner({ store, signer, retention: retention({ maxBytes }), logger: silentLogger, now: () => clock.now });
  const CYCLES = 25_000;
  const CHUNK = 2500;
  let peakUsed = 0;
  let maxBatchMs = 0;
  let pruneMs = 0;
  let pruned = 0;
  let firstPerRecord = 0;
  for (let c = 0; c < CYCLES; c += CHUNK) {
    for (let i = c; i < c + CHUNK; i++) for (const e of cycle(i)) writer.append(clock.now, e);
    writer.flush();
    const space = store.space();
    peakUsed = Math.max(peakUsed, space.usedBytes);
    const bounds = store.bounds()!;
    if (firstPerRecord === 0 && space.usedBytes > maxBytes) firstPerRecord = space.usedBytes / (bounds.last - bounds.first + 1);
    // What the broker's interval timer does between bursts.
    const report = await pruner.run();
    maxBatchMs = Math.max(maxBatchMs, report.maxBatchMs);
    pruneMs += report.totalMs;
    pruned += report.deleted;
    assert.ok(report.usedBytesAfter <= maxBytes, `after a pass the rows take ${report.usedBytesAfter} bytes, over ${maxBytes}`);
  }
  writer.close();
  const last = store.bounds()!;
  const space = store.space();
  store.close();
  // Closing checkpoints the WAL into the file: its size now is what the disk holds.
  const fileBytes = statSync(join(dataDir, AUDIT_DB_FILE)).size;
  assert.ok(space.incremental, 'a new audit.db uses incremental auto-vacuum');
  assert.ok(fileBytes <= maxBytes * 1.1, `audit.db is ${fileBytes} bytes with maxBytes ${maxBytes}`);
  assert.ok(pruned > 2 * CYCLES * 0.5, 'most records were pruned');
  t.diagnostic(`node ${process.version}; 50,000 records written, ${pruned} pruned, ${last.last - last.first + 1} kept (seq ${last.first}..${last.last})`);
  t.diagnostic(`bytes per record (rows + indexes + checkpoints): ${firstPerRecord.toFixed(0)}`);
  t.diagnostic(`audit.db: peak rows ${peakUsed} B between passes, file ${fileBytes} B after close (maxBytes ${maxBytes})`);
  t.diagnostic(`pruning: ${pruneMs.toFixed(1)} ms in all, longest batch ${maxBatchMs.toFixed(2)} ms (delete + sign + vacuum step), ${((pruneMs * 1000) / Math.max(1, pruned)).toFixed(1)} µs per record`);

  const r = await run(process.execPath, [BASTION_MAIN, 'audit', 'verify', '--strict', '--data-dir', dataDir]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /records 1 to \d+ pruned at /);
});
