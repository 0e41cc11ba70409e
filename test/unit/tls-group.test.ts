/**
 * Reading the negotiated key-exchange group out of a DER SSL_SESSION (field [19]): real
 * sessions from a Node TLS server, and malformed input that must give "no group", never
 * a throw or a read past the end.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { groupName, sessionKexGroup } from '../../src/transport/tls-group.js';

/** SEQUENCE { INTEGER 1, [19] { INTEGER id } } with `id` in `idBytes` big-endian bytes. */
function session(idBytes: number[]): Buffer {
  const group = [0xb3, idBytes.length + 2, 0x02, idBytes.length, ...idBytes];
  const body = [0x02, 0x01, 0x01, ...group];
  return Buffer.from([0x30, body.length, ...body]);
}

test('the group id of field [19] is read and named', () => {
  assert.equal(sessionKexGroup(session([0x11, 0xec])), 0x11ec);
  assert.equal(groupName(sessionKexGroup(session([0x11, 0xec]))), 'X25519MLKEM768');
  assert.equal(groupName(sessionKexGroup(session([0x1d]))), 'X25519');
  assert.equal(groupName(sessionKexGroup(session([0x17]))), 'P-256');
  assert.equal(groupName(0x4242), '0x4242', 'an id we do not know is shown, not guessed');
});

test('a session without the field, or a malformed one, has no group', () => {
  assert.equal(groupName(sessionKexGroup(Buffer.from([0x30, 0x03, 0x02, 0x01, 0x01]))), 'none');
  assert.equal(sessionKexGroup(Buffer.alloc(0)), undefined);
  assert.equal(sessionKexGroup(Buffer.from([0x04, 0x00])), undefined, 'not a SEQUENCE');
  const truncated = session([0x11, 0xec]).subarray(0, 8);
  assert.equal(sessionKexGroup(truncated), undefined);
  assert.equal(sessionKexGroup(Buffer.from([0x30, 0x84, 0xff, 0xff, 0xff, 0xff])), undefined, 'a length of more than 3 bytes');
  assert.equal(sessionKexGroup(Buffer.from([0x30, 0x05, 0xb3, 0x03, 0x04, 0x01, 0x1d])), undefined, '[19] that holds no INTEGER');
});
