/**
 * A persistent session recovered after a restart is authorized at delivery with the
 * identity stored with it (no "awaiting identity" special case): with the same rules a
 * message for the offline session is queued and delivered on reconnect; after its right
 * to read is revoked, a message for it is denied at delivery (v5 PUBACK 0x10: nobody may
 * receive it) instead of being queued.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IClientOptions } from 'mqtt';
import { startTestBroker, type TestBroker } from '../helpers/broker.js';
import { connectMqtt, endQuietly, Inbox, pubackCode } from './support.js';

const WAIT = 5000;

function rules(readerTopic: string): Record<string, unknown> {
  return {
    roles: {
      reader: { rules: [{ effect: 'allow', action: 'subscribe', topic: readerTopic }] },
      writer: { rules: [{ effect: 'allow', action: 'publish', topic: 'feed/#' }] },
    },
    bindings: [
      { role: 'reader', attribute: 'cert.cn', value: 'dev2' },
      { role: 'writer', attribute: 'cert.cn', value: 'dev1' },
    ],
  };
}

function opts(b: TestBroker, name: string, extra: IClientOptions = {}): IClientOptions {
  const files = b.pki.clients[name]!;
  return { ca: readFileSync(b.pki.caCert), cert: readFileSync(files.cert), key: readFileSync(files.key), protocolVersion: 5, clientId: name, ...extra };
}

test('delivery to a recovered offline session uses its stored identity', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bastion-authz-recovered-'));
  const dataDir = join(dir, 'data');
  const start = (readerTopic: string): Promise<TestBroker> => startTestBroker({ clients: ['dev1', 'dev2'], persistence: true, dataDir, authz: rules(readerTopic) });
  const persistent: IClientOptions = { clean: false, properties: { sessionExpiryInterval: 3600 } };
  try {
    // Run 1: dev2 subscribes with a persistent session and goes away.
    let broker = await start('feed/#');
    let dev2 = await connectMqtt(`mqtts://localhost:${broker.tlsPort}`, opts(broker, 'dev2', persistent));
    assert.equal((await dev2.subscribeAsync('feed/#', { qos: 1 }))[0]!.qos, 1);
    await endQuietly(dev2);
    await broker.stop();

    // Run 2: the session was recovered with dev2's identity: a message for it is queued.
    broker = await start('feed/#');
    let dev1 = await connectMqtt(`mqtts://localhost:${broker.tlsPort}`, opts(broker, 'dev1'));
    assert.equal(await pubackCode(dev1, 'feed/a', WAIT), 0);
    await endQuietly(dev1);
    await broker.stop();

    // Run 3: dev2 comes back and gets it.
    broker = await start('feed/#');
    const inbox = new Inbox<string>();
    dev2 = await connectMqtt(`mqtts://localhost:${broker.tlsPort}`, opts(broker, 'dev2', persistent), WAIT, (c) => c.on('message', (t) => inbox.push(t)));
    assert.deepEqual(await inbox.waitFor((m) => m.length >= 1, WAIT, 'the queued message'), ['feed/a']);
    await endQuietly(dev2);
    await broker.stop();

    // Run 4: dev2 may no longer read feed/#: its recovered session is denied at delivery.
    broker = await start('other/#');
    dev1 = await connectMqtt(`mqtts://localhost:${broker.tlsPort}`, opts(broker, 'dev1'));
    assert.equal(await pubackCode(dev1, 'feed/b', WAIT), 0x10);
    assert.equal(broker.server.broker.counters.deniedAtDelivery, 1);
    await endQuietly(dev1);
    await broker.stop();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
