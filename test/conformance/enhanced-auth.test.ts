/**
 * The MQTT 5 enhanced authentication framework (§4.12), exercised with a toy
 * challenge-response method: CONNECT → AUTH continue → AUTH → CONNACK, failure, wrong
 * method, packets during the exchange, and re-authentication on a live connection.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import type { EnhancedAuthMethod, EnhancedAuthState, EnhancedAuthStep } from '../../src/broker/ports.js';
import { Peer, expectServerDisconnect, harness } from './support.js';

const SECRET = 'shared-secret';
const proof = (nonce: Buffer): Buffer => createHash('sha256').update(nonce).update(SECRET).digest();

/** Step 1: send a nonce. Step 2: accept sha256(nonce + secret) and admit the client id. */
const challenge: EnhancedAuthMethod = {
  name: 'TEST-CHALLENGE',
  step(state: EnhancedAuthState, data: Buffer | undefined): EnhancedAuthStep {
    const nonce = state.scratch.get('nonce') as Buffer | undefined;
    if (nonce === undefined) {
      const fresh = randomBytes(16);
      state.scratch.set('nonce', fresh);
      return { kind: 'continue', data: fresh };
    }
    state.scratch.delete('nonce');
    if (data !== undefined && data.equals(proof(nonce))) return { kind: 'success', principal: `challenged:${state.clientId}` };
    return { kind: 'failure', reasonCode: 0x87, reason: 'wrong proof' };
  },
};

const METHOD = { authenticationMethod: 'TEST-CHALLENGE' };

describe('enhanced authentication (v5 AUTH)', () => {
  it('a challenge-response exchange admits the client, whose principal comes from the method', async (t) => {
    const h = await harness(t, { enhancedAuth: [challenge], plainAnonymous: false });
    const raw = await h.socket(5);
    raw.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'dev-a', clean: true, keepalive: 60, properties: METHOD }, 5);
    const auth = await raw.expect('auth');
    assert.equal(auth.reasonCode, 0x18);
    assert.equal(auth.properties?.authenticationMethod, 'TEST-CHALLENGE');
    const nonce = auth.properties!.authenticationData!;
    raw.send({ cmd: 'auth', reasonCode: 0x18, properties: { ...METHOD, authenticationData: proof(nonce) } }, 5);
    const connack = await raw.expect('connack');
    assert.equal(connack.reasonCode, 0);
    assert.equal(connack.properties?.authenticationMethod, 'TEST-CHALLENGE');
    const session = h.broker.sessions.get('dev-a')!;
    assert.equal(h.broker.clients.get(session)?.principal, 'challenged:dev-a');
  });

  it('a wrong answer is refused with CONNACK 0x87 and the connection closes', async (t) => {
    const h = await harness(t, { enhancedAuth: [challenge], plainAnonymous: false });
    const raw = await h.socket(5);
    raw.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'dev-b', clean: true, keepalive: 60, properties: METHOD }, 5);
    await raw.expect('auth');
    raw.send({ cmd: 'auth', reasonCode: 0x18, properties: { ...METHOD, authenticationData: Buffer.from('guess') } }, 5);
    const connack = await raw.expect('connack');
    assert.equal(connack.reasonCode, 0x87);
    await raw.expectClose();
    assert.equal(h.broker.sessions.has('dev-b'), false);
  });

  it('an AUTH naming another method, or a PUBLISH during the exchange, is a protocol error', async (t) => {
    const h = await harness(t, { enhancedAuth: [challenge], plainAnonymous: false });
    for (const intruder of [
      { cmd: 'auth', reasonCode: 0x18, properties: { authenticationMethod: 'OTHER', authenticationData: Buffer.from('x') } },
      { cmd: 'publish', topic: 'sneaky', payload: Buffer.from('x'), qos: 0, retain: false, dup: false },
    ] as const) {
      const raw = await h.socket(5);
      raw.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'dev-c', clean: true, keepalive: 60, properties: METHOD }, 5);
      await raw.expect('auth');
      raw.send(intruder, 5);
      const connack = await raw.expect('connack');
      assert.equal(connack.reasonCode, 0x82, intruder.cmd);
      await raw.expectClose();
    }
  });

  it('re-authentication on a live connection runs the method again and answers AUTH 0x00', async (t) => {
    const h = await harness(t, { enhancedAuth: [challenge], plainAnonymous: false });
    const raw = await h.socket(5);
    raw.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'dev-d', clean: true, keepalive: 60, properties: METHOD }, 5);
    let nonce = (await raw.expect('auth')).properties!.authenticationData!;
    raw.send({ cmd: 'auth', reasonCode: 0x18, properties: { ...METHOD, authenticationData: proof(nonce) } }, 5);
    assert.equal((await raw.expect('connack')).reasonCode, 0);

    raw.send({ cmd: 'auth', reasonCode: 0x19, properties: METHOD }, 5);
    const again = await raw.expect('auth');
    assert.equal(again.reasonCode, 0x18);
    nonce = again.properties!.authenticationData!;
    raw.send({ cmd: 'auth', reasonCode: 0x18, properties: { ...METHOD, authenticationData: proof(nonce) } }, 5);
    assert.equal((await raw.expect('auth')).reasonCode, 0x00);

    // A failed re-authentication ends the connection with the method's reason code.
    raw.send({ cmd: 'auth', reasonCode: 0x19, properties: METHOD }, 5);
    await raw.expect('auth');
    raw.send({ cmd: 'auth', reasonCode: 0x18, properties: { ...METHOD, authenticationData: Buffer.from('stale') } }, 5);
    await expectServerDisconnect(new Peer(raw, 5, 'dev-d'), 0x87);
  });

  it('AUTH on a connection that did not use enhanced authentication is a protocol error', async (t) => {
    const h = await harness(t, { enhancedAuth: [challenge] });
    const c = await h.connect(5);
    c.send({ cmd: 'auth', reasonCode: 0x19, properties: METHOD });
    await expectServerDisconnect(c, 0x82);
  });
});
