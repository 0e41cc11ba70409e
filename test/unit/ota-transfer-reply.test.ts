/**
 * The flow-control view a broker service gets of its requester (ServiceReply, added for
 * OTA block transfer): `backlog()` counts the session's unacknowledged and queued QoS 1
 * messages, `congested()` and `maxPacketSize()` read the attached connection, and
 * `closed()` turns true when that connection goes, and stays true when the same session
 * is taken by a newer connection. A real Session over a recording delivery target (the
 * channel's role).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { replyTo } from '../../src/broker/client-services.js';
import type { StoredSubscription } from '../../src/broker/ports.js';
import type { DeliveryTarget } from '../../src/broker/session/outbound.js';
import { Session } from '../../src/broker/session/session.js';
import type { Clock } from '../../src/core/clock.js';

class Target implements DeliveryTarget {
  sendQuota = 2;
  congested = false;
  clientMaxPacketSize = Number.MAX_SAFE_INTEGER;
  sent: Array<{ topic: string; qos: number; packetId: number }> = [];
  sendPublish(message: { topic: string }, qos: 0 | 1 | 2, _retain: boolean, _ids: number[], packetId: number): boolean {
    this.sent.push({ topic: message.topic, qos, packetId });
    return true;
  }
  sendPubrel(): void {}
  queueCongested(): void {}
  queueEased(): void {}
}

test('ServiceReply: backlog, congested, maxPacketSize and closed follow the session and its connection', () => {
  let now = 1_000;
  const clock: Clock = { now: () => now, setTimeout: () => ({ cancel: () => undefined }) };
  const session = new Session('dev-1', 5, 0, { clock, store: null, maxQueued: 100, counters: { droppedQueueFull: 0, droppedExpired: 0, droppedTooLarge: 0 }, onDrop: () => undefined });
  const sub: StoredSubscription = { filter: '$bastion/ota/dev-1/#', qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0 } as StoredSubscription;
  session.subscriptions.set(sub.filter, sub);
  const target = new Target();
  session.attach(target);
  const reply = replyTo(session);
  assert.equal(reply.backlog(), 0);
  assert.equal(reply.closed(), false);
  assert.equal(reply.congested(), false);
  assert.equal(reply.maxPacketSize(), Number.MAX_SAFE_INTEGER);

  // Three QoS 1 answers with a receive window of two: two in flight, one queued.
  for (let i = 0; i < 3; i++) assert.equal(reply.send('$bastion/ota/dev-1/files/x/data', Buffer.from([i])), true);
  assert.equal(target.sent.length, 2);
  assert.equal(reply.backlog(), 3);
  // A PUBACK: one less unacknowledged, the queued one goes out.
  assert.equal(session.complete(target.sent[0]!.packetId, 'publish-sent'), true);
  assert.equal(reply.backlog(), 2);
  assert.equal(target.sent.length, 3);
  // No matching subscription: not sent, and nothing counted.
  assert.equal(reply.send('$bastion/other', Buffer.from('x')), false);
  assert.equal(reply.backlog(), 2);

  target.congested = true;
  target.clientMaxPacketSize = 4096;
  assert.equal(reply.congested(), true);
  assert.equal(reply.maxPacketSize(), 4096);

  session.detach(now);
  assert.equal(reply.closed(), true);
  assert.equal(reply.backlog(), 0);
  assert.equal(reply.congested(), false);
  // The same session taken by a newer connection: still closed for the old request's reply.
  now += 1;
  session.attach(new Target());
  assert.equal(reply.closed(), true);
  assert.equal(replyTo(session).closed(), false);
});
