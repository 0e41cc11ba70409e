/**
 * Wills and persistent sessions (in memory, no SQLite) for MQTT 3.1.1 and MQTT 5: when a
 * will is and is not published, will delay, and what a resumed session gets back (queued
 * messages, in-flight messages re-sent with DUP, QoS 2 release state).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { expectServerDisconnect, harness, until, VERSIONS, vname, type ConnectPacket, type Harness, type Peer, type Version } from './support.js';

function withWill(v: Version, topic: string, extra: Partial<ConnectPacket> = {}, willProps?: NonNullable<ConnectPacket['will']>['properties']): Partial<ConnectPacket> {
  const will: NonNullable<ConnectPacket['will']> = { topic, payload: Buffer.from(`will of ${topic}`), qos: 1, retain: false };
  if (v === 5 && willProps !== undefined) will.properties = willProps;
  return { will, ...extra };
}

/** Session-keeping CONNECT fields for each version (v3: clean=false; v5: clean=false + expiry). */
function persistent(v: Version, expiry = 60): Partial<ConnectPacket> {
  return v === 5 ? { clean: false, properties: { sessionExpiryInterval: expiry } } : { clean: false };
}

/** Waits until the broker has seen the connection of `id` close (its session offline or ended). */
async function waitOffline(h: Harness, id: string): Promise<void> {
  await until(() => h.broker.sessions.get(id)?.online !== true, `${id} to go offline`);
}

async function watcher(h: Harness, v: Version): Promise<Peer> {
  const w = await h.connect(v);
  assert.deepEqual(await w.subscribe([{ topic: 'will/#', qos: 1 }]), [1]);
  return w;
}

async function expectWill(w: Peer, topic: string, timeoutMs = 3000): Promise<void> {
  const p = await w.expect('publish', timeoutMs);
  assert.equal(p.topic, topic);
  assert.equal(p.payload.toString(), `will of ${topic}`);
  assert.equal(p.qos, 1);
  w.send({ cmd: 'puback', messageId: p.messageId! });
}

describe('wills', () => {
  for (const v of VERSIONS) {
    it(`${vname(v)}: the will is published when the connection drops without DISCONNECT`, async (t) => {
      const h = await harness(t);
      const w = await watcher(h, v);
      const c = await h.connect(v, h.id(), withWill(v, 'will/drop', {}, { contentType: 'text/plain', userProperties: { why: 'test' } }));
      c.destroy();
      const p = await w.expect('publish');
      assert.equal(p.topic, 'will/drop');
      assert.equal(p.payload.toString(), 'will of will/drop');
      assert.equal(p.qos, 1);
      assert.equal(p.retain, false);
      if (v === 5) {
        assert.equal(p.properties?.contentType, 'text/plain', 'will properties travel with it');
        assert.deepEqual({ ...p.properties?.userProperties }, { why: 'test' });
      }
    });

    it(`${vname(v)}: no will after a normal DISCONNECT`, async (t) => {
      const h = await harness(t);
      const w = await watcher(h, v);
      const c = await h.connect(v, h.id(), withWill(v, 'will/clean'));
      c.send({ cmd: 'disconnect' });
      assert.deepEqual(await c.expectClose(), []);
      // The broker publishes a will in the same turn as it closes the socket: anything it
      // published would be queued to the watcher before this ping's answer.
      await w.expectNothingBeforePing();
    });

    it(`${vname(v)}: the will is published after a keep-alive timeout`, async (t) => {
      const h = await harness(t);
      const w = await watcher(h, v);
      const c = await h.connect(v, h.id(), withWill(v, 'will/idle', { keepalive: 1 }));
      await expectServerDisconnect(c, 0x8d, 4000);
      await expectWill(w, 'will/idle');
    });

    it(`${vname(v)}: the will is published after a protocol error`, async (t) => {
      const h = await harness(t);
      const w = await watcher(h, v);
      const c = await h.connect(v, h.id(), withWill(v, 'will/error'));
      c.sendBytes([0xc1, 0x00]); // PINGREQ with a reserved flag bit set
      await expectServerDisconnect(c, 0x81);
      await expectWill(w, 'will/error');
    });

    it(`${vname(v)}: a retained will is retained`, async (t) => {
      const h = await harness(t);
      const id = h.id();
      const c = await h.connect(v, id, { will: { topic: 'will/kept', payload: Buffer.from('gone'), qos: 0, retain: true } });
      c.destroy();
      await waitOffline(h, id);
      const late = await h.connect(v);
      await late.subscribe([{ topic: 'will/kept', qos: 0 }]);
      const r = await late.expect('publish');
      assert.equal(r.payload.toString(), 'gone');
      assert.equal(r.retain, true);
    });
  }

  it('v5: DISCONNECT with reason 0x04 publishes the will', async (t) => {
    const h = await harness(t);
    const w = await watcher(h, 5);
    const c = await h.connect(5, h.id(), withWill(5, 'will/04'));
    c.send({ cmd: 'disconnect', reasonCode: 0x04 });
    await c.expectClose();
    await expectWill(w, 'will/04');
  });

  it('v5: the will waits for its Will Delay Interval', async (t) => {
    const h = await harness(t);
    const w = await watcher(h, 5);
    const c = await h.connect(5, h.id(), withWill(5, 'will/delayed', { clean: false, properties: { sessionExpiryInterval: 10 } }, { willDelayInterval: 1 }));
    const dropped = Date.now();
    c.destroy();
    await expectWill(w, 'will/delayed', 4000);
    const waited = Date.now() - dropped;
    assert.ok(waited >= 900, `published after ${waited} ms, not before the 1 s delay [MQTT-3.1.3-9]`);
  });

  it('v5: reconnecting within the Will Delay Interval cancels the will', async (t) => {
    const h = await harness(t);
    const w = await watcher(h, 5);
    const id = h.id('wd');
    const opts = withWill(5, 'will/cancelled', { clean: false, properties: { sessionExpiryInterval: 10 } }, { willDelayInterval: 1 });
    const c = await h.connect(5, id, opts);
    c.destroy();
    await waitOffline(h, id);
    const back = await h.connectRaw(5, id, { clean: false, properties: { sessionExpiryInterval: 10 } });
    assert.equal(back.connack.sessionPresent, true);
    // A marker will with the same delay, armed after the first: timers of equal length fire
    // in order, so had the first will survived it would arrive before the marker.
    const marker = await h.connect(5, h.id('marker'), withWill(5, 'will/marker', { clean: false, properties: { sessionExpiryInterval: 10 } }, { willDelayInterval: 1 }));
    marker.destroy();
    await expectWill(w, 'will/marker', 4000);
    await w.expectNothingBeforePing();
  });

  it('v5: a will delay longer than the session expiry is cut short when the session ends', async (t) => {
    const h = await harness(t);
    const w = await watcher(h, 5);
    const c = await h.connect(5, h.id(), withWill(5, 'will/expiry', {}, { willDelayInterval: 60 }));
    c.destroy();
    // Session expiry 0: the session ends with the connection, and the will goes with it.
    await expectWill(w, 'will/expiry');
  });
});


describe('persistent sessions (in memory)', () => {
  for (const v of VERSIONS) {
    it(`${vname(v)}: QoS 1 and 2 messages queued while offline are delivered on reconnect, with session present`, async (t) => {
      const h = await harness(t);
      const id = h.id('ps');
      const c = await h.connect(v, id, persistent(v));
      await c.subscribe([{ topic: 'ps/t', qos: 2 }]);
      c.send({ cmd: 'disconnect' });
      await c.expectClose();
      const pub = await h.connect(v);
      await pub.publish('ps/t', 'q1-a', { qos: 1, messageId: 1 });
      await pub.publish('ps/t', 'q0', { qos: 0 });
      await pub.publish('ps/t', 'q2', { qos: 2, messageId: 2 });
      await pub.publish('ps/t', 'q1-b', { qos: 1, messageId: 3 });

      const { peer, connack } = await h.connectRaw(v, id, persistent(v));
      assert.equal(connack.sessionPresent, true);
      const got = await peer.drainPublishes();
      // QoS 0 is not queued for an offline session (the spec allows either; Bastion does not).
      assert.deepEqual(got.map((p) => [p.payload.toString(), p.qos, p.dup]), [['q1-a', 1, false], ['q2', 2, false], ['q1-b', 1, false]], 'in order [MQTT-4.6.0-6]');
      peer.send({ cmd: 'puback', messageId: got[0]!.messageId! });
      peer.send({ cmd: 'pubrec', messageId: got[1]!.messageId! });
      assert.equal((await peer.expect('pubrel')).messageId, got[1]!.messageId);
      peer.send({ cmd: 'pubcomp', messageId: got[1]!.messageId! });
      peer.send({ cmd: 'puback', messageId: got[2]!.messageId! });
      await peer.sync();
      assert.equal(h.broker.sessions.get(id)!.inflightCount, 0);
    });

    it(`${vname(v)}: an unacknowledged QoS 1 message is re-sent with DUP and the same packet id after reconnect`, async (t) => {
      const h = await harness(t);
      const id = h.id('dup');
      const c = await h.connect(v, id, persistent(v));
      await c.subscribe([{ topic: 'dup/t', qos: 1 }]);
      const pub = await h.connect(v);
      await pub.publish('dup/t', 'unacked', { qos: 1 });
      const first = await c.expect('publish');
      assert.equal(first.dup, false);
      c.destroy();
      await waitOffline(h, id);

      const { peer, connack } = await h.connectRaw(v, id, persistent(v));
      assert.equal(connack.sessionPresent, true);
      const again = await peer.expect('publish');
      assert.equal(again.payload.toString(), 'unacked');
      assert.equal(again.dup, true, 'DUP on a re-delivery [MQTT-3.3.1-1]');
      assert.equal(again.messageId, first.messageId, 'same packet id [MQTT-4.4.0-1]');
      assert.equal(again.qos, 1);
      peer.send({ cmd: 'puback', messageId: again.messageId! });
      await peer.expectNothingBeforePing();
      assert.equal(h.broker.sessions.get(id)!.inflightCount, 0);
    });

    it(`${vname(v)}: a QoS 2 message past PUBREC gets its PUBREL re-sent after reconnect, not the PUBLISH`, async (t) => {
      const h = await harness(t);
      const id = h.id('rel');
      const c = await h.connect(v, id, persistent(v));
      await c.subscribe([{ topic: 'rel/t', qos: 2 }]);
      const pub = await h.connect(v);
      await pub.publish('rel/t', 'x', { qos: 2 });
      const m = await c.expect('publish');
      c.send({ cmd: 'pubrec', messageId: m.messageId! });
      await c.expect('pubrel');
      c.destroy();
      await waitOffline(h, id);

      const { peer, connack } = await h.connectRaw(v, id, persistent(v));
      assert.equal(connack.sessionPresent, true);
      const rel = await peer.expect('pubrel');
      assert.equal(rel.messageId, m.messageId);
      peer.send({ cmd: 'pubcomp', messageId: m.messageId! });
      await peer.expectNothingBeforePing();
    });

    it(`${vname(v)}: the broker keeps QoS 2 receive state across a reconnect: a re-sent PUBLISH is not delivered twice`, async (t) => {
      const h = await harness(t);
      const sub = await h.connect(v);
      await sub.subscribe([{ topic: 'rx/t', qos: 0 }]);
      const id = h.id('rx');
      const c = await h.connect(v, id, persistent(v));
      const packet = { cmd: 'publish' as const, topic: 'rx/t', payload: 'once', qos: 2 as const, messageId: 12, retain: false, dup: false };
      c.send(packet);
      await c.expect('pubrec');
      c.destroy();
      await waitOffline(h, id);
      const { peer } = await h.connectRaw(v, id, persistent(v));
      peer.send({ ...packet, dup: true });
      assert.equal((await peer.expect('pubrec')).messageId, 12);
      peer.send({ cmd: 'pubrel', messageId: 12 });
      const comp = await peer.expect('pubcomp');
      assert.equal(comp.messageId, 12);
      if (v === 5) assert.equal(comp.reasonCode ?? 0, 0, 'the id was known');
      assert.deepEqual((await sub.drainPublishes()).map((p) => p.payload.toString()), ['once']);
    });
  }
});
