/**
 * The session ticket key store on a real file: created 0600 with a 48-byte key, rotated
 * when due (not before), a second store on the same file adopts a rotation, and the
 * process-wide store of a file (`shared`) hands an installed key to all its holders.
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

test('ticket keys: one shared store per file in a process; an installed key reaches every holder and the file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bastion-tickets-'));
  const file = join(dir, 'keys');
  const listener = TicketKeyStore.shared(file, 12, silentLogger);
  const cluster = TicketKeyStore.shared(file, 12, silentLogger);
  try {
    assert.equal(listener, cluster, 'the same store for the same file');
    const seen: Buffer[] = [];
    const off = listener.onChange((k) => seen.push(k));
    const key = Buffer.alloc(TICKET_KEY_BYTES, 7);
    cluster.install(1_800_000_000_000, key);
    assert.deepEqual(seen, [key]);
    assert.equal(listener.createdAt, 1_800_000_000_000);
    assert.match(readFileSync(file, 'utf8'), new RegExp(`^bastion-ticket-key v1 1800000000000 ${key.toString('hex')}\\n$`));
    assert.equal(statSync(file).mode & 0o777, 0o600);
    cluster.install(1_800_000_000_000, key);
    assert.equal(seen.length, 1, 'installing the current key again changes nothing');
    off();
    cluster.install(1_800_000_000_001, Buffer.alloc(TICKET_KEY_BYTES, 8));
    assert.equal(seen.length, 1, 'an unsubscribed holder hears nothing');
    assert.throws(() => cluster.install(1, Buffer.alloc(16)), /48 bytes/);
    cluster.close();
    // One holder left: the store is still the process's store for the file.
    const third = TicketKeyStore.shared(file, 12, silentLogger);
    assert.equal(third, listener);
    third.close();
    listener.close();
    // All holders gone: a new holder gets a new store, which reads the installed key from the file.
    const again = TicketKeyStore.shared(file, 12, silentLogger);
    assert.notEqual(again, listener);
    assert.ok(again.key.equals(Buffer.alloc(TICKET_KEY_BYTES, 8)));
    again.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
