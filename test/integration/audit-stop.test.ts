/**
 * A broker's stop is bounded whatever its neighbours do: with the JSON-lines export
 * writing into a FIFO whose reader stopped reading, a syslog collector that accepts and
 * never reads, and a TCP connection to the HTTPS admin API that never starts its TLS
 * handshake, `stop()` (what SIGTERM runs) still finishes, after summing the aggregation
 * window into the log and signing a final checkpoint over the last record.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { SqliteAuditStore } from '../../src/store/sqlite/audit-store.js';
import { startTestBroker } from '../helpers/broker.js';
import { withTimeout } from './support.js';

const dir = mkdtempSync(join(tmpdir(), 'bastion-audit-stop-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('stop() finishes with a stuck JSON-lines file, a syslog collector that never reads and a silent admin connection; the log is complete and signed', async () => {
  const fifo = join(dir, 'audit.fifo');
  execFileSync('mkfifo', ['-m', '0600', fifo]);
  // A reader that never reads: the export's open succeeds, its writes block once the pipe is full.
  const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
  const held: net.Socket[] = [];
  const collector = net.createServer((s) => {
    s.pause();
    held.push(s);
  });
  await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
  const collectorPort = (collector.address() as net.AddressInfo).port;
  const dataDir = join(dir, 'data');
  const b = await startTestBroker({
    dataDir,
    admin: {},
    audit: { aggregateSeconds: 3600, jsonl: { path: fifo }, syslog: { transport: 'tcp', host: '127.0.0.1', port: collectorPort } },
  });
  const silent = new net.Socket();
  try {
    const adminPort = b.server.admin?.port;
    assert.ok(adminPort !== undefined, 'the admin API is up');
    await new Promise<void>((resolve, reject) => {
      silent.once('error', reject);
      silent.connect(adminPort, '127.0.0.1', resolve);
    });
    silent.on('error', () => undefined);
    // Far more than a pipe or a socket buffer holds: both exports are stuck or backed up.
    for (let i = 0; i < 40; i++) {
      b.server.broker.events.emit({ type: 'admin.change', actor: 'test', remoteAddress: '127.0.0.1', action: 'pad', target: String(i), outcome: 'ok', detail: { pad: 'x'.repeat(50_000) } });
    }
    // A summed event still in the window at stop: the stop writes it.
    for (let i = 0; i < 3; i++) {
      b.server.broker.events.emit({ type: 'authz.denied', clientId: 'c', principal: null, remoteAddress: '127.0.0.1', action: 'publish', topic: 't', reason: 'no rule allows' });
    }
    await withTimeout(b.stop(), 20_000, 'the broker to stop');
  } finally {
    silent.destroy();
    for (const s of held) s.destroy();
    collector.close();
    // The reader's close fails the stuck write (EPIPE), which frees the thread it holds.
    closeSync(reader);
  }
  const store = SqliteAuditStore.open(join(dataDir, 'audit.db'), { create: false });
  try {
    const rows = [...store.all()];
    const last = rows[rows.length - 1]!;
    assert.equal(last.type, 'authz.denied');
    assert.equal((JSON.parse(last.eventJson) as { count?: number }).count, 3);
    assert.equal(rows.filter((r) => r.type === 'admin.change').length, 40);
    assert.equal(store.lastCheckpointSeq(), last.seq, 'the final checkpoint covers the last record');
  } finally {
    store.close();
  }
});
