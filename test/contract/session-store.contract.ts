/**
 * The contract every SessionStore + RetainStore adapter passes (Aedes-style abstract
 * suite). An adapter's test file calls `runSessionStoreContract` with a factory; `reopen`
 * closes the current store and returns one over the same data (a restart for durable
 * adapters, the same object for the memory store). Sessions, sequence numbers and QoS 2 ids
 * are here; messages (messages.contract.ts) and group commit (after-flush.contract.ts) are
 * their own suites, run inside this one.
 */
import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import type { PersistedState } from '../../src/broker/ports.js';
import { afterFlushContract } from './after-flush.contract.js';
import { messagesContract } from './messages.contract.js';
import { flushed, incoming, message, outbound, outboundKeys, session, sortedSessions, type StoreFixture, type StoreUnderTest } from './store-contract-support.js';

export { message, outbound, type StoreFixture, type StoreUnderTest } from './store-contract-support.js';

export function runSessionStoreContract(name: string, makeStore: () => Promise<StoreFixture>): void {
  describe(`${name}: SessionStore + RetainStore contract`, () => {
    let fx: StoreFixture;
    let store: StoreUnderTest;

    beforeEach(async () => {
      fx = await makeStore();
      store = fx.store;
    });
    afterEach(async () => {
      await fx.cleanup();
    });

    async function reopen(): Promise<PersistedState> {
      store = await fx.reopen();
      return store.load();
    }

    it('starts empty', () => {
      const state = store.load();
      assert.deepEqual(state.sessions, []);
      assert.deepEqual(state.outbound, []);
      assert.equal(state.incomingQos2.size, 0);
      assert.deepEqual(state.retained, []);
      assert.equal(store.dirty, false);
    });

    describe('sessions', () => {
      it('round-trips sessions with their subscriptions', async () => {
        const a = session('a', {
          protocolVersion: 5,
          expiryInterval: 0xffffffff,
          disconnectedAt: 1_700_000_000_123,
          subscriptions: [
            { filter: 'a/+/c', qos: 2, noLocal: true, retainAsPublished: false, retainHandling: 2, subscriptionId: 268_435_455 },
            { filter: '$share/g1/x/#', qos: 0, noLocal: false, retainAsPublished: true, retainHandling: 1, subscriptionId: 0 },
            { filter: 'ünïcødé/"quoted",comma', qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0, subscriptionId: 7 },
          ],
        });
        const b = session('b', { protocolVersion: 4, expiryInterval: 0 });
        const c = session('c', { protocolVersion: 3, expiryInterval: 60, disconnectedAt: 5 });
        store.saveSession(a);
        store.saveSession(b);
        store.saveSession(c);
        assert.deepEqual(sortedSessions(store.load()), [a, b, c]);
        assert.deepEqual(sortedSessions(await reopen()), [a, b, c]);
      });

      it('does not keep a reference to the record it was given', async () => {
        const a = session('a', {
          subscriptions: [{ filter: 't', qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0, subscriptionId: 0 }],
        });
        store.saveSession(a);
        const copy = structuredClone(a);
        a.disconnectedAt = 99;
        a.subscriptions.push({ filter: 'u', qos: 0, noLocal: false, retainAsPublished: false, retainHandling: 0, subscriptionId: 0 });
        assert.deepEqual((await reopen()).sessions, [copy]);
      });

      it('round-trips the identity of the session\'s client (and its absence)', async () => {
        const identity = {
          principal: 'dev-1',
          method: 'certificate' as const,
          username: 'ünï',
          certificate: {
            commonName: 'dev-1',
            serialNumber: '0A1B',
            fingerprint256: 'AA:BB',
            issuer: 'CN=CA',
            subject: 'CN=dev-1, OU=plant',
            organizationalUnits: ['plant'],
            sans: { dns: ['d.example'], uri: ['urn:dev:1'], ip: [], email: [] },
          },
          remoteAddress: '127.0.0.1',
          listener: 'mqtts',
        };
        const a = session('a', { identity });
        const b = session('b');
        store.saveSession(a);
        store.saveSession(b);
        identity.certificate.organizationalUnits.push('changed after save');
        const expected = session('a', { identity: { ...identity, certificate: { ...identity.certificate, organizationalUnits: ['plant'] } } });
        assert.deepEqual(sortedSessions(await reopen()), [expected, b]);
      });

      it('replaces a session saved again', async () => {
        store.saveSession(session('a', { expiryInterval: 10 }));
        await flushed(store);
        const updated = session('a', {
          expiryInterval: 20,
          disconnectedAt: 1234,
          subscriptions: [{ filter: 'x', qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0, subscriptionId: 3 }],
        });
        store.saveSession(updated);
        assert.deepEqual((await reopen()).sessions, [updated]);
      });

      it('deleteSession removes the session, its outbound messages and its incoming QoS 2 ids', async () => {
        store.saveSession(session('a'));
        store.saveSession(session('b'));
        const a1 = outbound(store, 'a');
        const b1 = outbound(store, 'b');
        const a2 = outbound(store, 'a');
        store.addOutbound(a1);
        store.addOutbound(b1);
        store.addOutbound(a2);
        store.addIncomingQos2('a', 1);
        store.addIncomingQos2('b', 2);
        await flushed(store);
        const a3 = outbound(store, 'a');
        store.addOutbound(a3); // pending in the same batch as the delete
        store.deleteSession('a');
        const state = await reopen();
        assert.deepEqual(state.sessions.map((s) => s.clientId), ['b']);
        assert.deepEqual(outboundKeys(state), [`b:${b1.seq}`]);
        assert.deepEqual(incoming(state), { b: [2] });
      });

      it('keeps writes recorded after deleteSession in the same batch', async () => {
        store.addOutbound(outbound(store, 'a'));
        store.deleteSession('a');
        store.saveSession(session('a', { expiryInterval: 1 }));
        const fresh = outbound(store, 'a');
        store.addOutbound(fresh);
        store.addIncomingQos2('a', 9);
        const state = await reopen();
        assert.deepEqual(state.sessions, [session('a', { expiryInterval: 1 })]);
        assert.deepEqual(state.outbound, [fresh]);
        assert.deepEqual(incoming(state), { a: [9] });
      });

      it('deleteSession of an unknown client is harmless', async () => {
        store.saveSession(session('a'));
        store.deleteSession('nobody');
        assert.deepEqual((await reopen()).sessions, [session('a')]);
      });
    });

    describe('nextSeq', () => {
      it('increases', () => {
        const a = store.nextSeq();
        const b = store.nextSeq();
        const c = store.nextSeq();
        assert.ok(a < b && b < c);
      });

      it('continues after a reopen, above every stored seq', async () => {
        const entries = [outbound(store, 'a'), outbound(store, 'b'), outbound(store, 'a')];
        for (const e of entries) store.addOutbound(e);
        await reopen();
        const next = store.nextSeq();
        for (const e of entries) assert.ok(next > e.seq, `${next} > ${e.seq}`);
        assert.ok(store.nextSeq() > next);
      });

      it('stays above a seq that was added without asking nextSeq', async () => {
        const e = outbound(store, 'a', { seq: 1000 });
        store.addOutbound(e);
        assert.ok(store.nextSeq() > 1000);
        await reopen();
        assert.ok(store.nextSeq() > 1000);
      });
    });

    describe('incoming QoS 2 packet ids', () => {
      it('round-trips, per client, and a duplicate add is idempotent', async () => {
        store.addIncomingQos2('a', 1);
        store.addIncomingQos2('a', 65535);
        store.addIncomingQos2('a', 1);
        store.addIncomingQos2('b', 7);
        assert.deepEqual(incoming(store.load()), { a: [1, 65535], b: [7] });
        assert.deepEqual(incoming(await reopen()), { a: [1, 65535], b: [7] });
      });

      it('removes ids, after a flush and within one batch', async () => {
        store.addIncomingQos2('a', 1);
        store.addIncomingQos2('a', 2);
        store.addIncomingQos2('b', 1);
        await flushed(store);
        store.removeIncomingQos2('a', 1);
        store.addIncomingQos2('a', 3);
        store.removeIncomingQos2('a', 3);
        store.removeIncomingQos2('b', 1);
        store.removeIncomingQos2('c', 1);
        assert.deepEqual(incoming(await reopen()), { a: [2] });
      });

      it('a duplicate add then a remove in one batch leaves nothing', async () => {
        store.addIncomingQos2('a', 5);
        await flushed(store);
        store.addIncomingQos2('a', 5);
        store.removeIncomingQos2('a', 5);
        assert.deepEqual(incoming(await reopen()), {});
      });
    });

    const ctx = {
      get store(): StoreUnderTest {
        return store;
      },
      reopen,
    };
    messagesContract(ctx);
    afterFlushContract(ctx);

    it('close() keeps everything recorded before it', async () => {
      store.saveSession(session('z'));
      store.addIncomingQos2('z', 4);
      store.setRetained('r', message({ topic: 'r', retain: true }));
      const state = await reopen();
      assert.equal(state.sessions.length, 1);
      assert.equal(state.retained.length, 1);
      assert.deepEqual(incoming(state), { z: [4] });
    });

    it('load() does not filter expired sessions or messages', async () => {
      const expiredSession = session('old', { expiryInterval: 1, disconnectedAt: 1 });
      const expired = outbound(store, 'old', { message: message({ expiresAt: 1 }) });
      store.saveSession(expiredSession);
      store.addOutbound(expired);
      store.setRetained('gone', message({ topic: 'gone', retain: true, expiresAt: 1 }));
      const state = await reopen();
      assert.deepEqual(state.sessions, [expiredSession]);
      assert.deepEqual(state.outbound, [expired]);
      assert.equal(state.retained.length, 1);
    });
  });
}
