/**
 * Console sessions (admin/api/console-sessions.ts): the cookie names a session by its hash
 * only, a session ends after its idle time and after its absolute lifetime, the number of
 * sessions is bounded, ending by a predicate (a revoked token's) ends just those, and the
 * CSRF check compares exactly.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConsoleSessions, csrfMatches, SESSION_IDLE_MS, SESSION_MAX_AGE_MS } from '../../src/admin/api/console-sessions.js';
import type { Actor } from '../../src/admin/api/admin-change.js';

const actor: Actor = { kind: 'token', name: 'ops', remoteAddress: '127.0.0.1' };
const proof = { kind: 'token' as const, tokenHash: 'a'.repeat(64) };

test('a session is found by its cookie, not by anything else, and its idle clock restarts on use', () => {
  let now = 1_000_000;
  const sessions = new ConsoleSessions(() => now);
  const { cookie, session } = sessions.create(actor, 'admin', proof);
  assert.match(cookie, /^[A-Za-z0-9_-]{43}$/);
  assert.notEqual(session.csrfToken, cookie);
  assert.equal(sessions.find(cookie), session);
  assert.equal(sessions.find(`${cookie}x`), null);
  assert.equal(sessions.find(session.csrfToken), null);
  now += SESSION_IDLE_MS - 1;
  assert.equal(sessions.find(cookie), session, 'used just in time');
  now += SESSION_IDLE_MS - 1;
  assert.equal(sessions.find(cookie), session, 'the idle clock restarted');
  now += SESSION_IDLE_MS + 1;
  assert.equal(sessions.find(cookie), null, 'idle too long');
  assert.equal(sessions.find(cookie), null);
});

test('a session in constant use still ends at its absolute lifetime', () => {
  let now = 0;
  const sessions = new ConsoleSessions(() => now);
  const { cookie, session } = sessions.create(actor, 'viewer', proof);
  assert.equal(sessions.expiresAt(session), SESSION_MAX_AGE_MS);
  while (now + 60_000 <= SESSION_MAX_AGE_MS) {
    now += 60_000;
    assert.notEqual(sessions.find(cookie), null);
  }
  now = SESSION_MAX_AGE_MS + 1;
  assert.equal(sessions.find(cookie), null);
});

test('sessions are bounded: the oldest goes first', () => {
  const sessions = new ConsoleSessions(() => 0);
  const first = sessions.create(actor, 'admin', proof).cookie;
  const second = sessions.create(actor, 'admin', proof).cookie;
  for (let i = 0; i < 998; i++) sessions.create(actor, 'admin', proof);
  assert.equal(sessions.size, 1000);
  sessions.create(actor, 'admin', proof);
  assert.equal(sessions.size, 1000);
  assert.equal(sessions.find(first), null);
  assert.notEqual(sessions.find(second), null);
});

test('endWhere ends the sessions it selects and no other; end ends one', () => {
  const sessions = new ConsoleSessions(() => 0);
  const a = sessions.create(actor, 'admin', { kind: 'token', tokenHash: '1'.repeat(64) }).cookie;
  const b = sessions.create(actor, 'admin', { kind: 'token', tokenHash: '2'.repeat(64) }).cookie;
  const c = sessions.create({ ...actor, kind: 'certificate', name: 'alice' }, 'admin', { kind: 'certificate', fingerprint256: 'AB:CD' }).cookie;
  assert.equal(sessions.endWhere((s) => s.proof.kind === 'token' && s.proof.tokenHash === '1'.repeat(64)), 1);
  assert.equal(sessions.find(a), null);
  assert.notEqual(sessions.find(b), null);
  assert.equal(sessions.end(c), true);
  assert.equal(sessions.end(c), false);
});

test('the CSRF token must match exactly', () => {
  const sessions = new ConsoleSessions(() => 0);
  const { session } = sessions.create(actor, 'admin', proof);
  assert.equal(csrfMatches(session, session.csrfToken), true);
  assert.equal(csrfMatches(session, undefined), false);
  assert.equal(csrfMatches(session, ''), false);
  assert.equal(csrfMatches(session, session.csrfToken.slice(0, -1)), false);
  assert.equal(csrfMatches(session, `${session.csrfToken}x`), false);
  assert.equal(csrfMatches(session, session.csrfToken.toUpperCase() === session.csrfToken ? `${session.csrfToken.slice(0, -1)}!` : session.csrfToken.toUpperCase()), false);
});
