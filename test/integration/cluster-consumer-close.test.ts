/**
 * A node's NATS connection and the JetStream consumers made on it as it closes (a KV
 * watch, a key listing, an object store read: each is a push consumer with an
 * idle-heartbeat timer in @nats-io/jetstream). A consumer made while the client closes
 * used to keep its heartbeat timer after the close: the timer reset the consumer on the
 * closed connection every few seconds (ClosedConnectionError) and the process never
 * exited (a CI run of cluster-revocation on Node 26). These tests drive the real client
 * against a real nats-server and count the process's live timers, not sleeps.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstream, type ConsumerMessages } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { parseConfig } from '../../src/server/load-config.js';
import { connectNats, ConnectionClosingError, type ClusterNatsConnection } from '../../src/cluster/nats-connection.js';
import { startNatsServer, type SingleNats } from '../helpers/nats-server.js';
import { withTimeout } from './support.js';

const BUCKET = 'bmq_close_race';
let nats: SingleNats;
let dir: string;

before(async () => {
  nats = await startNatsServer();
  dir = mkdtempSync(join(tmpdir(), 'bastion-consumer-close-'));
});

after(async () => {
  await nats?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Timers that keep the event loop alive (what kept the process from exiting). */
function liveTimers(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
}

async function connect(nodeId: string): Promise<ClusterNatsConnection> {
  const listeners = [{ name: 'plain', protocol: 'mqtt', port: 0, insecure: true, allowAnonymous: true }];
  const cluster = parseConfig({ listeners, cluster: { nats: { servers: [nats.url] } } }, dir).config.cluster!;
  return connectNats({ cluster, nodeId, baseDir: dir });
}

test('close() while a consumer is being made: it is made on the open connection, ended, and leaves no timer behind', async () => {
  const baseline = liveTimers();
  const conn = await connect('close-race-1');
  await new Kvm(conn.nc).create(BUCKET, { history: 1 });
  const js = jetstream(conn.nc);
  let made: ConsumerMessages | undefined;
  let consumerCreated!: () => void;
  const created = new Promise<void>((resolve) => (consumerCreated = resolve));
  let letConsume!: () => void;
  const consumeNow = new Promise<void>((resolve) => (letConsume = resolve));
  // What @nats-io/kv's watch() does, with the gap between its two steps (the consumer
  // created on the server, then consumed: subscription and heartbeat timer) held open,
  // so the close begins exactly there.
  const making = conn.consumer(
    async () => {
      const oc = await js.consumers.getPushConsumer(`KV_${BUCKET}`, { filter_subjects: `$KV.${BUCKET}.>` });
      consumerCreated();
      await consumeNow;
      made = await oc.consume();
      return made;
    },
    (m) => m.stop(),
  );
  const outcome = making.then(
    () => null,
    (err: unknown) => err,
  );
  await withTimeout(created, 5000, 'the consumer created on the server');
  const closing = conn.close();
  letConsume();
  await withTimeout(closing, 10_000, 'the connection closed');
  const err = await outcome;
  assert.equal(liveTimers(), baseline, 'a timer outlived the connection (the consumer\'s idle-heartbeat monitor)');
  assert.ok(made !== undefined, `the consumer was consumed on the open connection (${String(err)})`);
  assert.ok(err instanceof ConnectionClosingError, `the caller is told the connection closes: ${String(err)}`);
});

test('once close() has begun no consumer is made (create is not called), and a KV watch begun just before it is ended', async () => {
  const baseline = liveTimers();
  const conn = await connect('close-race-2');
  const kv = await new Kvm(conn.nc).create(BUCKET, { history: 1 });
  await kv.put('k', 'v');
  // A watch whose creation is in flight when the close begins (the shared state's re-read
  // after a NATS reconnect, when the node stops right then).
  const watch = conn.consumer(
    () => kv.watch({ key: '>' }),
    (w) => w.stop(),
  );
  const closing = conn.close();
  let called = false;
  await assert.rejects(
    conn.consumer(
      () => {
        called = true;
        return kv.watch({ key: '>' });
      },
      (w) => w.stop(),
    ),
    ConnectionClosingError,
  );
  assert.equal(called, false, 'no consumer is made once the close has begun');
  await assert.rejects(watch, ConnectionClosingError);
  await withTimeout(closing, 10_000, 'the connection closed');
  await assert.rejects(
    conn.consumer(
      () => kv.watch({ key: '>' }),
      (w) => w.stop(),
    ),
    ConnectionClosingError,
  );
  assert.equal(liveTimers(), baseline, 'a timer outlived the connection');
});
