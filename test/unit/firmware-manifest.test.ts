/**
 * src/firmware: the canonical manifest and key set encodings (round trip, one accepted
 * encoding), and every refusal of verifyUpdate with its reason code: tampered or
 * truncated image, replayed old manifest, bad signature, wrong class and vendor, unknown
 * and rotated-out keys, a missing post-quantum half (refused when policy requires it,
 * accepted when not), key set downgrade, expiry and a forged root, malformed input.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  decodeKeySet,
  decodeManifest,
  encodeKeySet,
  encodeManifest,
  generateFirmwareKeyPair,
  sha256Hex,
  signKeySet,
  signManifest,
  verifyKeySet,
  verifyUpdate,
  type KeySet,
  type Manifest,
  type SignedManifest,
  type UpdateCheck,
} from '../../src/firmware/index.js';
import { hybridSign } from '../../src/pki/hybrid-signature.js';

const NOW = Date.parse('2026-07-01T12:00:00Z');
const DAY = 86_400_000;
const root = generateFirmwareKeyPair();
const release1 = generateFirmwareKeyPair();
const release2 = generateFirmwareKeyPair();
const stranger = generateFirmwareKeyPair();
const image = Buffer.from('firmware image v2 '.repeat(1000));

function keySet(version: number, keys = [release1], revoked: string[] = [], expires = NOW + 365 * DAY): KeySet {
  return { version, expires, keys: keys.map((k) => ({ ...k.publicKey, role: 'release' as const })), revokedKeyIds: revoked };
}

function manifest(over: Partial<Manifest> = {}): Manifest {
  return {
    manifestVersion: 1,
    sequence: 5,
    vendorId: 'acme.example',
    classId: 'thermostat-v2',
    version: '2.0.0',
    imageDigest: sha256Hex(image),
    imageSize: image.length,
    uri: `bastion-image:sha256:${sha256Hex(image)}`,
    notBefore: NOW - DAY,
    notAfter: NOW + 30 * DAY,
    dependencies: [],
    ...over,
  };
}

const ks1 = signKeySet(keySet(1), root);
const ks2 = signKeySet(keySet(2, [release2], [release1.id]), root);

function check(over: Partial<UpdateCheck> = {}, device: Partial<UpdateCheck['device']> = {}): UpdateCheck {
  return {
    envelope: JSON.stringify(signManifest(manifest(), release1)),
    keySet: JSON.stringify(ks1),
    rootKeys: [root.publicKey],
    policy: { requirePostQuantum: true },
    device: { vendorId: 'acme.example', classId: 'thermostat-v2', lastSequence: 4, now: NOW, ...device },
    image,
    ...over,
  };
}

function refused(c: UpdateCheck, reason: string): string {
  const r = verifyUpdate(c);
  assert.equal(r.ok, false, `expected ${reason}`);
  if (r.ok) throw new Error('unreachable');
  assert.equal(r.reason, reason, r.message);
  assert.ok(r.message.length > 0 && !r.message.includes('\n'));
  return r.message;
}

/** The envelope with its manifest bytes replaced by `bytes`, re-signed by `key`. */
function signedBytes(bytes: Buffer, key = release1): SignedManifest {
  const s = hybridSign('bastion-ota-manifest-v1', bytes, key.privateKeys);
  return { manifest: bytes.toString('base64'), keyId: key.id, signature: s };
}

describe('canonical encoding', () => {
  test('a manifest round-trips through its one encoding, keys in the fixed order', () => {
    const m = manifest({ dependencies: [{ classId: 'bootloader', minSequence: 3 }] });
    const bytes = encodeManifest(m);
    const text = bytes.toString('utf8');
    assert.ok(text.startsWith('{"manifestVersion":1,"sequence":5,"vendorId":"acme.example","classId":"thermostat-v2",'));
    assert.ok(!/\s/.test(text.replace(/"[^"]*"/g, '')), 'no whitespace outside strings');
    assert.match(text, /"notBefore":"2026-06-30T12:00:00Z"/);
    const back = decodeManifest(bytes);
    assert.ok(back.ok);
    if (back.ok) assert.deepEqual(back.manifest, m);
  });

  test('a key set round-trips', () => {
    const ks = keySet(3, [release1, release2], [stranger.id]);
    const back = decodeKeySet(encodeKeySet(ks));
    assert.ok(back.ok);
    if (back.ok) assert.deepEqual(back.keySet, ks);
  });

  test('other encodings of the same manifest are NonCanonical; bad fields are Malformed', () => {
    const text = encodeManifest(manifest()).toString('utf8');
    const parsed = JSON.parse(text) as Record<string, unknown>;
    const nonCanonical = [
      JSON.stringify(parsed, null, 1), // whitespace
      JSON.stringify({ sequence: parsed.sequence, ...parsed }), // same keys, other order
      text.replace('"sequence":5', '"sequence":5.0'), // number form
      text.replace('"sequence":5', '"sequence":5e0'),
      text.replace('"acme.example"', '"\\u0061cme.example"'), // needless escape
      text.replace('{"manifestVersion":1', '{"manifestVersion":1,"manifestVersion":1'), // duplicate key
      `\ufeff${text}`, // BOM
    ];
    for (const t of nonCanonical) {
      const r = decodeManifest(Buffer.from(t, 'utf8'));
      assert.equal(r.ok, false, t);
      if (!r.ok) assert.equal(r.reason, t.startsWith('\ufeff') ? 'Malformed' : 'NonCanonical', `${t}: ${r.message}`);
    }
    const malformed = [
      text.replace('"sequence":5', '"sequence":5.5'),
      text.replace('"sequence":5', '"sequence":"5"'),
      text.replace('"sequence":5', '"sequence":-5'),
      text.replace('"manifestVersion":1', '"manifestVersion":2'),
      text.replace('"notBefore":"2026-06-30T12:00:00Z"', '"notBefore":"2026-02-30T12:00:00Z"'),
      text.replace('"notBefore":"2026-06-30T12:00:00Z"', '"notBefore":"2026-06-30T12:00:00.000Z"'),
      text.replace('"dependencies":[]', '"dependencies":[],"extra":1'),
      text.replace('"dependencies":[]', '"dependencies":[{"classId":"x","minSequence":1,"y":2}]'),
      text.replace(`"imageDigest":"${sha256Hex(image)}"`, `"imageDigest":"${sha256Hex(image).toUpperCase()}"`),
      '[]',
      'not json',
    ];
    for (const t of malformed) {
      const r = decodeManifest(Buffer.from(t, 'utf8'));
      assert.equal(r.ok, false, t);
      if (!r.ok) assert.equal(r.reason, 'Malformed', `${t}: ${r.message}`);
    }
    const invalidUtf8 = Buffer.concat([Buffer.from(text.slice(0, 40)), Buffer.from([0xc0, 0xaf]), Buffer.from(text.slice(40))]);
    const r = decodeManifest(invalidUtf8);
    assert.ok(!r.ok && r.reason === 'Malformed');
  });

  test('a non-canonical manifest with a valid signature is still refused', () => {
    const pretty = Buffer.from(JSON.stringify(JSON.parse(encodeManifest(manifest()).toString('utf8')), null, 2));
    refused(check({ envelope: signedBytes(pretty) }), 'NonCanonical');
  });
});

describe('verifyUpdate', () => {
  test('a good update is accepted', () => {
    const r = verifyUpdate(check());
    assert.ok(r.ok, r.ok ? '' : r.message);
    if (r.ok) {
      assert.equal(r.manifest.sequence, 5);
      assert.equal(r.keyId, release1.id);
      assert.equal(r.keySet.version, 1);
    }
    // A digest and size computed while streaming do as well as the bytes.
    assert.ok(verifyUpdate(check({ image: { digest: sha256Hex(image), size: image.length } })).ok);
  });

  test('a tampered image is DigestMismatch; a truncated one SizeMismatch', () => {
    const tampered = Buffer.from(image);
    tampered[100] = tampered[100]! ^ 1;
    refused(check({ image: tampered }), 'DigestMismatch');
    refused(check({ image: image.subarray(0, image.length - 1) }), 'SizeMismatch');
  });

  test('a replayed old manifest is Rollback (equal or lower sequence)', () => {
    refused(check({}, { lastSequence: 5 }), 'Rollback');
    refused(check({}, { lastSequence: 9 }), 'Rollback');
  });

  test('a bad signature is BadSignature: altered bytes, another key claiming the id, a broken classic half', () => {
    const env = signManifest(manifest(), release1);
    const other = encodeManifest(manifest({ sequence: 6 }));
    refused(check({ envelope: { ...env, manifest: other.toString('base64') } }), 'BadSignature');
    refused(check({ envelope: { ...signManifest(manifest(), stranger), keyId: release1.id } }), 'BadSignature');
    const classic = Buffer.from(env.signature.classic, 'base64');
    classic[classic.length - 1] = classic[classic.length - 1]! ^ 1;
    refused(check({ envelope: { ...env, signature: { ...env.signature, classic: classic.toString('base64') } } }), 'BadSignature');
    // A signature made for the key set context does not verify as a manifest.
    const bytes = encodeManifest(manifest());
    const wrongContext = hybridSign('bastion-ota-keyset-v1', bytes, release1.privateKeys);
    refused(check({ envelope: { manifest: bytes.toString('base64'), keyId: release1.id, signature: wrongContext } }), 'BadSignature');
  });

  test('the wrong class, the wrong vendor', () => {
    refused(check({ envelope: signManifest(manifest({ classId: 'doorbell' }), release1) }), 'WrongClass');
    refused(check({}, { vendorId: 'other.example' }), 'WrongVendor');
  });

  test('validity window and dependencies', () => {
    refused(check({}, { now: NOW + 31 * DAY }), 'Expired');
    refused(check({}, { now: NOW - 2 * DAY }), 'NotYetValid');
    const dep = signManifest(manifest({ dependencies: [{ classId: 'bootloader', minSequence: 3 }] }), release1);
    refused(check({ envelope: dep }), 'DependencyUnmet');
    refused(check({ envelope: dep }, { installed: { bootloader: 2 } }), 'DependencyUnmet');
    assert.ok(verifyUpdate(check({ envelope: dep }, { installed: { bootloader: 3 } })).ok);
  });

  test('a key the key set does not list is UnknownKey; a rotated-out one RotatedOutKey', () => {
    refused(check({ envelope: signManifest(manifest(), stranger) }), 'UnknownKey');
    // After rotation (key set 2 lists only release2), release1's manifests are refused.
    refused(check({ keySet: ks2 }), 'RotatedOutKey');
    assert.ok(verifyUpdate(check({ keySet: ks2, envelope: signManifest(manifest(), release2) })).ok);
  });

  test('a missing post-quantum half: refused when policy requires it, accepted when not', () => {
    const env = signManifest(manifest(), release1);
    const { pq: _pq, pqAlg: _alg, ...classicOnly } = env.signature;
    const stripped = { ...env, signature: classicOnly };
    refused(check({ envelope: stripped }), 'MissingPostQuantum');
    const ok = verifyUpdate(check({ envelope: stripped, policy: { requirePostQuantum: false } }));
    assert.ok(ok.ok, ok.ok ? '' : ok.message);
    // An invalid ML-DSA half: MissingPostQuantum under the policy, BadSignature without it.
    const pq = Buffer.from(env.signature.pq!, 'base64');
    pq[10] = pq[10]! ^ 1;
    const broken = { ...env, signature: { ...env.signature, pq: pq.toString('base64') } };
    refused(check({ envelope: broken }), 'MissingPostQuantum');
    refused(check({ envelope: broken, policy: { requirePostQuantum: false } }), 'BadSignature');
  });

  test('key set: a downgrade, an expired one, one not signed by a pinned root', () => {
    refused(check({}, { minKeySetVersion: 2 }), 'KeySetRollback');
    const r = verifyKeySet({ signed: ks1, rootKeys: [root.publicKey], policy: { requirePostQuantum: true }, minVersion: 2, now: NOW });
    assert.ok(!r.ok && r.reason === 'KeySetRollback');
    assert.ok(verifyKeySet({ signed: ks2, rootKeys: [root.publicKey], policy: { requirePostQuantum: true }, minVersion: 2, now: NOW }).ok);
    refused(check({ keySet: signKeySet(keySet(1, [release1], [], NOW - 1000), root) }), 'KeySetExpired');
    refused(check({ keySet: signKeySet(keySet(9, [stranger]), stranger) }), 'KeySetBadSignature');
    refused(check({ keySet: { ...signKeySet(keySet(9, [stranger]), stranger), keyId: root.id } }), 'KeySetBadSignature');
    // A release key cannot sign a key set either.
    refused(check({ keySet: signKeySet(keySet(9, [release1]), release1) }), 'KeySetBadSignature');
  });

  test('malformed envelopes never throw', () => {
    const env = signManifest(manifest(), release1);
    const bad: unknown[] = [
      'not json',
      '',
      null,
      42,
      [],
      {},
      { ...env, manifest: `${env.manifest}=` },
      { ...env, manifest: env.manifest.replace(/.$/, '*') },
      { ...env, keyId: 'zz' },
      { ...env, signature: null },
      { ...env, signature: { classic: 1, classicAlg: 'x' } },
      { ...env, signature: { ...env.signature, pq: 7 } },
      Buffer.from('{"manifest":'),
    ];
    for (const envelope of bad) refused(check({ envelope }), 'Malformed');
    refused(check({ keySet: '{}' }), 'Malformed');
    refused(check({ keySet: null }), 'Malformed');
  });
});
