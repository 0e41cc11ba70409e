/**
 * The JSON-lines audit export on real files: rotation at maxBytes keeping `keep` files
 * (every line valid ECS JSON, oldest to newest consecutive), modes 0600/0700, a write error
 * logged once while the sink keeps trying, appending to an existing file, and a close that
 * returns while a write is stuck (a FIFO nobody reads), so a broker's stop cannot hang on it.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, closeSync, constants, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { auditSchema, type AuditConfig } from '../../src/core/audit-config.js';
import { createAuditExports } from '../../src/server/audit/exports.js';
import { JsonlSink } from '../../src/server/audit/jsonl-sink.js';
import { at, auditRecords } from '../helpers/syslog-collector.js';
import { withTimeout } from './support.js';
import { RecordingLogger } from './tls-support.js';

const dir = mkdtempSync(join(tmpdir(), 'bastion-audit-jsonl-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const BASE: AuditConfig = auditSchema.parse({ checkpointEvery: 1000, checkpointSeconds: 300, aggregateSeconds: 10 });

test('JSON lines: rotates at maxBytes keeping `keep` files, every line valid ECS JSON, mode 0600 in a 0700 directory', async () => {
  const logDir = join(dir, 'jsonl', 'nested');
  const path = join(logDir, 'audit.jsonl');
  const exp = createAuditExports({ ...BASE, jsonl: { path: 'jsonl/nested/audit.jsonl', maxBytes: 4096, keep: 2 } }, (p) => join(dir, p), new RecordingLogger());
  assert.ok(exp !== null);
  const rs = auditRecords(40);
  for (const r of rs) exp.write(r);
  await exp.close();

  assert.equal(statSync(logDir).mode & 0o777, 0o700);
  assert.ok(!existsSync(`${path}.3`), 'only `keep` rotated files');
  const files = [`${path}.2`, `${path}.1`, path];
  const seqs: number[] = [];
  for (const f of files) {
    assert.equal(statSync(f).mode & 0o777, 0o600, f);
    const text = readFileSync(f, 'utf8');
    assert.ok(Buffer.byteLength(text) <= 4096, `${f} is ${Buffer.byteLength(text)} bytes`);
    assert.ok(text.endsWith('\n'));
    for (const line of text.slice(0, -1).split('\n')) {
      const doc = JSON.parse(line) as unknown;
      assert.equal(at(doc, 'event.kind'), 'event');
      assert.equal(typeof at(doc, 'bastion.audit.hash'), 'string');
      seqs.push(at(doc, 'event.sequence') as number);
    }
  }
  // Oldest to newest across path.2, path.1, path: consecutive and ending with the last record.
  assert.ok(seqs.length > 3 && seqs.length < 40, `${seqs.length} lines kept`);
  assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => 40 - seqs.length + 1 + i));
});

test('JSON lines: a write error is logged once and the sink keeps trying until the file is writable', async () => {
  const blocked = join(dir, 'blocked');
  writeFileSync(blocked, 'a file where the directory should be');
  const path = join(blocked, 'audit.jsonl');
  const logger = new RecordingLogger();
  const sink = new JsonlSink({ path, maxBytes: 1 << 20, keep: 3 }, logger);
  const rs = auditRecords(5);
  for (const r of rs.slice(0, 2)) sink.write(JSON.stringify({ seq: r.seq }));
  const failure = await logger.waitFor('audit jsonl: write failed, retrying');
  assert.ok(['ENOTDIR', 'EEXIST'].includes(String(failure.obj.code)), String(failure.obj.code));
  for (const r of rs.slice(2)) sink.write(JSON.stringify({ seq: r.seq }));
  // Make the path usable; the retry (with backoff) writes everything held meanwhile.
  rmSync(blocked);
  mkdirSync(blocked, { mode: 0o700 });
  await logger.waitFor('audit jsonl: writing again', {}, 15_000);
  assert.equal(logger.lines.items.filter((l) => l.msg === 'audit jsonl: write failed, retrying').length, 1, 'logged once per kind');
  await sink.close();
  const lines = readFileSync(path, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { seq: number }).seq);
  assert.deepEqual(lines, [1, 2, 3, 4, 5]);
});

test('JSON lines: an existing file is appended to and tightened to 0600', async () => {
  const path = join(dir, 'existing.jsonl');
  writeFileSync(path, '{"seq":0}\n');
  chmodSync(path, 0o644);
  const sink = new JsonlSink({ path, maxBytes: 1 << 20, keep: 1 }, new RecordingLogger());
  sink.write('{"seq":1}');
  await withTimeout(sink.close(), 5000, 'close');
  assert.equal(readFileSync(path, 'utf8'), '{"seq":0}\n{"seq":1}\n');
  assert.equal(statSync(path).mode & 0o777, 0o600);
});


test('JSON lines: close() returns while a write is stuck (a FIFO whose reader stopped reading)', async () => {
  const path = join(dir, 'audit.fifo');
  execFileSync('mkfifo', ['-m', '0600', path]);
  // A reader that never reads: the sink's open succeeds, its write blocks once the pipe is full.
  const reader = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const logger = new RecordingLogger();
    const sink = new JsonlSink({ path, maxBytes: 1 << 30, keep: 1 }, logger);
    // Far more than a pipe holds (64 KiB on Linux).
    for (const r of auditRecords(20)) sink.write(JSON.stringify({ seq: r.seq, pad: 'x'.repeat(50_000) }));
    await withTimeout(sink.close(200), 10_000, 'close() with a write stuck in a FIFO');
    await logger.waitFor('audit jsonl: closed with records unwritten');
  } finally {
    // The reader's close fails the stuck write (EPIPE), which frees the thread it holds.
    closeSync(reader);
  }
});
