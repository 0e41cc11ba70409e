/**
 * pki/hybrid-signature.ts: a classic + ML-DSA-65 signature pair round-trips through PEM,
 * and altering either signature, the message or the context fails exactly the side it
 * should (a signature half, or both halves for the shared message and context).
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { test } from 'node:test';
import {
  classicAlgorithmOf,
  exportMlDsaPrivateKeyPem,
  exportPublicKeyPem,
  generateMlDsaKeyPair,
  hybridSign,
  hybridVerify,
  importMlDsaPrivateKey,
  importMlDsaPublicKey,
  publicKeyFingerprint,
  type HybridSignature,
} from '../../src/pki/hybrid-signature.js';

const CONTEXT = 'bastion-test-v1';
const MESSAGE = 'seq=10 hash=abc';

const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const pq = generateMlDsaKeyPair();
const publicKeys = { classicPublic: ec.publicKey, pqPublic: pq.publicKey };

/** The base64 `b64` with one bit of its middle byte flipped. */
function flipped(b64: string): string {
  const bytes = Buffer.from(b64, 'base64');
  bytes[bytes.length >> 1]! ^= 0x01;
  return bytes.toString('base64');
}

function signed(): HybridSignature {
  return hybridSign(CONTEXT, MESSAGE, { classic: ec.privateKey, pq: pq.privateKey });
}

test('hybrid signature: ECDSA P-256 + ML-DSA-65 round trip, through PEM', () => {
  const sig = signed();
  assert.equal(sig.classicAlg, 'ECDSA P-256');
  assert.equal(sig.pqAlg, 'ML-DSA-65');
  assert.equal(Buffer.from(sig.pq, 'base64').length, 3309, 'ML-DSA-65 signature size (FIPS 204)');
  assert.deepEqual(hybridVerify(CONTEXT, MESSAGE, sig, publicKeys), { ok: true, classic: true, pq: true, classicAlg: 'ECDSA P-256', pqAlg: 'ML-DSA-65' });

  // Keys written out and read back sign and verify the same.
  const privateAgain = importMlDsaPrivateKey(exportMlDsaPrivateKeyPem(pq.privateKey));
  const publicAgain = importMlDsaPublicKey(exportPublicKeyPem(pq.privateKey));
  assert.equal(publicKeyFingerprint(publicAgain), publicKeyFingerprint(pq.publicKey));
  assert.match(publicKeyFingerprint(pq.publicKey), /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  const again = hybridSign(CONTEXT, Buffer.from(MESSAGE), { classic: ec.privateKey, pq: privateAgain });
  assert.equal(hybridVerify(CONTEXT, MESSAGE, again, { classicPublic: ec.publicKey, pqPublic: publicAgain }).ok, true);
});

test('hybrid signature: P-384 and Ed25519 classic keys are named by what they are', () => {
  for (const [key, name] of [
    [generateKeyPairSync('ec', { namedCurve: 'P-384' }), 'ECDSA P-384'],
    [generateKeyPairSync('ed25519'), 'Ed25519'],
  ] as Array<[{ privateKey: KeyObject; publicKey: KeyObject }, string]>) {
    assert.equal(classicAlgorithmOf(key.publicKey), name);
    const sig = hybridSign(CONTEXT, MESSAGE, { classic: key.privateKey, pq: pq.privateKey });
    assert.equal(sig.classicAlg, name);
    assert.equal(hybridVerify(CONTEXT, MESSAGE, sig, { classicPublic: key.publicKey, pqPublic: pq.publicKey }).ok, true);
  }
});

test('hybrid signature: an altered classic signature fails the classic side only', () => {
  const sig = signed();
  const r = hybridVerify(CONTEXT, MESSAGE, { ...sig, classic: flipped(sig.classic) }, publicKeys);
  assert.deepEqual([r.ok, r.classic, r.pq], [false, false, true]);
  // Not even DER any more: still just false.
  const garbage = hybridVerify(CONTEXT, MESSAGE, { ...sig, classic: 'AAAA' }, publicKeys);
  assert.deepEqual([garbage.ok, garbage.classic, garbage.pq], [false, false, true]);
});

test('hybrid signature: an altered ML-DSA signature fails the ML-DSA side only', () => {
  const sig = signed();
  const r = hybridVerify(CONTEXT, MESSAGE, { ...sig, pq: flipped(sig.pq) }, publicKeys);
  assert.deepEqual([r.ok, r.classic, r.pq], [false, true, false]);
  const truncated = hybridVerify(CONTEXT, MESSAGE, { ...sig, pq: sig.pq.slice(0, 100) }, publicKeys);
  assert.deepEqual([truncated.ok, truncated.classic, truncated.pq], [false, true, false]);
});

test('hybrid signature: an altered message or another context fails both sides', () => {
  const sig = signed();
  const message = hybridVerify(CONTEXT, `${MESSAGE}1`, sig, publicKeys);
  assert.deepEqual([message.ok, message.classic, message.pq], [false, false, false]);
  // The same bytes signed for another use (e.g. an OTA manifest) do not verify here.
  const context = hybridVerify('bastion-ota-manifest-v1', MESSAGE, sig, publicKeys);
  assert.deepEqual([context.ok, context.classic, context.pq], [false, false, false]);
  // Framing is length-prefixed: moving bytes between context and message changes the signed bytes.
  const shifted = hybridVerify(`${CONTEXT}s`, MESSAGE.slice(1), sig, publicKeys);
  assert.equal(shifted.ok, false);
});

test('hybrid signature: another ML-DSA key fails the ML-DSA side only; wrong key types are refused', () => {
  const sig = signed();
  const other = generateMlDsaKeyPair();
  const r = hybridVerify(CONTEXT, MESSAGE, sig, { classicPublic: ec.publicKey, pqPublic: other.publicKey });
  assert.deepEqual([r.ok, r.classic, r.pq], [false, true, false]);
  assert.throws(() => hybridSign(CONTEXT, MESSAGE, { classic: ec.privateKey, pq: ec.privateKey }), /not an ML-DSA key/);
  assert.throws(() => importMlDsaPrivateKey(ec.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string), /not an ML-DSA key/);
  assert.throws(() => hybridSign('', MESSAGE, { classic: ec.privateKey, pq: pq.privateKey }), /context/);
});
