/**
 * The session ticket key store on a real file: created 0600 with a 48-byte key, rotated
 * when due (not before), and a second store on the same file adopts a rotation.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { silentLogger } from '../../src/core/logger.js';
import { TICKET_KEY_BYTES, TicketKeyStore } from '../../src/transport/tls-tickets.js';

const HOUR = 3_600_000;

test('ticket keys: created private, rotated when due, shared through the file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bastion-tickets-'));
  let now = Date.parse('2026-11-26T00:00:00Z');
  const clock = (): number => now;
  const file = join(dir, 'keys');
  const a = TicketKeyStore.open(file, 12, silentLogger, clock);
  const b = TicketKeyStore.open(file, 12, silentLogger, clock);
  try {
    assert.equal(a.key.length, TICKET_KEY_BYTES);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.ok(a.key.equals(b.key), 'the second store adopts the first one\'s key');

    const first = a.key;
    now += 11 * HOUR;
    a.rotateIfDue();
    assert.ok(a.key.equals(first), 'not rotated before rotateHours');

    const changes: Buffer[] = [];
    b.onChange((k) => changes.push(k));
    now += 2 * HOUR;
    a.rotateIfDue();
    assert.ok(!a.key.equals(first), 'rotated after rotateHours');
    assert.equal(statSync(file).mode & 0o777, 0o600, 'still private after the atomic replace');
    assert.equal(b.refresh(), true);
    assert.ok(b.key.equals(a.key));
    assert.equal(changes.length, 1);

    // A second store that finds a fresh key in the file adopts it instead of rotating again.
    const current = a.key;
    b.rotateIfDue();
    assert.ok(b.key.equals(current));
  } finally {
    a.close();
    b.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('ticket keys: an unreadable key file is replaced with a fresh key', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bastion-tickets-'));
  const file = join(dir, 'keys');
  writeFileSync(file, 'garbage');
  const s = TicketKeyStore.open(file, 12, silentLogger);
  try {
    assert.equal(s.key.length, TICKET_KEY_BYTES);
    assert.match(readFileSync(file, 'utf8'), /^bastion-ticket-key v1 \d+ [0-9a-f]{96}\n$/);
  } finally {
    s.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
