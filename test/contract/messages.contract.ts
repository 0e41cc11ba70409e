/**
 * Contract: what a SessionStore keeps of outbound messages (bytes, properties, state and
 * packet id, removal, seq order) and what a RetainStore keeps of retained messages, each
 * read back after a reopen. Must not: depend on an adapter (runSessionStoreContract calls it).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ALL_BYTES, flushed, message, outbound, sortedRetained, type ContractContext } from './store-contract-support.js';

export function messagesContract(ctx: ContractContext): void {
  describe('outbound messages', () => {
    it('round-trips messages without properties, with arbitrary bytes, in seq order', async () => {
      const entries = [
        outbound(ctx.store, 'b', { message: message({ payload: ALL_BYTES }) }),
        outbound(ctx.store, 'a', { message: message({ payload: Buffer.alloc(0), qos: 0 }), qos: 0 }),
        outbound(ctx.store, 'b', {
          message: message({ topic: 't/ü', qos: 2, retain: true, origin: '', expiresAt: 1_900_000_000_000 }),
          qos: 1,
          retainFlag: true,
          subscriptionIds: [1, 268_435_455],
          state: 'publish-sent',
          packetId: 65535,
        }),
        outbound(ctx.store, 'a', {
          message: message({ qos: 2, payload: Buffer.from([0, 0, 0xff, 0]) }),
          qos: 2,
          state: 'pubrel-sent',
          packetId: 1,
          subscriptionIds: [42],
        }),
      ];
      for (const e of entries) ctx.store.addOutbound(e);
      assert.deepEqual(ctx.store.load().outbound, entries);
      const state = await ctx.reopen();
      assert.deepEqual(state.outbound, entries);
      for (const o of state.outbound) {
        assert.ok(Buffer.isBuffer(o.message.payload), 'payload is a Buffer');
        assert.equal(o.message.properties, undefined);
      }
    });

    it('round-trips a large payload', async () => {
      const payload = Buffer.alloc(256 * 1024);
      for (let i = 0; i < payload.length; i++) payload[i] = (i * 31 + (i >> 8)) & 0xff;
      const e = outbound(ctx.store, 'a', { message: message({ payload }) });
      ctx.store.addOutbound(e);
      const [loaded] = (await ctx.reopen()).outbound;
      assert.ok(loaded !== undefined);
      assert.ok(loaded.message.payload.equals(payload));
    });

    it('round-trips message properties, with Buffers and user properties', async () => {
      const full = outbound(ctx.store, 'a', {
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
      const falseIndicator = outbound(ctx.store, 'a', {
        message: message({ properties: { payloadFormatIndicator: false } }),
      });
      const emptyCorrelation = outbound(ctx.store, 'a', {
        message: message({ properties: { correlationData: Buffer.alloc(0), contentType: '' } }),
      });
      const emptyProperties = outbound(ctx.store, 'a', { message: message({ properties: {} }) });
      const entries = [full, falseIndicator, emptyCorrelation, emptyProperties];
      for (const e of entries) ctx.store.addOutbound(e);
      const state = await ctx.reopen();
      assert.deepEqual(state.outbound, entries);
      const cd = state.outbound[0]?.message.properties?.correlationData;
      assert.ok(Buffer.isBuffer(cd), 'correlationData is a Buffer');
    });

    it('updates state and packet id, after a flush and within one batch', async () => {
      const flushedFirst = outbound(ctx.store, 'a');
      ctx.store.addOutbound(flushedFirst);
      await flushed(ctx.store);
      ctx.store.updateOutbound('a', flushedFirst.seq, 'publish-sent', 10);
      const sameBatch = outbound(ctx.store, 'a', { qos: 2, message: message({ qos: 2 }) });
      ctx.store.addOutbound(sameBatch);
      ctx.store.updateOutbound('a', sameBatch.seq, 'publish-sent', 11);
      ctx.store.updateOutbound('a', sameBatch.seq, 'pubrel-sent', 11);
      const state = await ctx.reopen();
      assert.deepEqual(state.outbound, [
        { ...flushedFirst, state: 'publish-sent', packetId: 10 },
        { ...sameBatch, state: 'pubrel-sent', packetId: 11 },
      ]);
    });

    it('removes messages, after a flush and within one batch', async () => {
      const keep = outbound(ctx.store, 'a');
      const removeLater = outbound(ctx.store, 'a');
      ctx.store.addOutbound(keep);
      ctx.store.addOutbound(removeLater);
      await flushed(ctx.store);
      ctx.store.updateOutbound('a', removeLater.seq, 'publish-sent', 5);
      ctx.store.removeOutbound('a', removeLater.seq);
      const transient = outbound(ctx.store, 'a');
      ctx.store.addOutbound(transient);
      ctx.store.updateOutbound('a', transient.seq, 'publish-sent', 6);
      ctx.store.removeOutbound('a', transient.seq);
      assert.deepEqual(ctx.store.load().outbound, [keep]);
      assert.deepEqual((await ctx.reopen()).outbound, [keep]);
    });

    it('ignores update and remove of unknown entries and of another client', async () => {
      const e = outbound(ctx.store, 'a');
      ctx.store.addOutbound(e);
      ctx.store.updateOutbound('b', e.seq, 'publish-sent', 3);
      ctx.store.removeOutbound('b', e.seq);
      ctx.store.updateOutbound('a', e.seq + 1000, 'publish-sent', 3);
      ctx.store.removeOutbound('a', e.seq + 1000);
      assert.deepEqual((await ctx.reopen()).outbound, [e]);
    });

    it('does not keep a reference to the entry it was given', async () => {
      const e = outbound(ctx.store, 'a', { subscriptionIds: [1] });
      ctx.store.addOutbound(e);
      const copy = { ...e, subscriptionIds: [1] };
      e.state = 'publish-sent';
      e.packetId = 77;
      e.subscriptionIds.push(2);
      assert.deepEqual((await ctx.reopen()).outbound, [copy]);
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
      ctx.store.setRetained(one.topic, one);
      ctx.store.setRetained(two.topic, two);
      ctx.store.setRetained(three.topic, three);
      assert.deepEqual(sortedRetained(ctx.store.load()), [one, two, three]);
      assert.deepEqual(sortedRetained(await ctx.reopen()), [one, two, three]);

      const oneAgain = message({ topic: 'r/1', retain: true, payload: Buffer.from('new') });
      ctx.store.setRetained('r/1', oneAgain);
      ctx.store.setRetained('r/3', null);
      ctx.store.setRetained('r/missing', null);
      assert.deepEqual(sortedRetained(await ctx.reopen()), [oneAgain, two]);
    });

    it('set then clear in one batch leaves nothing', async () => {
      const m = message({ topic: 'r/x', retain: true });
      ctx.store.setRetained('r/x', m);
      ctx.store.setRetained('r/x', null);
      assert.deepEqual((await ctx.reopen()).retained, []);
    });
  });
}
