/**
 * Micro benchmark of the audit side: how many records per second it chains, stores
 * (SQLite WAL, synchronous=NORMAL, one transaction per event-loop turn) and checkpoints
 * under a flood of security events, and how many `limit.hit` and `authz.denied` events
 * per second it absorbs into aggregated records. Events are emitted on a real SecurityEvents stream in
 * bursts of B per event-loop turn, as a flood of refused connections would arrive.
 *
 * Usage: npm run build && node dist/bench/audit-bench.js [records=200000] [burst=1000]
 * Prints records/s per case (a figure, not a check).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { auditSchema } from '../src/core/audit-config.js';
import { silentLogger } from '../src/core/logger.js';
import { SecurityEvents, type SecurityEvent } from '../src/core/security-events.js';
import { startAuditSide } from '../src/server/audit-side.js';

const total = Number(process.argv[2] ?? '200000');
const burst = Number(process.argv[3] ?? '1000');

function refused(i: number): SecurityEvent {
  return {
    type: 'connection.refused',
    stage: 'tls',
    listener: 'mqtts',
    remoteAddress: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
    clientId: `device-${i}`,
    reasonCode: 0x87,
    reason: 'certificate revoked',
    tls: { version: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384', group: 'X25519MLKEM768', resumed: false },
  };
}

function hit(i: number): SecurityEvent {
  return { type: 'limit.hit', limit: 'publish-rate', listener: 'mqtts', clientId: `device-${i % 100}`, action: 'dropped', count: 1 };
}

/** A client publishing to a topic it may not, in a loop. */
function denied(i: number): SecurityEvent {
  return { type: 'authz.denied', clientId: `device-${i % 100}`, principal: `device-${i % 100}`, remoteAddress: '10.0.0.1', action: 'publish', topic: 'plant/1/valve', reason: 'no rule allows' };
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

async function run(label: string, make: (i: number) => SecurityEvent, checkpointEvery: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'bastion-audit-bench-'));
  const events = new SecurityEvents();
  const side = await startAuditSide({ audit: auditSchema.parse({ checkpointEvery }), baseDir: dir, dataDir: dir, events, logger: silentLogger });
  try {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < total; i += burst) {
      for (let j = i; j < Math.min(total, i + burst); j++) events.emit(make(j));
      await turn();
    }
    side.flush();
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const rate = Math.round(total / seconds);
    process.stdout.write(`${label}: ${total} events in ${seconds.toFixed(2)} s = ${rate} events/s, ${side.written} records written (checkpointEvery ${checkpointEvery})\n`);
  } finally {
    await side.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await run('connection.refused, one record each', refused, 1000);
await run('connection.refused, one record each', refused, 100);
await run('limit.hit flood, aggregated', hit, 1000);
await run('authz.denied flood, aggregated', denied, 1000);
