/**
 * The whole revocation path as an operator meets it: a zero-config broker process, a
 * device connected with its certificate, `bastion cert revoke` in another process, and
 * the device's session gone within two seconds (DISCONNECT 0x98) with its reconnect
 * refused, while a freshly issued device still connects.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { BASTION_MAIN, connectMqtt, endQuietly, run, startBrokerProcess, withTimeout } from './support.js';

test('bastion cert revoke against a running zero-config broker: the device is disconnected within 2 s and cannot come back', async () => {
  const cwd = mkdtempSync(join(tmpdir(), 'bastion-revoke-cli-'));
  const broker = await startBrokerProcess(['--port', '0', '--log-level', 'info'], { cwd });
  const pki = join(cwd, 'bastion-data', 'pki');
  const device = { ca: readFileSync(join(pki, 'root.crt')), cert: readFileSync(join(pki, 'device-demo.crt')), key: readFileSync(join(pki, 'device-demo.key')) };
  const url = `mqtts://localhost:${broker.port}`;
  let client: mqtt.MqttClient | undefined;
  try {
    client = await connectMqtt(url, { ...device, clientId: 'device-demo', protocolVersion: 5, reconnectPeriod: 0 });
    const disconnected = new Promise<number | undefined>((resolve) => client!.on('disconnect', (p) => resolve(p.reasonCode)));
    const revoke = await run(process.execPath, [BASTION_MAIN, 'cert', 'revoke', '--cert', join(pki, 'device-demo.crt'), '--reason', 'keyCompromise'], { cwd, timeoutMs: 20000 });
    assert.equal(revoke.code, 0, revoke.stderr);
    // The two seconds run from the moment the command has written the new CRL and exited.
    assert.equal(await withTimeout(disconnected, 2000, 'DISCONNECT after bastion cert revoke'), 0x98);
    await broker.proc.waitForOutput(/client certificate revoked: session disconnected/, 5000, 'stderr');

    const again = mqtt.connect(url, { ...device, clientId: 'device-demo', protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 5000 });
    const outcome = await withTimeout(
      new Promise<string>((resolve) => {
        again.once('connect', () => resolve('connected'));
        again.once('error', (e) => resolve(`error: ${e.message}`));
        again.once('close', () => resolve('closed'));
      }),
      6000,
      'reconnect outcome',
    );
    again.end(true);
    assert.notEqual(outcome, 'connected');

    // Issuing goes on: a new device certificate connects to the same running broker.
    const issued = await run(process.execPath, [BASTION_MAIN, 'cert', 'issue', '--profile', 'client', '--cn', 'device-2', '--out', join(cwd, 'out')], { cwd, timeoutMs: 20000 });
    assert.equal(issued.code, 0, issued.stderr);
    const fresh = await connectMqtt(url, { ca: device.ca, cert: readFileSync(join(cwd, 'out', 'device-2.crt')), key: readFileSync(join(cwd, 'out', 'device-2.key')), clientId: 'device-2', protocolVersion: 5, reconnectPeriod: 0 });
    await endQuietly(fresh);
  } finally {
    await endQuietly(client);
    await broker.proc.stop();
    rmSync(cwd, { recursive: true, force: true });
  }
});
