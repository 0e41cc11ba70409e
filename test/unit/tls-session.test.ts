/**
 * Reading a DER SSL_SESSION (the parts Node does not expose on a server socket): the
 * master key, the TLS 1.2 PSK identity ([8]) and the key-exchange group ([19]), from real
 * sessions of a Node TLS server and from malformed input that must give nothing, never a
 * throw or a read past the end.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { groupName, readSession } from '../../src/transport/tls-session.js';

function der(tag: number, content: number[]): number[] {
  return [tag, content.length, ...content];
}

/** SEQUENCE { version, ssl_version, cipher, session_id, master_key, [8] psk_identity, [19] group }. */
function session(opts: { group?: number[]; identity?: string; masterKey?: number[] }): Buffer {
  const body = [
    ...der(0x02, [0x01]),
    ...der(0x02, [0x03, 0x04]),
    ...der(0x04, [0x13, 0x01]),
    ...der(0x04, []),
    ...der(0x04, opts.masterKey ?? [0xaa, 0xbb]),
    ...(opts.identity !== undefined ? der(0xa8, der(0x04, [...Buffer.from(opts.identity)])) : []),
    ...(opts.group !== undefined ? der(0xb3, der(0x02, opts.group)) : []),
  ];
  return Buffer.from([0x30, body.length, ...body]);
}

test('the group id of field [19] is read and named', () => {
  assert.equal(readSession(session({ group: [0x11, 0xec] })).kexGroup, 0x11ec);
  assert.equal(groupName(readSession(session({ group: [0x11, 0xec] })).kexGroup), 'X25519MLKEM768');
  assert.equal(groupName(readSession(session({ group: [0x1d] })).kexGroup), 'X25519');
  assert.equal(groupName(readSession(session({ group: [0x17] })).kexGroup), 'P-256');
  assert.equal(groupName(0x4242), '0x4242', 'an id we do not know is shown, not guessed');
  assert.equal(groupName(readSession(session({})).kexGroup), 'none');
});

test('the master key (5th element) and the PSK identity ([8]) are read', () => {
  const fields = readSession(session({ identity: 'dev1', masterKey: [1, 2, 3, 4], group: [0x1d] }));
  assert.deepEqual(fields.masterKey, Buffer.from([1, 2, 3, 4]));
  assert.equal(fields.pskIdentity, 'dev1');
  assert.equal(fields.kexGroup, 0x1d);
  assert.equal(readSession(session({})).pskIdentity, undefined);
});

test('malformed sessions give nothing past the damage', () => {
  assert.deepEqual(readSession(Buffer.alloc(0)), {});
  assert.deepEqual(readSession(Buffer.from([0x04, 0x00])), {}, 'not a SEQUENCE');
  const whole = session({ identity: 'dev1', group: [0x11, 0xec] });
  for (let cut = 1; cut < whole.length; cut++) {
    const fields = readSession(whole.subarray(0, cut));
    assert.equal(fields.kexGroup, undefined, `cut at ${cut}`);
  }
  assert.deepEqual(readSession(Buffer.from([0x30, 0x84, 0xff, 0xff, 0xff, 0xff])), {}, 'a length of more than 3 bytes');
  assert.equal(readSession(Buffer.from([0x30, 0x05, 0xb3, 0x03, 0x04, 0x01, 0x1d])).kexGroup, undefined, '[19] that holds no INTEGER');
});
