/**
 * The psk provider in a listener's chain: mosquitto_pub over TLS-PSK is admitted with its
 * PSK identity (method psk), while a verified client certificate on the same listener is
 * refused because the chain lists only psk.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { ClientIdentity } from '../../src/broker/ports.js';
import { startAuthBroker, tlsFor, type AuthBroker } from '../helpers/authn-broker.js';
import { run } from './support.js';
import { clientTls, recordIdentities, tryMqttConnect } from './tls-support.js';

const KEY = '00112233445566778899aabbccddeeff';

describe('psk provider', () => {
  let dir: string;
  let b: AuthBroker;
  let identities: ClientIdentity[];
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'bastion-authn-psk-'));
    const pskFile = join(dir, 'psk.yaml');
    writeFileSync(pskFile, `sensor-1: ${KEY}\n`, { mode: 0o600 });
    b = await startAuthBroker({
      listeners: (pki) => [{ name: 'psk', protocol: 'mqtts', host: '127.0.0.1', port: 0, tls: tlsFor(pki, 'optional'), psk: { file: pskFile }, auth: { providers: ['psk'] } }],
    });
    identities = recordIdentities(b.server);
  });
  after(async () => {
    await b.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('mosquitto_pub with a PSK is admitted as its PSK identity', async () => {
    const r = await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(b.port('psk')), '--psk', KEY, '--psk-identity', 'sensor-1', '-i', 'sensor-1', '-t', 'a/b', '-m', 'x'], { timeoutMs: 10_000 });
    assert.equal(r.code, 0, r.stderr);
    const id = identities.at(-1)!;
    assert.deepEqual([id.principal, id.method, id.pskIdentity], ['sensor-1', 'psk', 'sensor-1']);
  });

  test('a client certificate is refused where the chain lists only psk', async () => {
    const device = clientTls(b.pki, b.pki.clients['device1']!);
    assert.deepEqual(await tryMqttConnect(b.port('psk'), { clientId: 'device1', protocolVersion: 5, ...device }), { connack: 0x87 });
  });
});
