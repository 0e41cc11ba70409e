/**
 * Contract: afterFlush and flush(), the group commit the broker's durable QoS 1/2 relies on
 * (callbacks after the writes before them, in order, once; writes of one turn before the
 * callbacks of the next). Must not: depend on an adapter (runSessionStoreContract calls it).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { flushed, incoming, outbound, session, type ContractContext } from './store-contract-support.js';

export function afterFlushContract(ctx: ContractContext): void {
  describe('afterFlush', () => {
    it('calls back asynchronously, even with nothing pending', async () => {
      let called = false;
      const done = new Promise<void>((resolve) =>
        ctx.store.afterFlush(() => {
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
      ctx.store.addOutbound(outbound(ctx.store, 'a'));
      ctx.store.afterFlush(() => order.push('first'));
      ctx.store.saveSession(session('a'));
      ctx.store.afterFlush(() => order.push('second'));
      assert.equal(ctx.store.dirty, true);
      await flushed(ctx.store);
      ctx.store.afterFlush(() => order.push('third'));
      await flushed(ctx.store);
      assert.deepEqual(order, ['first', 'second', 'third']);
      assert.equal(ctx.store.dirty, false);
    });

    it('is not dirty any more when the callback runs', async () => {
      ctx.store.addIncomingQos2('a', 1);
      ctx.store.afterFlush(() => {});
      assert.equal(ctx.store.dirty, true);
      let dirtyInside: boolean | undefined;
      await new Promise<void>((resolve) =>
        ctx.store.afterFlush(() => {
          dirtyInside = ctx.store.dirty;
          resolve();
        }),
      );
      assert.equal(dirtyInside, false);
    });

    it('runs a callback registered from a callback, later', async () => {
      const order: string[] = [];
      await new Promise<void>((resolve) => {
        ctx.store.afterFlush(() => {
          order.push('outer');
          ctx.store.addIncomingQos2('a', 1);
          ctx.store.afterFlush(() => {
            order.push('inner');
            resolve();
          });
          order.push('outer-end');
        });
      });
      assert.deepEqual(order, ['outer', 'outer-end', 'inner']);
      assert.deepEqual(incoming(await ctx.reopen()), { a: [1] });
    });

    it('writes of one turn are flushed before callbacks of the next turn', async () => {
      const order: string[] = [];
      ctx.store.addIncomingQos2('a', 1);
      const first = new Promise<void>((resolve) => ctx.store.afterFlush(() => { order.push('turn1'); resolve(); }));
      await new Promise<void>((resolve) => setImmediate(resolve));
      ctx.store.addIncomingQos2('a', 2);
      const second = new Promise<void>((resolve) => ctx.store.afterFlush(() => { order.push('turn2'); resolve(); }));
      await Promise.all([first, second]);
      assert.deepEqual(order, ['turn1', 'turn2']);
    });

    it('flush() makes writes durable now and runs each callback once', async () => {
      let calls = 0;
      ctx.store.addOutbound(outbound(ctx.store, 'a'));
      ctx.store.afterFlush(() => calls++);
      ctx.store.flush();
      assert.equal(ctx.store.dirty, false);
      await new Promise<void>((resolve) => setImmediate(resolve));
      await flushed(ctx.store);
      assert.equal(calls, 1);
      assert.equal((await ctx.reopen()).outbound.length, 1);
    });

    it('a callback that throws does not stop the others, and its error surfaces', () => {
      const ran: string[] = [];
      ctx.store.afterFlush(() => {
        ran.push('a');
        throw new Error('boom');
      });
      ctx.store.afterFlush(() => ran.push('b'));
      assert.throws(() => ctx.store.flush(), /boom/);
      assert.deepEqual(ran, ['a', 'b']);
    });
  });
}
