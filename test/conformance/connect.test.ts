/**
 * CONNECT / CONNACK conformance against a real broker, for MQTT 3.1.1 and MQTT 5:
 * session present, client identifiers, takeover, protocol ordering, protocol level,
 * connect timeout, keep-alive and the v5 CONNACK capabilities.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { frame, harness, rawConnect, str, u16, VERSIONS, vname, expectServerDisconnect, type Version, type ConnectPacket } from './support.js';

/** Session-keeping CONNECT fields for each version (v3: clean=false; v5: clean=false + expiry). */
function persistent(v: Version, expiry = 60): Partial<ConnectPacket> {
  return v === 5 ? { clean: false, properties: { sessionExpiryInterval: expiry } } : { clean: false };
}

describe('CONNECT / CONNACK', () => {
  for (const v of VERSIONS) {
    it(`${vname(v)}: session present is false on clean start, true on resume, and clean start discards the session`, async (t) => {
      const h = await harness(t);
      const id = h.id('sp');
      const first = await h.connectRaw(v, id, persistent(v));
      assert.equal(first.connack.sessionPresent, false, 'no session existed');
      assert.deepEqual(await first.peer.subscribe([{ topic: 'sp/t', qos: 1 }]), [1]);
      first.peer.send({ cmd: 'disconnect' });
      assert.deepEqual(await first.peer.expectClose(), []);

      const resumed = await h.connectRaw(v, id, persistent(v));
      assert.equal(resumed.connack.sessionPresent, true, 'the session was kept');
      // The resumed session still holds its subscription.
      const pub = await h.connect(v);
      await pub.publish('sp/t', 'kept', { qos: 1 });
      const got = await resumed.peer.expect('publish');
      assert.equal(got.payload.toString(), 'kept');
      resumed.peer.send({ cmd: 'puback', messageId: got.messageId! });
      resumed.peer.send({ cmd: 'disconnect' });
      await resumed.peer.expectClose();

      const clean = await h.connectRaw(v, id, { clean: true });
      assert.equal(clean.connack.sessionPresent, false, 'clean start discards the session [MQTT-3.1.2-4]');
      await pub.publish('sp/t', 'gone', { qos: 1 });
      await clean.peer.expectNothingBeforePing();
    });
  }

  it('v3.1.1: an empty client id with clean session 0 is refused with return code 2 and closed', async (t) => {
    const h = await harness(t);
    const { peer, connack } = await h.connectBytes(4, rawConnect(4, '', { clean: false }));
    assert.equal(connack.returnCode, 2, 'identifier rejected [MQTT-3.1.3-8]');
    assert.equal(connack.sessionPresent, false);
    assert.deepEqual(await peer.expectClose(), []);
    // With clean session 1 an empty id is accepted [MQTT-3.1.3-7].
    const ok = await h.connectBytes(4, rawConnect(4, '', { clean: true }));
    assert.equal(ok.connack.returnCode, 0);
    await ok.peer.sync();
  });

  it('v5: an empty client id gets an Assigned Client Identifier, unique per connection, even without clean start', async (t) => {
    const h = await harness(t);
    const a = await h.connectBytes(5, rawConnect(5, '', { clean: true }));
    const b = await h.connectBytes(5, rawConnect(5, '', { clean: false }));
    for (const { connack } of [a, b]) {
      assert.equal(connack.reasonCode, 0);
      assert.equal(typeof connack.properties?.assignedClientIdentifier, 'string');
      assert.ok(connack.properties!.assignedClientIdentifier!.length > 0);
    }
    assert.notEqual(a.connack.properties!.assignedClientIdentifier, b.connack.properties!.assignedClientIdentifier);
    // A client that chose its id gets none.
    const named = await h.connectRaw(5, h.id());
    assert.equal(named.connack.properties?.assignedClientIdentifier, undefined);
  });

  for (const v of VERSIONS) {
    it(`${vname(v)}: a second connection with the same client id takes over; the old one is closed${v === 5 ? ' with DISCONNECT 0x8E' : ''}`, async (t) => {
      const h = await harness(t);
      const id = h.id('take');
      const old = await h.connect(v, id);
      const fresh = await h.connect(v, id);
      await expectServerDisconnect(old, 0x8e);
      await fresh.sync();
      // The new connection owns the client id: it can subscribe and receive.
      assert.deepEqual(await fresh.subscribe([{ topic: 'take/t', qos: 0 }]), [0]);
      const pub = await h.connect(v);
      await pub.publish('take/t', 'to-new', { qos: 1 });
      assert.equal((await fresh.expect('publish')).payload.toString(), 'to-new');
    });

    it(`${vname(v)}: a second CONNECT is a protocol violation: close${v === 5 ? ' with DISCONNECT 0x82' : ''}`, async (t) => {
      const h = await harness(t);
      const c = await h.connect(v);
      c.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: v, clientId: c.clientId, clean: true, keepalive: 60 });
      const packets = await expectServerDisconnect(c, 0x82);
      assert.equal(packets.filter((p) => p.cmd === 'connack').length, 0, 'no second CONNACK');
    });

    it(`${vname(v)}: a packet before CONNECT closes the connection with no answer`, async (t) => {
      const h = await harness(t);
      for (const bytes of [
        [0xc0, 0x00], // PINGREQ
        [0x82, 0x06, ...u16(1), ...str('a'), 0x00], // SUBSCRIBE (v3 layout)
        [0x30, 0x04, ...str('a'), 0x78], // PUBLISH
      ]) {
        const s = await h.socket(v);
        s.sendBytes(Buffer.from(bytes));
        assert.deepEqual(await s.expectClose(), [], `no answer to ${Buffer.from(bytes).toString('hex')}`);
      }
      await h.assertAlive(v);
    });

    it(`${vname(v)}: a silent socket is closed after the connect timeout, as is one with a partial CONNECT`, async (t) => {
      const h = await harness(t, { mqtt: { connectTimeout: 0.3 } });
      const silent = await h.socket(v);
      const started = Date.now();
      assert.deepEqual(await silent.expectClose(3000), []);
      assert.ok(Date.now() - started >= 250, 'not closed before the timeout');
      const partial = await h.socket(v);
      // The first 6 bytes of a CONNECT: the frame never completes.
      partial.sendBytes([0x10, 0x10, ...str('MQTT')]);
      assert.deepEqual(await partial.expectClose(3000), []);
    });

    it(`${vname(v)}: silence for 1.5 x keep-alive closes the connection${v === 5 ? ' with DISCONNECT 0x8D' : ''}`, async (t) => {
      const h = await harness(t);
      const c = await h.connect(v, h.id(), { keepalive: 1 });
      const started = Date.now();
      await expectServerDisconnect(c, 0x8d, 4000);
      const elapsed = Date.now() - started;
      assert.ok(elapsed >= 1400, `closed after ${elapsed} ms: the server allows one and a half periods [MQTT-3.1.2-24]`);
    });
  }

  it('unsupported protocol level 6: CONNACK with return code 1 (unacceptable protocol version), then close', async (t) => {
    const h = await harness(t);
    const s = await h.socket(4);
    // CONNECT "MQTT" level 6, clean session, keep-alive 60, client id "x".
    s.sendBytes(frame(0x10, [...str('MQTT'), 0x06, 0x02, ...u16(60), ...str('x')]));
    const packets = await s.expectClose();
    assert.equal(packets.length, 1, JSON.stringify(packets));
    const connack = packets[0]!;
    assert.equal(connack.cmd, 'connack');
    assert.equal((connack as { returnCode?: number }).returnCode, 1);
    assert.equal((connack as { sessionPresent?: boolean }).sessionPresent, false);
    await h.assertAlive(4);
  });

  it('v5: CONNACK announces the configured capabilities', async (t) => {
    const h = await harness(t, { mqtt: { maxInflight: 3, maxPacketSize: 1000, topicAliasMax: 5 } });
    const { connack } = await h.connectRaw(5, h.id());
    assert.equal(connack.reasonCode, 0);
    assert.equal(connack.sessionPresent, false);
    const p = connack.properties ?? {};
    assert.equal(p.receiveMaximum, 3);
    assert.equal(p.maximumPacketSize, 1000);
    assert.equal(p.topicAliasMaximum, 5);
    assert.equal(p.sharedSubscriptionAvailable, true);
    assert.equal(p.wildcardSubscriptionAvailable, true);
    assert.equal(p.subscriptionIdentifiersAvailable, true);
    // QoS 2 and retain are available: absent means available [MQTT-3.2.2-9].
    assert.equal(p.maximumQoS, undefined);
    assert.equal(p.retainAvailable, undefined);
  });

  it('v5: CONNACK announces a lower maximum QoS, retain unavailable and a capped session expiry', async (t) => {
    const h = await harness(t, { mqtt: { maxQos: 1, retainAvailable: false, sessionExpiryMax: 10 } });
    const { peer, connack } = await h.connectRaw(5, h.id(), { properties: { sessionExpiryInterval: 100 } });
    assert.equal(connack.reasonCode, 0);
    assert.equal(connack.properties?.maximumQoS, 1);
    assert.equal(connack.properties?.retainAvailable, false);
    assert.equal(connack.properties?.sessionExpiryInterval, 10, 'the server tells the expiry it will use');
    // Going beyond an announced capability is a protocol error [MQTT-3.3.1-4] [MQTT-3.3.2-11].
    peer.send({ cmd: 'publish', topic: 'caps/q2', payload: 'x', qos: 2, messageId: 1, retain: false, dup: false });
    await expectServerDisconnect(peer, 0x9b);
    const r = await h.connect(5);
    r.send({ cmd: 'publish', topic: 'caps/r', payload: 'x', qos: 0, retain: true, dup: false });
    await expectServerDisconnect(r, 0x9a);
  });

  it('v3.1.1: CONNACK carries no v5 fields', async (t) => {
    const h = await harness(t);
    const { connack } = await h.connectRaw(4, h.id());
    assert.equal(connack.returnCode, 0);
    assert.equal(connack.reasonCode, undefined);
    assert.equal(connack.properties, undefined);
  });

  it('v5: CONNECT with an unknown authentication method is refused with CONNACK 0x8C, then closed', async (t) => {
    const h = await harness(t);
    const s = await h.socket(5);
    s.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: h.id(), clean: true, keepalive: 60, properties: { authenticationMethod: 'NO-SUCH-METHOD', authenticationData: Buffer.from('x') } }, 5);
    const packets = await s.expectClose();
    assert.equal(packets.length, 1, JSON.stringify(packets));
    const connack = packets[0] as { cmd: string; reasonCode?: number; sessionPresent?: boolean };
    assert.equal(connack.cmd, 'connack');
    assert.equal(connack.reasonCode, 0x8c);
    assert.equal(connack.sessionPresent, false);
  });
});
