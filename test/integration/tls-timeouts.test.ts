/**
 * Slow or silent clients on the TLS port are closed by `mqtt.connectTimeout`: one that
 * never starts the handshake, and one that completes TLS but never sends CONNECT.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { withTimeout } from './support.js';
import { clientTls, startTlsBroker, tlsHandshake, type TlsBroker } from './tls-support.js';

function closed(socket: net.Socket): Promise<number> {
  const start = Date.now();
  return withTimeout(new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now() - start))), 5000, 'the server to close the connection');
}

describe('TLS handshake and CONNECT timeouts (connectTimeout 0.5 s)', () => {
  let b: TlsBroker;
  before(async () => {
    b = await startTlsBroker({ mqtt: { connectTimeout: 0.5 } });
  });
  after(() => b.stop());

  test('a TCP client that never starts the TLS handshake is closed and logged', async () => {
    const socket = net.connect(b.port, '127.0.0.1');
    socket.on('error', () => {});
    const ms = await closed(socket);
    assert.ok(ms < 3000, `closed after ${ms} ms`);
    await b.logger.waitFor('TLS handshake failed', { listener: 'mqtts', code: 'ERR_TLS_HANDSHAKE_TIMEOUT' });
  });

  test('a client that completes TLS but never sends CONNECT is closed', async () => {
    const socket = await tlsHandshake(b.port, clientTls(b.pki, b.pki.clients.client1!));
    socket.on('error', () => {});
    const ms = await closed(socket);
    assert.ok(ms < 3000, `closed after ${ms} ms`);
  });
});
