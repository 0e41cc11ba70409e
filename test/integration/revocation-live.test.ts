/**
 * Revocation that bites: a CRL that changes on disk while the broker runs disconnects the
 * revoked devices' live sessions within two seconds (v5: DISCONNECT 0x98), refuses their
 * reconnects, logs it, and leaves every other client alone.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { createCrl } from '../../src/pki/index.js';
import { testCa } from '../helpers/pki.js';
import { connectMqtt, endQuietly, inboxOf, withTimeout } from './support.js';
import { startTlsBroker, tryMqttConnect } from './tls-support.js';
import { makeTestPki } from '../helpers/pki.js';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';

const DAY_MS = 24 * 3600 * 1000;

function serialOf(certFile: string): string {
  return new X509Certificate(readFileSync(certFile)).serialNumber;
}

/** Replaces the CRL file the way `bastion cert revoke` does: a new file renamed over the old. */
async function publishCrl(path: string, serials: string[], crlNumber: bigint): Promise<void> {
  const now = new Date();
  const pem = await createCrl({
    ca: await testCa(),
    entries: serials.map((serialNumber) => ({ serialNumber, revokedAt: now, reason: 'keyCompromise' as const })),
    crlNumber,
    nextUpdate: new Date(now.getTime() + 7 * DAY_MS),
  });
  writeFileSync(`${path}.tmp`, pem);
  renameSync(`${path}.tmp`, path);
}

test('revoking a connected device disconnects it within 2 s (v5 0x98, v3.1.1 closed), refuses its reconnect, logs it, and spares the others', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bastion-revoke-'));
  const pki = await makeTestPki(join(dir, 'pki'), ['revoked-v5', 'revoked-v3', 'bystander']);
  const crlPath = join(dir, 'pki', 'crl.pem');
  await publishCrl(crlPath, [], 1n);
  const broker = await startTlsBroker({ dir, pki, tls: { crl: crlPath } });
  const clients: MqttClient[] = [];
  try {
    const url = `mqtts://127.0.0.1:${broker.port}`;
    const tlsOf = (name: string) => ({ ca: readFileSync(pki.caCert), cert: readFileSync(pki.clients[name]!.cert), key: readFileSync(pki.clients[name]!.key), servername: 'localhost', reconnectPeriod: 0 });
    const v5 = await connectMqtt(url, { ...tlsOf('revoked-v5'), clientId: 'revoked-v5', protocolVersion: 5 });
    const v3 = await connectMqtt(url, { ...tlsOf('revoked-v3'), clientId: 'revoked-v3', protocolVersion: 4 });
    const bystander = await connectMqtt(url, { ...tlsOf('bystander'), clientId: 'bystander', protocolVersion: 5 });
    clients.push(v5, v3, bystander);

    const v5Disconnect = new Promise<number | undefined>((resolve) => v5.on('disconnect', (p) => resolve(p.reasonCode)));
    const v5Closed = new Promise<void>((resolve) => v5.once('close', () => resolve()));
    const v3Closed = new Promise<void>((resolve) => v3.once('close', () => resolve()));
    const started = performance.now();
    await publishCrl(crlPath, [serialOf(pki.clients['revoked-v5']!.cert), serialOf(pki.clients['revoked-v3']!.cert)], 2n);

    assert.equal(await withTimeout(v5Disconnect, 2000, 'DISCONNECT to the revoked v5 client'), 0x98);
    await withTimeout(Promise.all([v5Closed, v3Closed]), 2000, 'both revoked sessions closed');
    const elapsedMs = performance.now() - started;
    assert.ok(elapsedMs < 2000, `revoked sessions closed after ${Math.round(elapsedMs)} ms`);
    await broker.logger.waitFor('client certificate revoked: session disconnected', { clientId: 'revoked-v5' });
    await broker.logger.waitFor('client certificate revoked: session disconnected', { clientId: 'revoked-v3' });

    // The reconnect fails in the TLS handshake: the listener verifies against the new CRL.
    const again = await tryMqttConnect(broker.port, { ...tlsOf('revoked-v5'), clientId: 'revoked-v5', protocolVersion: 5 });
    assert.ok('closed' in again, `reconnect of a revoked device was not refused: ${JSON.stringify(again)}`);
    await broker.logger.waitFor('TLS handshake failed', { reason: 'certificate revoked' });

    // Everyone else carries on.
    assert.equal(bystander.connected, true);
    const inbox = inboxOf(bystander);
    await bystander.subscribeAsync('still/here', { qos: 1 });
    await bystander.publishAsync('still/here', 'yes', { qos: 1 });
    await inbox.waitFor((msgs) => msgs.some((m) => m.topic === 'still/here'), 5000, 'bystander round trip');
  } finally {
    for (const c of clients) await endQuietly(c);
    await broker.stop();
  }
});
