/**
 * A clean zero-config broker (started in-process as `bastion serve` starts it: the
 * development PKI, then zeroConfig) audited on its schedule with its demo device connected:
 * the only finding is `root-key-online` (low), no live check finds anything.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { BrokerApi } from '../../src/broker/api.js';
import { ensureDevPki } from '../../src/server/dev-pki.js';
import { startServer } from '../../src/server/server.js';
import { zeroConfig } from '../../src/server/zero-config.js';
import { EventRecorder } from '../helpers/event-recorder.js';
import { connectMqtt, endQuietly } from './support.js';

const dir = mkdtempSync(join(tmpdir(), 'defender-audits-zero-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('a zero-config broker with its demo device connected: the scheduled audit finds only root-key-online', async () => {
  const dataDir = join(dir, 'bastion-data');
  const pki = await ensureDevPki(dataDir);
  const base = zeroConfig(dataDir, pki, 0);
  // Only the interval differs from `bastion serve`'s config, so the test need not wait an hour.
  const config = { ...base, defender: { ...base.defender, audit: { ...base.defender.audit, intervalSeconds: 1 } } };
  const server = await startServer({ config, baseDir: dir });
  // The server runs the audits on its schedule (server.ts wires DefenderAudits); its first run is 1 s after start.
  const events = new EventRecorder(server.broker.events);
  const api = new BrokerApi(server.broker);
  const client = await connectMqtt(`mqtts://127.0.0.1:${server.listeners[0]!.port}`, {
    clientId: pki.clientCommonName,
    protocolVersion: 5,
    servername: 'localhost',
    ca: readFileSync(pki.rootCert),
    cert: readFileSync(pki.clientCert),
    key: readFileSync(pki.clientKey),
  });
  try {
    await client.publishAsync(`devices/${pki.clientCommonName}/hello`, 'hi', { qos: 1 });
    assert.equal((await api.directory.listClients(0, 10)).total, 1, 'the demo device is connected');
    const ev = await events.waitFor('defender.audit', (e) => e.trigger === 'schedule' && server.defender.facade.lastAudit() !== null);
    assert.deepEqual(ev.checks, ['root-key-online']);
    assert.deepEqual(ev.counts, { low: 1, medium: 0, high: 0, critical: 0 });
    assert.deepEqual(server.defender.facade.lastAudit()?.findings.map((f) => `${f.check}:${f.severity}`), ['root-key-online:low']);
    const asked = await server.defender.facade.runAudit('test');
    assert.deepEqual(asked.findings.map((f) => f.check), ['root-key-online'], 'an audit asked for through the facade finds the same');
  } finally {
    await endQuietly(client);
    events.stop();
    await server.stop();
  }
});
