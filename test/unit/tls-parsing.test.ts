/**
 * Pure decisions behind the TLS layer: the PSK file (YAML identity: hexkey), Node's
 * subjectaltname string, and which directory events may concern a watched TLS file.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parsePskFile } from '../../src/transport/tls-psk.js';
import { parseSubjectAltNames } from '../../src/transport/tls-identity.js';
import { isRelevantChange } from '../../src/transport/tls-watch.js';

test('PSK file: identities map to keys; an all-digit key stays exact', () => {
  const keys = parsePskFile('dev1: 00112233445566778899001122334455\ndev-2: AABBCCDDEEFF00112233445566778899aabb\n', 'psk.yaml');
  assert.equal(keys.get('dev1')!.toString('hex'), '00112233445566778899001122334455');
  assert.equal(keys.get('dev-2')!.length, 18);
});

test('PSK file: bad input is a ConfigError naming the problem', () => {
  const refused = (text: string, pattern: RegExp): void => {
    assert.throws(() => parsePskFile(text, 'psk.yaml'), (err: Error & { code?: string }) => err.code === 'ERR_CONFIG' && pattern.test(err.message));
  };
  refused('dev1: 0011', /dev1 has 2 bytes; at least 16/);
  refused('dev1: xyz', /dev1 must be an even number of hex digits/);
  refused('dev1: 001', /even number of hex digits/);
  refused('- a\n- b\n', /mapping of identity: hexkey/);
  refused('', /mapping/);
  refused('{}', /no identities/);
  refused('"bad\\tid": 00112233445566778899aabbccddeeff', /printable ASCII/);
  refused('dev1: [unclosed', /not valid YAML|hex digits/);
});

test('subjectaltname: every type, including quoted values with commas', () => {
  const sans = parseSubjectAltNames('DNS:a.test, DNS:b.test, URI:spiffe://x/y, IP Address:10.0.0.1, IP Address:::1, email:o@x.test, URI:"urn:a,b"');
  assert.deepEqual(sans, { dns: ['a.test', 'b.test'], uri: ['spiffe://x/y', 'urn:a,b'], ip: ['10.0.0.1', '::1'], email: ['o@x.test'] });
  assert.deepEqual(parseSubjectAltNames(undefined), { dns: [], uri: [], ip: [], email: [] });
});

test('file watch: only our files and Kubernetes ..data swaps trigger a reload check', () => {
  const names = new Set(['server.crt', 'server.key']);
  assert.equal(isRelevantChange(names, 'server.crt'), true);
  assert.equal(isRelevantChange(names, '..data'), true);
  assert.equal(isRelevantChange(names, '..data_tmp'), true);
  assert.equal(isRelevantChange(names, null), true);
  assert.equal(isRelevantChange(names, 'bastion.db-wal'), false);
  assert.equal(isRelevantChange(names, 'server.crt.tmp'), false);
});
