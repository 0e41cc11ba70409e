/**
 * The contract every SessionStore + RetainStore adapter passes (Aedes-style abstract
 * suite). An adapter's test file calls `runSessionStoreContract` with a factory; `reopen`
 * closes the current store and returns one over the same data (a restart for durable
 * adapters, the same object for the memory store).
 */
import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import type { Message } from '../../src/broker/message.js';
import type {
  PersistedState,
  RetainStore,
  SessionRecord,
  SessionStore,
  StoredOutbound,
} from '../../src/broker/ports.js';

export type StoreUnderTest = SessionStore & RetainStore;

export interface StoreFixture {
  store: StoreUnderTest;
  /** Closes the current store and returns one over the same data. */
  reopen: () => Promise<StoreUnderTest>;
  /** Closes whatever is open and removes what the fixture created. */
  cleanup: () => Promise<void>;
}

/** Every byte value, twice, in a scrambled order. */
const ALL_BYTES = Buffer.from(Array.from({ length: 512 }, (_, i) => (i * 167 + 13) & 0xff));

export function message(overrides: Partial<Message> = {}): Message {
  return {
    topic: 'sensors/1/temp',
    payload: Buffer.from('21.5'),
    qos: 1,
    retain: false,
    properties: undefined,
    expiresAt: 0,
    origin: 'publisher-1',
    ...overrides,
  };
}

export function outbound(store: SessionStore, clientId: string, overrides: Partial<StoredOutbound> = {}): StoredOutbound {
  return {
    seq: store.nextSeq(),
    clientId,
    message: message(),
    qos: 1,
    retainFlag: false,
    subscriptionIds: [],
    state: 'queued',
    packetId: 0,
    ...overrides,
  };
}

function session(clientId: string, overrides: Partial<SessionRecord> = {}): SessionRecord {
  return {
    clientId,
    protocolVersion: 5,
    expiryInterval: 3600,
    disconnectedAt: 0,
    subscriptions: [],
    ...overrides,
  };
}

function flushed(store: SessionStore): Promise<void> {
  return new Promise((resolve) => store.afterFlush(resolve));
}

function sortedSessions(state: PersistedState): SessionRecord[] {
  return [...state.sessions].sort((a, b) => a.clientId.localeCompare(b.clientId));
}

function sortedRetained(state: PersistedState): Message[] {
  return [...state.retained].sort((a, b) => a.topic.localeCompare(b.topic));
}

function incoming(state: PersistedState): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const [clientId, ids] of state.incomingQos2) out[clientId] = [...ids].sort((a, b) => a - b);
  return out;
}

function outboundKeys(state: PersistedState): string[] {
  return state.outbound.map((o) => `${o.clientId}:${o.seq}`);
}

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

    describe('outbound messages', () => {
      it('round-trips messages without properties, with arbitrary bytes, in seq order', async () => {
        const entries = [
          outbound(store, 'b', { message: message({ payload: ALL_BYTES }) }),
          outbound(store, 'a', { message: message({ payload: Buffer.alloc(0), qos: 0 }), qos: 0 }),
          outbound(store, 'b', {
            message: message({ topic: 't/ü', qos: 2, retain: true, origin: '', expiresAt: 1_900_000_000_000 }),
            qos: 1,
            retainFlag: true,
            subscriptionIds: [1, 268_435_455],
            state: 'publish-sent',
            packetId: 65535,
          }),
          outbound(store, 'a', {
            message: message({ qos: 2, payload: Buffer.from([0, 0, 0xff, 0]) }),
            qos: 2,
            state: 'pubrel-sent',
            packetId: 1,
            subscriptionIds: [42],
          }),
        ];
        for (const e of entries) store.addOutbound(e);
        assert.deepEqual(store.load().outbound, entries);
        const state = await reopen();
        assert.deepEqual(state.outbound, entries);
        for (const o of state.outbound) {
          assert.ok(Buffer.isBuffer(o.message.payload), 'payload is a Buffer');
          assert.equal(o.message.properties, undefined);
        }
      });

      it('round-trips a large payload', async () => {
        const payload = Buffer.alloc(256 * 1024);
        for (let i = 0; i < payload.length; i++) payload[i] = (i * 31 + (i >> 8)) & 0xff;
        const e = outbound(store, 'a', { message: message({ payload }) });
        store.addOutbound(e);
        const [loaded] = (await reopen()).outbound;
        assert.ok(loaded !== undefined);
        assert.ok(loaded.message.payload.equals(payload));
      });

      it('round-trips message properties, with Buffers and user properties', async () => {
        const full = outbound(store, 'a', {
          message: message({
            properties: {
              payloadFormatIndicator: true,
              contentType: 'application/json; charset=utf-8',
              responseTopic: 'reply/ü/1',
              correlationData: Buffer.from(ALL_BYTES.subarray(0, 300)),
              userProperties: { plain: 'v', repeated: ['1', '2', ''], 'ключ': 'значение', '': '"{}"' },
            },
          }),
        });
        const falseIndicator = outbound(store, 'a', {
          message: message({ properties: { payloadFormatIndicator: false } }),
        });
        const emptyCorrelation = outbound(store, 'a', {
          message: message({ properties: { correlationData: Buffer.alloc(0), contentType: '' } }),
        });
        const emptyProperties = outbound(store, 'a', { message: message({ properties: {} }) });
        const entries = [full, falseIndicator, emptyCorrelation, emptyProperties];
        for (const e of entries) store.addOutbound(e);
        const state = await reopen();
        assert.deepEqual(state.outbound, entries);
        const cd = state.outbound[0]?.message.properties?.correlationData;
        assert.ok(Buffer.isBuffer(cd), 'correlationData is a Buffer');
      });

      it('updates state and packet id, after a flush and within one batch', async () => {
        const flushedFirst = outbound(store, 'a');
        store.addOutbound(flushedFirst);
        await flushed(store);
        store.updateOutbound('a', flushedFirst.seq, 'publish-sent', 10);
        const sameBatch = outbound(store, 'a', { qos: 2, message: message({ qos: 2 }) });
        store.addOutbound(sameBatch);
        store.updateOutbound('a', sameBatch.seq, 'publish-sent', 11);
        store.updateOutbound('a', sameBatch.seq, 'pubrel-sent', 11);
        const state = await reopen();
        assert.deepEqual(state.outbound, [
          { ...flushedFirst, state: 'publish-sent', packetId: 10 },
          { ...sameBatch, state: 'pubrel-sent', packetId: 11 },
        ]);
      });

      it('removes messages, after a flush and within one batch', async () => {
        const keep = outbound(store, 'a');
        const removeLater = outbound(store, 'a');
        store.addOutbound(keep);
        store.addOutbound(removeLater);
        await flushed(store);
        store.updateOutbound('a', removeLater.seq, 'publish-sent', 5);
        store.removeOutbound('a', removeLater.seq);
        const transient = outbound(store, 'a');
        store.addOutbound(transient);
        store.updateOutbound('a', transient.seq, 'publish-sent', 6);
        store.removeOutbound('a', transient.seq);
        assert.deepEqual(store.load().outbound, [keep]);
        assert.deepEqual((await reopen()).outbound, [keep]);
      });

      it('ignores update and remove of unknown entries and of another client', async () => {
        const e = outbound(store, 'a');
        store.addOutbound(e);
        store.updateOutbound('b', e.seq, 'publish-sent', 3);
        store.removeOutbound('b', e.seq);
        store.updateOutbound('a', e.seq + 1000, 'publish-sent', 3);
        store.removeOutbound('a', e.seq + 1000);
        assert.deepEqual((await reopen()).outbound, [e]);
      });

      it('does not keep a reference to the entry it was given', async () => {
        const e = outbound(store, 'a', { subscriptionIds: [1] });
        store.addOutbound(e);
        const copy = { ...e, subscriptionIds: [1] };
        e.state = 'publish-sent';
        e.packetId = 77;
        e.subscriptionIds.push(2);
        assert.deepEqual((await reopen()).outbound, [copy]);
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

    describe('retained messages', () => {
      it('round-trips, replaces, and clears with null', async () => {
        const one = message({ topic: 'r/1', retain: true, payload: ALL_BYTES, qos: 0, origin: '' });
        const two = message({
          topic: 'r/2',
          retain: true,
          qos: 2,
          expiresAt: 2_000_000_000_000,
          properties: { contentType: 'text/plain', correlationData: Buffer.from([0, 1, 255]), userProperties: { k: ['a', 'b'] } },
        });
        const three = message({ topic: 'r/3', retain: true });
        store.setRetained(one.topic, one);
        store.setRetained(two.topic, two);
        store.setRetained(three.topic, three);
        assert.deepEqual(sortedRetained(store.load()), [one, two, three]);
        assert.deepEqual(sortedRetained(await reopen()), [one, two, three]);

        const oneAgain = message({ topic: 'r/1', retain: true, payload: Buffer.from('new') });
        store.setRetained('r/1', oneAgain);
        store.setRetained('r/3', null);
        store.setRetained('r/missing', null);
        assert.deepEqual(sortedRetained(await reopen()), [oneAgain, two]);
      });

      it('set then clear in one batch leaves nothing', async () => {
        const m = message({ topic: 'r/x', retain: true });
        store.setRetained('r/x', m);
        store.setRetained('r/x', null);
        assert.deepEqual((await reopen()).retained, []);
      });
    });

    describe('afterFlush', () => {
      it('calls back asynchronously, even with nothing pending', async () => {
        let called = false;
        const done = new Promise<void>((resolve) =>
          store.afterFlush(() => {
            called = true;
            resolve();
          }),
        );
        assert.equal(called, false);
        await done;
        assert.equal(called, true);
      });

      it('calls back in registration order, after the writes before it', async () => {
        const order: string[] = [];
        store.addOutbound(outbound(store, 'a'));
        store.afterFlush(() => order.push('first'));
        store.saveSession(session('a'));
        store.afterFlush(() => order.push('second'));
        assert.equal(store.dirty, true);
        await flushed(store);
        store.afterFlush(() => order.push('third'));
        await flushed(store);
        assert.deepEqual(order, ['first', 'second', 'third']);
        assert.equal(store.dirty, false);
      });

      it('is not dirty any more when the callback runs', async () => {
        store.addIncomingQos2('a', 1);
        store.afterFlush(() => {});
        assert.equal(store.dirty, true);
        let dirtyInside: boolean | undefined;
        await new Promise<void>((resolve) =>
          store.afterFlush(() => {
            dirtyInside = store.dirty;
            resolve();
          }),
        );
        assert.equal(dirtyInside, false);
      });

      it('runs a callback registered from a callback, later', async () => {
        const order: string[] = [];
        await new Promise<void>((resolve) => {
          store.afterFlush(() => {
            order.push('outer');
            store.addIncomingQos2('a', 1);
            store.afterFlush(() => {
              order.push('inner');
              resolve();
            });
            order.push('outer-end');
          });
        });
        assert.deepEqual(order, ['outer', 'outer-end', 'inner']);
        assert.deepEqual(incoming(await reopen()), { a: [1] });
      });

      it('writes of one turn are flushed before callbacks of the next turn', async () => {
        const order: string[] = [];
        store.addIncomingQos2('a', 1);
        const first = new Promise<void>((resolve) => store.afterFlush(() => { order.push('turn1'); resolve(); }));
        await new Promise<void>((resolve) => setImmediate(resolve));
        store.addIncomingQos2('a', 2);
        const second = new Promise<void>((resolve) => store.afterFlush(() => { order.push('turn2'); resolve(); }));
        await Promise.all([first, second]);
        assert.deepEqual(order, ['turn1', 'turn2']);
      });

      it('flush() makes writes durable now and runs each callback once', async () => {
        let calls = 0;
        store.addOutbound(outbound(store, 'a'));
        store.afterFlush(() => calls++);
        store.flush();
        assert.equal(store.dirty, false);
        await new Promise<void>((resolve) => setImmediate(resolve));
        await flushed(store);
        assert.equal(calls, 1);
        assert.equal((await reopen()).outbound.length, 1);
      });

      it('a callback that throws does not stop the others, and its error surfaces', () => {
        const ran: string[] = [];
        store.afterFlush(() => {
          ran.push('a');
          throw new Error('boom');
        });
        store.afterFlush(() => ran.push('b'));
        assert.throws(() => store.flush(), /boom/);
        assert.deepEqual(ran, ['a', 'b']);
      });
    });

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
