/**
 * Defender audit, live checks over hand-built broker snapshots: a revoked certificate still
 * connected, one certificate on several connections, client-id takeover storms.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { liveChecks, type LiveClient, type LiveSnapshot } from '../../src/defender/audit/index.js';

const at = new Date('2026-06-01T00:00:00Z');
const client = (clientId: string, certSerial: string | undefined, remote: string): LiveClient => ({
  clientId,
  ...(certSerial !== undefined ? { certSerial, certFingerprint: `FP-${certSerial}` } : {}),
  remote,
  connectedAt: at,
});
const snap = (s: Partial<LiveSnapshot>): LiveSnapshot => ({ clients: [], takeovers: [], revokedSerials: new Set(), ...s });
const checksOf = (s: LiveSnapshot): string[] => liveChecks(s).map((f) => `${f.check}:${f.severity}:${f.subject}`);

test('a healthy snapshot has no live finding', () => {
  const s = snap({ clients: [client('a', '0A', '10.0.0.1:1'), client('b', '0B', '10.0.0.2:1'), client('u', undefined, '10.0.0.3:1')], takeovers: [{ clientId: 'a', count: 1, windowMs: 60_000 }], revokedSerials: new Set(['0C']) });
  assert.deepEqual(checksOf(s), []);
});

test('a revoked certificate still connected is critical (serials compared without leading zeros, any case)', () => {
  const s = snap({ clients: [client('a', '0a1F', '10.0.0.1:1'), client('b', '0B', '10.0.0.2:1')], revokedSerials: new Set(['A1F']) });
  assert.deepEqual(checksOf(s), ['revoked-certificate-connected:critical:0a1F']);
  assert.match(liveChecks(s)[0]!.fix, /bastion clients kick a/);
});

test('one certificate on two concurrent connections is critical', () => {
  const s = snap({ clients: [client('dev-1', '0A', '10.0.0.1:1'), client('dev-1-clone', '0A', '203.0.113.9:4'), client('b', '0B', '10.0.0.2:1')] });
  assert.deepEqual(checksOf(s), ['certificate-shared:critical:0A']);
  assert.match(liveChecks(s)[0]!.message, /2 concurrent connections: dev-1@10\.0\.0\.1:1, dev-1-clone@203\.0\.113\.9:4/);
});

test('a takeover storm on one client id is high from the threshold on', () => {
  const s = snap({ takeovers: [{ clientId: 'shared-id', count: 5, windowMs: 60_000 }, { clientId: 'calm', count: 4, windowMs: 60_000 }] });
  assert.deepEqual(checksOf(s), ['conflicting-client-ids:high:shared-id']);
  assert.deepEqual(liveChecks(s, { takeoverStorm: 4 }).map((f) => f.subject).sort(), ['calm', 'shared-id']);
});
