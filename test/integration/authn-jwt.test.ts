/**
 * The jwt provider against a real local JWKS server (node:http): tokens as the MQTT
 * password from MQTT.js and mosquitto_pub; expired, wrong audience/issuer, wrong client id,
 * disallowed algorithm and unsigned tokens refused; key rotation (a new kid is fetched, a
 * rotated-out key is refused); a live session closed when its token expires (v5 DISCONNECT
 * 0xA0, v3 close); and MQTT 5 re-authentication (method JWT) extending the session.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import mqtt from 'mqtt';
import type { ClientIdentity } from '../../src/broker/ports.js';
import { startAuthBroker, tlsFor, type AuthBroker } from '../helpers/authn-broker.js';
import { connectRaw } from '../helpers/raw-client.js';
import { run, withTimeout } from './support.js';
import { recordIdentities, tryMqttConnect } from './tls-support.js';

const ISSUER = 'https://issuer.test';
const AUDIENCE = 'bastion';

interface SigningKey {
  kid: string;
  privateKey: CryptoKey;
  jwk: JWK;
}

async function signingKey(kid: string): Promise<SigningKey> {
  const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
  return { kid, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' } };
}

const nowS = (): number => Math.floor(Date.now() / 1000);

async function token(key: SigningKey, claims: Record<string, unknown> = {}, opts: { exp?: number; iss?: string; aud?: string } = {}): Promise<string> {
  return new SignJWT({ client_id: 'dev-7', ...claims })
    .setProtectedHeader({ alg: 'ES256', kid: key.kid })
    .setSubject('device-7')
    .setIssuer(opts.iss ?? ISSUER)
    .setAudience(opts.aud ?? AUDIENCE)
    .setIssuedAt()
    .setExpirationTime(opts.exp ?? nowS() + 3600)
    .sign(key.privateKey);
}

describe('jwt provider with a JWKS URL', () => {
  let jwks: http.Server;
  let served: JWK[] = [];
  let fetches = 0;
  let keyA: SigningKey;
  let keyB: SigningKey;
  let b: AuthBroker;
  let identities: ClientIdentity[];

  before(async () => {
    [keyA, keyB] = await Promise.all([signingKey('key-a'), signingKey('key-b')]);
    served = [keyA.jwk];
    jwks = http.createServer((_req, res) => {
      fetches++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys: served }));
    });
    await new Promise<void>((r) => jwks.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks.json`;
    b = await startAuthBroker({
      listeners: (pki) => [
        { name: 'tls', protocol: 'mqtts', host: '127.0.0.1', port: 0, tls: tlsFor(pki, 'none'), auth: { providers: ['jwt'] } },
        // Raw-byte clients (re-authentication) need plaintext: the second opt-in says so.
        { name: 'plain', protocol: 'mqtt', host: '127.0.0.1', port: 0, insecure: true, passwordsInCleartext: true, auth: { providers: ['jwt'] } },
        { name: 'anon', protocol: 'mqtt', host: '127.0.0.1', port: 0, insecure: true, allowAnonymous: true },
      ],
      authn: { jwt: { jwksUrl: url, issuer: ISSUER, audience: AUDIENCE, clientIdClaim: 'client_id', algorithms: ['ES256'], jwksCooldownSeconds: 0 } },
      // These tests refuse many tokens from 127.0.0.1 on purpose: not a brute-force run to ban.
      limits: { authFailures: { maxFailures: 0 } },
    });
    identities = recordIdentities(b.server);
  });
  after(async () => {
    await b.stop();
    jwks.close();
  });

  const connect = (clientId: string, password: string, version: 4 | 5 = 5) =>
    tryMqttConnect(b.port('tls'), { clientId, protocolVersion: version, ca: readFileSync(b.pki.caCert), username: 'ignored', password });

  test('a valid token admits; the token names the user', async () => {
    assert.deepEqual(await connect('dev-7', await token(keyA)), { connack: 0 });
    const id = identities.at(-1)!;
    assert.deepEqual([id.principal, id.method, id.username], ['device-7', 'jwt', 'device-7']);
  });

  test('expired, wrong audience, wrong issuer, HS256 and unsigned tokens: 0x86; another client id: 0x85', async () => {
    const expired = await token(keyA, {}, { exp: nowS() - 60 });
    assert.deepEqual(await connect('dev-7', expired), { connack: 0x86 });
    assert.equal((await b.logger.waitFor('connection refused', { reason: 'the token has expired' })).obj['reasonCode'], 0x86);
    assert.deepEqual(await connect('dev-7', await token(keyA, {}, { aud: 'someone-else' })), { connack: 0x86 });
    await b.logger.waitFor('connection refused', { reason: "the token's aud claim is not acceptable" });
    assert.deepEqual(await connect('dev-7', await token(keyA, {}, { iss: 'https://evil.test' })), { connack: 0x86 });
    await b.logger.waitFor('connection refused', { reason: "the token's iss claim is not acceptable" });
    const hs = await new SignJWT({ client_id: 'dev-7' }).setProtectedHeader({ alg: 'HS256', kid: 'key-a' }).setSubject('device-7').setIssuer(ISSUER).setAudience(AUDIENCE).setExpirationTime('1h').sign(new Uint8Array(32));
    assert.deepEqual(await connect('dev-7', hs), { connack: 0x86 });
    const body = Buffer.from(JSON.stringify({ sub: 'device-7', iss: ISSUER, aud: AUDIENCE, exp: nowS() + 3600, client_id: 'dev-7' })).toString('base64url');
    const unsigned = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${body}.x`;
    assert.deepEqual(await connect('dev-7', unsigned), { connack: 0x86 });
    assert.deepEqual(await connect('dev-8', await token(keyA)), { connack: 0x85 });
  });

  test('mosquitto_pub with a token as the password: valid publishes, expired is refused', async () => {
    const args = ['-h', 'localhost', '-p', String(b.port('tls')), '--cafile', b.pki.caCert, '-i', 'dev-7', '-t', 'a/b', '-m', 'x', '-u', 'jwt'];
    const ok = await run('mosquitto_pub', [...args, '-P', await token(keyA)], { timeoutMs: 10_000 });
    assert.equal(ok.code, 0, ok.stderr);
    const bad = await run('mosquitto_pub', [...args, '-P', await token(keyA, {}, { exp: nowS() - 60 })], { timeoutMs: 10_000 });
    assert.match(bad.stderr, /bad user name or password/i);
  });

  test('key rotation: a new kid is fetched and admitted; a token of the rotated-out key is refused', async () => {
    served = [keyB.jwk];
    const before = fetches;
    assert.deepEqual(await connect('dev-7', await token(keyB)), { connack: 0 });
    assert.ok(fetches > before, 'the unknown kid made the broker fetch the key set again');
    assert.deepEqual(await connect('dev-7', await token(keyA)), { connack: 0x86 });
    await b.logger.waitFor('connection refused', { reason: 'no key of the key set verifies the token' });
    served = [keyA.jwk, keyB.jwk];
  });

  test('token expiry closes a live session: v5 DISCONNECT 0xA0, v3.1.1 close', async () => {
    const exp = nowS() + 2;
    const v5 = mqtt.connect(`mqtts://127.0.0.1:${b.port('tls')}`, { clientId: 'dev-7', protocolVersion: 5, ca: readFileSync(b.pki.caCert), servername: 'localhost', username: 'x', password: await token(keyA, {}, { exp }), reconnectPeriod: 0 });
    const v3 = mqtt.connect(`mqtts://127.0.0.1:${b.port('tls')}`, { clientId: 'dev-3', protocolVersion: 4, ca: readFileSync(b.pki.caCert), servername: 'localhost', username: 'x', password: await token(keyA, { client_id: 'dev-3' }, { exp }), reconnectPeriod: 0 });
    try {
      const disconnect = withTimeout(new Promise<number | undefined>((r) => v5.once('disconnect', (p) => r(p.reasonCode))), 8000, 'v5 DISCONNECT');
      const closed = withTimeout(new Promise<void>((r) => v3.once('close', () => r())), 8000, 'v3 close');
      assert.equal(await disconnect, 0xa0);
      await closed;
      const line = await b.logger.waitFor('credential expired; closing the session', { clientId: 'dev-7' });
      assert.equal(line.level, 'info');
    } finally {
      v5.end(true);
      v3.end(true);
    }
  });

  test('MQTT 5 re-authentication with a fresh token keeps the session past the first expiry', async () => {
    const exp = nowS() + 2;
    const method = (t: string) => ({ properties: { authenticationMethod: 'JWT', authenticationData: Buffer.from(t) } });
    const renewed = await connectRaw(b.port('plain'), 5, 'dev-7', method(await token(keyA, {}, { exp })));
    const control = await connectRaw(b.port('plain'), 5, 'dev-9', method(await token(keyA, { client_id: 'dev-9' }, { exp })));
    try {
      assert.equal(renewed.connack.reasonCode, 0);
      assert.equal(renewed.connack.properties?.authenticationMethod, 'JWT');
      renewed.client.send({ cmd: 'auth', reasonCode: 0x19, properties: { authenticationMethod: 'JWT', authenticationData: Buffer.from(await token(keyA, {}, { exp: nowS() + 3600 })) } }, 5);
      const ack = await renewed.client.expect('auth');
      assert.equal(ack.reasonCode, 0);
      // The control client has the same first expiry and no renewal: when it is closed,
      // the renewed client's first expiry has passed too.
      const gone = await control.client.expect('disconnect', 8000);
      assert.equal(gone.reasonCode, 0xa0);
      await control.client.expectClose();
      renewed.client.send({ cmd: 'pingreq' }, 5);
      assert.equal((await renewed.client.expect('pingresp')).cmd, 'pingresp');
    } finally {
      renewed.client.destroy();
      control.client.destroy();
    }
  });

  test('re-authentication naming another user, or with an expired token: DISCONNECT 0x87', async () => {
    const method = (t: string) => ({ properties: { authenticationMethod: 'JWT', authenticationData: Buffer.from(t) } });
    const auth = async (t: string) => ({ cmd: 'auth' as const, reasonCode: 0x19, properties: { authenticationMethod: 'JWT', authenticationData: Buffer.from(t) } });
    const a = await connectRaw(b.port('plain'), 5, 'dev-7', method(await token(keyA)));
    a.client.send(await auth(await new SignJWT({ client_id: 'dev-7' }).setProtectedHeader({ alg: 'ES256', kid: 'key-a' }).setSubject('device-8').setIssuer(ISSUER).setAudience(AUDIENCE).setExpirationTime('1h').sign(keyA.privateKey)), 5);
    assert.equal((await a.client.expect('disconnect')).reasonCode, 0x87);
    const c = await connectRaw(b.port('plain'), 5, 'dev-7', method(await token(keyA)));
    c.client.send(await auth(await token(keyA, {}, { exp: nowS() - 60 })), 5);
    // 0x86 is a CONNACK code only: a failed re-authentication is DISCONNECT 0x87.
    assert.equal((await c.client.expect('disconnect')).reasonCode, 0x87);
    a.client.destroy();
    c.client.destroy();
  });

  test('the JWT method on a listener whose chain does not list jwt: 0x8C', async () => {
    const r = await connectRaw(b.port('anon'), 5, 'dev-7', { properties: { authenticationMethod: 'JWT', authenticationData: Buffer.from(await token(keyA)) } });
    assert.equal(r.connack.reasonCode, 0x8c);
    r.client.destroy();
  });
});
