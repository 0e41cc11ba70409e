/**
 * SCRAM-SHA-256 over MQTT 5 enhanced authentication with a real MQTT.js v5 client driving
 * the exchange (client side in test/helpers/scram-client.ts) against users the
 * `bastion user` CLI added: success with a verified server-final in CONNACK; a wrong proof
 * and an unknown user both 0x86; a listener whose chain lacks scram answers 0x8C.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import mqtt, { type IConnackPacket } from 'mqtt';
import type { ClientIdentity } from '../../src/broker/ports.js';
import { startAuthBroker, tlsFor, type AuthBroker } from '../helpers/authn-broker.js';
import { ScramClient } from '../helpers/scram-client.js';
import { withTimeout } from './support.js';
import { recordIdentities } from './tls-support.js';
import { RawClient } from '../helpers/raw-client.js';

const METHOD = 'SCRAM-SHA-256';

type Outcome = { connack: number; serverFinal?: string } | { closed: string };

/** One MQTT.js v5 connection that runs SCRAM through CONNECT, AUTH and CONNACK. */
async function scramConnect(port: number, ca: Buffer, clientId: string, scram: ScramClient): Promise<Outcome> {
  const client = mqtt.connect(`mqtts://127.0.0.1:${port}`, {
    clientId,
    protocolVersion: 5,
    ca,
    servername: 'localhost',
    reconnectPeriod: 0,
    properties: { authenticationMethod: METHOD, authenticationData: Buffer.from(scram.clientFirst()) },
  });
  client.handleAuth = (packet, callback) => {
    const serverFirst = packet.properties?.authenticationData?.toString('utf8') ?? '';
    callback(undefined, { cmd: 'auth', reasonCode: 0x18, properties: { authenticationMethod: METHOD, authenticationData: Buffer.from(scram.clientFinal(serverFirst)) } });
  };
  try {
    return await withTimeout(
      new Promise<Outcome>((resolvePromise) => {
        client.once('connect', (connack: IConnackPacket) => resolvePromise({ connack: 0, serverFinal: connack.properties?.authenticationData?.toString('utf8') ?? '' }));
        client.once('error', (err: Error & { code?: unknown }) => resolvePromise(typeof err.code === 'number' ? { connack: err.code } : { closed: err.message }));
        client.once('close', () => resolvePromise({ closed: 'closed before CONNACK' }));
      }),
      8000,
      'SCRAM connect',
    );
  } finally {
    await client.endAsync(true).catch(() => undefined);
  }
}

describe('SCRAM-SHA-256 enhanced authentication', () => {
  let b: AuthBroker;
  let ca: Buffer;
  let identities: ClientIdentity[];
  before(async () => {
    b = await startAuthBroker({
      listeners: (pki) => [
        { name: 'scram', protocol: 'mqtts', host: '127.0.0.1', port: 0, tls: tlsFor(pki, 'none'), auth: { providers: ['scram'] } },
        { name: 'pw', protocol: 'mqtts', host: '127.0.0.1', port: 0, tls: tlsFor(pki, 'none'), auth: { providers: ['password'] } },
        // Raw-byte clients need plaintext; SCRAM there needs the second opt-in too.
        { name: 'plain', protocol: 'mqtt', host: '127.0.0.1', port: 0, insecure: true, passwordsInCleartext: true, auth: { providers: ['scram'] } },
      ],
    });
    ca = readFileSync(b.pki.caCert);
    identities = recordIdentities(b.server);
    assert.equal((await b.addUser('erin', 'erin has a long password')).code, 0);
  });
  after(() => b.stop());

  test('the right password: CONNACK 0 carries a server-final the client verifies', async () => {
    const scram = new ScramClient('erin', 'erin has a long password');
    const r = await scramConnect(b.port('scram'), ca, 'c-erin', scram);
    assert.equal('connack' in r && r.connack, 0, JSON.stringify(r));
    assert.ok('serverFinal' in r && scram.verifyServerFinal(r.serverFinal!), 'the server proved it holds the ServerKey');
    const id = identities.at(-1)!;
    assert.deepEqual([id.principal, id.method, id.username], ['erin', 'scram', 'erin']);
  });

  test('a wrong proof and an unknown user are both refused 0x86', async () => {
    assert.deepEqual(await scramConnect(b.port('scram'), ca, 'c-wrong', new ScramClient('erin', 'not erin password')), { connack: 0x86 });
    assert.deepEqual(await scramConnect(b.port('scram'), ca, 'c-unknown', new ScramClient('nobody', 'not erin password')), { connack: 0x86 });
    const lines = b.logger.lines.items.filter((l) => l.msg === 'connection refused' && (l.obj['clientId'] === 'c-wrong' || l.obj['clientId'] === 'c-unknown'));
    assert.deepEqual(lines.map((l) => l.obj['reason']), ['bad user name or password', 'bad user name or password']);
  });

  test('a listener whose chain does not list scram answers 0x8C', async () => {
    assert.deepEqual(await scramConnect(b.port('pw'), ca, 'c-pw', new ScramClient('erin', 'erin has a long password')), { connack: 0x8c });
  });

  test('re-authentication runs a fresh SCRAM exchange: AUTH 0x00 with server-final; a wrong password then is DISCONNECT 0x87', async () => {
    const raw = await RawClient.connect(b.port('plain'), 5);
    const data = (text: string) => ({ authenticationMethod: METHOD, authenticationData: Buffer.from(text) });
    const exchange = async (scram: ScramClient, opening: 'connect' | 'reauth'): Promise<void> => {
      if (opening === 'connect') raw.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'c-raw', clean: true, keepalive: 60, properties: data(scram.clientFirst()) }, 5);
      else raw.send({ cmd: 'auth', reasonCode: 0x19, properties: data(scram.clientFirst()) }, 5);
      const serverFirst = await raw.expect('auth');
      assert.equal(serverFirst.reasonCode, 0x18);
      raw.send({ cmd: 'auth', reasonCode: 0x18, properties: data(scram.clientFinal(serverFirst.properties!.authenticationData!.toString('utf8'))) }, 5);
    };
    try {
      const first = new ScramClient('erin', 'erin has a long password');
      await exchange(first, 'connect');
      const connack = await raw.expect('connack');
      assert.equal(connack.reasonCode, 0);
      assert.ok(first.verifyServerFinal(connack.properties!.authenticationData!.toString('utf8')));
      const again = new ScramClient('erin', 'erin has a long password');
      await exchange(again, 'reauth');
      const done = await raw.expect('auth');
      assert.equal(done.reasonCode, 0);
      assert.ok(again.verifyServerFinal(done.properties!.authenticationData!.toString('utf8')));
      await exchange(new ScramClient('erin', 'not erin password'), 'reauth');
      assert.equal((await raw.expect('disconnect')).reasonCode, 0x87);
    } finally {
      raw.destroy();
    }
  });
});
