/**
 * The device SDK's `UpdateVerifier` over a real `FileUpdateStateStore` in a temp
 * directory: a good update verifies and, once marked installed, its manifest replayed is
 * refused, also after a restart (a new verifier on the same directory); a newer key set
 * rotates a release key out and the old key set offered again is refused; the state file
 * is 0600 and an unreadable one stops the verifier instead of starting over at 0.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { FileUpdateStateStore, MemoryUpdateStateStore, UpdateVerifier } from '../../src/device/index.js';
import { generateFirmwareKeyPair, sha256Hex, signKeySet, signManifest, type FirmwareKeyPair, type KeySet, type Manifest } from '../../src/firmware/index.js';

const NOW = Date.parse('2026-07-01T12:00:00Z');
const DAY = 86_400_000;
const root = generateFirmwareKeyPair();
const rel1 = generateFirmwareKeyPair();
const rel2 = generateFirmwareKeyPair();
const image = Buffer.from('image bytes '.repeat(500));
const dir = mkdtempSync(join(tmpdir(), 'bastion-ota-device-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function keySet(version: number, key: FirmwareKeyPair, revoked: string[] = []): KeySet {
  return { version, expires: NOW + 365 * DAY, keys: [{ ...key.publicKey, role: 'release' }], revokedKeyIds: revoked };
}
const ks1 = signKeySet(keySet(1, rel1), root);
const ks2 = signKeySet(keySet(2, rel2, [rel1.id]), root);

function manifest(sequence: number): Manifest {
  return { manifestVersion: 1, sequence, vendorId: 'acme', classId: 'thermo', version: `1.${sequence}`, imageDigest: sha256Hex(image), imageSize: image.length, uri: 'bastion-image:x', notBefore: NOW - DAY, notAfter: NOW + DAY, dependencies: [] };
}

function open(stateDir: string): Promise<UpdateVerifier> {
  return UpdateVerifier.open({ rootKeys: [root.publicKey], vendorId: 'acme', classId: 'thermo', state: new FileUpdateStateStore(stateDir), initialKeySet: ks1, clock: () => NOW });
}

describe('UpdateVerifier', () => {
  test('verify, install, and a replay refused after a restart', async () => {
    const stateDir = join(dir, 'a');
    const v = await open(stateDir);
    const m5 = signManifest(manifest(5), rel1);
    const r = await v.verify(JSON.stringify(m5), { image });
    assert.ok(r.ok, r.ok ? '' : r.message);
    if (!r.ok) return;
    await v.markInstalled(r.manifest);
    assert.equal(statSync(join(stateDir, 'ota-state.json')).mode & 0o777, 0o600);
    const again = await open(stateDir);
    assert.equal(again.lastSequence, 5);
    const replay = await again.verify(m5, { image });
    assert.ok(!replay.ok && replay.reason === 'Rollback');
    const older = await again.verify(signManifest(manifest(4), rel1), { image });
    assert.ok(!older.ok && older.reason === 'Rollback');
    const tampered = Buffer.from(image);
    tampered[0] = 0;
    const t = await again.verify(signManifest(manifest(6), rel1), { image: tampered });
    assert.ok(!t.ok && t.reason === 'DigestMismatch');
  });

  test('a rotation: the new key set is kept, the old key is refused, the old key set cannot come back', async () => {
    const stateDir = join(dir, 'b');
    const v = await open(stateDir);
    const withNewSet = await v.verify(signManifest(manifest(2), rel2), { keySet: ks2, image });
    assert.ok(withNewSet.ok, withNewSet.ok ? '' : withNewSet.message);
    assert.equal(v.keySetVersion, 2);
    const old = await v.verify(signManifest(manifest(3), rel1), { image });
    assert.ok(!old.ok && old.reason === 'RotatedOutKey');
    const restarted = await open(stateDir);
    assert.equal(restarted.keySetVersion, 2);
    const downgrade = await restarted.acceptKeySet(ks1);
    assert.ok(!downgrade.ok && downgrade.reason === 'KeySetRollback');
    const viaVerify = await restarted.verify(signManifest(manifest(3), rel1), { keySet: ks1 });
    assert.ok(!viaVerify.ok && viaVerify.reason === 'KeySetRollback');
  });

  test('policy: a classic-only signature is refused by default and accepted when the policy allows it', async () => {
    const env = signManifest(manifest(1), rel1);
    const classicOnly = { ...env, signature: { classic: env.signature.classic, classicAlg: env.signature.classicAlg } };
    const strict = await UpdateVerifier.open({ rootKeys: [root.publicKey], vendorId: 'acme', classId: 'thermo', state: new MemoryUpdateStateStore(), initialKeySet: ks1, clock: () => NOW });
    const r = await strict.verify(classicOnly);
    assert.ok(!r.ok && r.reason === 'MissingPostQuantum');
    const lax = await UpdateVerifier.open({ rootKeys: [root.publicKey], vendorId: 'acme', classId: 'thermo', state: new MemoryUpdateStateStore(), initialKeySet: ks1, clock: () => NOW, policy: { requirePostQuantum: false } });
    assert.ok((await lax.verify(classicOnly)).ok);
  });

  test('an unreadable state file stops the verifier instead of starting over', async () => {
    const stateDir = join(dir, 'c');
    await open(stateDir);
    writeFileSync(join(stateDir, 'ota-state.json'), '{"lastSequence":');
    await assert.rejects(open(stateDir), /not a valid OTA state file/);
    writeFileSync(join(stateDir, 'ota-state.json'), '{"lastSequence":-1,"keySetVersion":1,"keySet":null,"installed":{}}');
    await assert.rejects(open(stateDir), /not a valid OTA state file/);
  });

  test('no key set held: refused, never accepted', async () => {
    const v = await UpdateVerifier.open({ rootKeys: [root.publicKey], vendorId: 'acme', classId: 'thermo', state: new MemoryUpdateStateStore(), clock: () => NOW });
    const r = await v.verify(signManifest(manifest(1), rel1));
    assert.ok(!r.ok && r.reason === 'UnknownKey');
    await assert.rejects(UpdateVerifier.open({ rootKeys: [root.publicKey], vendorId: 'acme', classId: 'thermo', state: new MemoryUpdateStateStore(), initialKeySet: signKeySet(keySet(1, rel1), rel1), clock: () => NOW }), /KeySetBadSignature/);
  });
});
