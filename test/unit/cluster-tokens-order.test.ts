/**
 * Admin tokens shared through the cluster (server/cluster-tokens.ts) when entries arrive out
 * of order: a node's bucket watcher can deliver the node's own earlier write after a newer
 * one (seen on a loaded CI run: a revoked token logged as "from the cluster" again). An older
 * entry must never undo a newer one: a stale live entry cannot resurrect a revoked token,
 * and of two tokens of one name the later one stands. The entries are fed to `apply` as the
 * shared-state watcher would; the state's writes are only recorded (no NATS needed for the order).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ClusterTokens, tokenKey } from '../../src/server/cluster-tokens.js';
import type { SharedState } from '../../src/cluster/shared-state.js';
import type { Logger } from '../../src/core/logger.js';
import { hashAdminToken } from '../../src/admin/api/tokens.js';

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };
const state = { register() {}, write() {} } as unknown as SharedState;
const bytes = (o: object): Uint8Array => Buffer.from(JSON.stringify(o));
const H1 = hashAdminToken('bst_one');
const H2 = hashAdminToken('bst_two');

test('a live entry older than the tombstone held does not bring the token back', () => {
  const tokens = new ClusterTokens(state, quiet);
  const key = tokenKey('ops');
  tokens.apply(key, bytes({ name: 'ops', hash: H1, createdAt: 1000, scope: 'admin' }));
  assert.deepEqual(tokens.findTokenByHash(H1), { name: 'ops', scope: 'admin' });
  tokens.apply(key, bytes({ name: 'ops', revokedAt: 2000 }));
  assert.equal(tokens.findTokenByHash(H1), null);
  // The same live write again, late.
  tokens.apply(key, bytes({ name: 'ops', hash: H1, createdAt: 1000, scope: 'admin' }));
  assert.equal(tokens.findTokenByHash(H1), null, 'still revoked');
  // At the same instant, the revocation wins.
  tokens.apply(key, bytes({ name: 'ops', hash: H1, createdAt: 2000, scope: 'admin' }));
  assert.equal(tokens.findTokenByHash(H1), null);
  // A token made after the revocation is a new token.
  tokens.apply(key, bytes({ name: 'ops', hash: H2, createdAt: 3000, scope: 'viewer' }));
  assert.deepEqual(tokens.findTokenByHash(H2), { name: 'ops', scope: 'viewer' });
});

test('of two tokens of one name the later stands, whatever order they arrive in; an entry without a scope is an admin token', () => {
  const key = tokenKey('twin');
  for (const order of [[1, 2], [2, 1]]) {
    const tokens = new ClusterTokens(state, quiet);
    const entries = { 1: { name: 'twin', hash: H1, createdAt: 1000 }, 2: { name: 'twin', hash: H2, createdAt: 2000 } } as const;
    for (const n of order) tokens.apply(key, bytes(entries[n as 1 | 2]));
    assert.equal(tokens.findTokenByHash(H1), null, `order ${order.join(',')}`);
    assert.deepEqual(tokens.findTokenByHash(H2), { name: 'twin', scope: 'admin' });
  }
});
