/**
 * Firmware keys, TUF-style: an offline root key (a hybrid ECDSA P-256 + ML-DSA-65 pair)
 * signs the key set, which lists the release keys that may sign manifests. Owns: the
 * `FirmwarePublicKey` form and its id, the `KeySet` document and its canonical encoding,
 * generating hybrid key pairs, and the signed envelope both documents travel in. Must not:
 * read or write key files (src/ota/ and the device do), or decide trust (verify.ts).
 *
 * SECURITY:
 * - A key id is the SHA-256 of both public keys (length-prefixed SPKI DER), so an id names
 *   one classic key and one ML-DSA key together; verifiers recompute it, never trust it.
 * - `revokedKeyIds` names release keys rotated out: a manifest they signed is refused as
 *   RotatedOutKey (an id in neither list is UnknownKey). Both come from the root-signed
 *   document, so only the offline root can add or remove a release key.
 * - `version` only grows and `expires` bounds how long a device trusts a key set it
 *   cannot refresh (TUF's rollback and freeze defences).
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { exportMlDsaPrivateKeyPem, exportPublicKeyPem, generateMlDsaKeyPair, hybridSign, importMlDsaPrivateKey, importMlDsaPublicKey, type HybridPrivateKeys, type HybridPublicKeys } from '../pki/hybrid-signature.js';
import { arr, asObject, encodeCanonical, FieldError, HEX64_RE, int, isCanonical, isoSeconds, obj, onlyKeys, parseJsonObject, PRINTABLE_RE, str, time, type CanonicalObject } from './canonical.js';
import { refuse, type Checked } from './result.js';

export const KEYSET_CONTEXT = 'bastion-ota-keyset-v1';
export const MANIFEST_CONTEXT = 'bastion-ota-manifest-v1';
export const MAX_KEYSET_BYTES = 256 * 1024;
const MAX_KEYS = 64;
const MAX_PEM = 8192;
const PEM_RE = /^-----BEGIN PUBLIC KEY-----\n[A-Za-z0-9+/=\n]+-----END PUBLIC KEY-----\n$/;

export type KeyRole = 'release';

/** The public half of a hybrid firmware key. */
export interface FirmwarePublicKey {
  /** keyIdOf(classic, pq). */
  id: string;
  /** SPKI PEM, ECDSA P-256. */
  classicPublicPem: string;
  /** SPKI PEM, ML-DSA-65. */
  pqPublicPem: string;
}

export interface KeySetEntry extends FirmwarePublicKey {
  role: KeyRole;
}

export interface KeySet {
  /** Grows by one at each rotation; a device refuses a lower one than it holds. */
  version: number;
  /** Epoch ms (whole seconds). */
  expires: number;
  keys: KeySetEntry[];
  /** Release key ids rotated out (RotatedOutKey). */
  revokedKeyIds: string[];
}

/** A hybrid key pair with its id, as key files hold it. */
export interface FirmwareKeyPair {
  id: string;
  privateKeys: HybridPrivateKeys;
  publicKey: FirmwarePublicKey;
}

/** The signature fields of an envelope. `pq` may be absent: a classic-only signature (policy decides). */
export interface EnvelopeSignature {
  classic: string;
  pq?: string;
  classicAlg: string;
  pqAlg?: string;
}

/** `{ "keySet": "<base64 canonical bytes>", "keyId": root id, "signature": … }` */
export interface SignedKeySet {
  keySet: string;
  keyId: string;
  signature: EnvelopeSignature;
}

function lengthPrefixed(part: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(part.length);
  return Buffer.concat([len, part]);
}

/** The id of a hybrid public key: lower-case hex SHA-256 of both SPKI DERs, length-prefixed. */
export function keyIdOf(classic: KeyObject, pq: KeyObject): string {
  const der = (k: KeyObject): Buffer => (k.type === 'private' ? createPublicKey(k) : k).export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(lengthPrefixed(der(classic))).update(lengthPrefixed(der(pq))).digest('hex');
}

/** A fresh ECDSA P-256 + ML-DSA-65 pair. */
export function generateFirmwareKeyPair(): FirmwareKeyPair {
  const classic = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
  const pq = generateMlDsaKeyPair().privateKey;
  return firmwareKeyPairOf(classic, pq);
}

export function firmwareKeyPairOf(classic: KeyObject, pq: KeyObject): FirmwareKeyPair {
  const id = keyIdOf(classic, pq);
  return { id, privateKeys: { classic, pq }, publicKey: { id, classicPublicPem: exportPublicKeyPem(classic), pqPublicPem: exportPublicKeyPem(pq) } };
}

/** PKCS#8 PEMs of a pair (unencrypted: the caller writes them 0600 and moves the root offline). */
export function exportFirmwarePrivateKeys(pair: FirmwareKeyPair): { classicPrivatePem: string; pqPrivatePem: string } {
  return { classicPrivatePem: pair.privateKeys.classic.export({ type: 'pkcs8', format: 'pem' }) as string, pqPrivatePem: exportMlDsaPrivateKeyPem(pair.privateKeys.pq) };
}

/** Reads a pair back from its PEMs; throws on a key of the wrong type. */
export function importFirmwareKeyPair(classicPrivatePem: string, pqPrivatePem: string): FirmwareKeyPair {
  const classic = createPrivateKey(classicPrivatePem);
  if (classic.asymmetricKeyType !== 'ec' || classic.asymmetricKeyDetails?.namedCurve !== 'prime256v1') throw new FieldError('the classic firmware key must be ECDSA P-256');
  return firmwareKeyPairOf(classic, importMlDsaPrivateKey(pqPrivatePem));
}

/** The verifying keys of a public key whose id matches its PEMs; throws FieldError otherwise. */
export function publicKeysOf(k: FirmwarePublicKey): HybridPublicKeys {
  let classicPublic: KeyObject;
  let pqPublic: KeyObject;
  try {
    classicPublic = createPublicKey(k.classicPublicPem);
    pqPublic = importMlDsaPublicKey(k.pqPublicPem);
  } catch {
    throw new FieldError(`key ${k.id.slice(0, 16)}… has an unreadable public key`);
  }
  if (classicPublic.asymmetricKeyType !== 'ec' || classicPublic.asymmetricKeyDetails?.namedCurve !== 'prime256v1') throw new FieldError(`key ${k.id.slice(0, 16)}… is not ECDSA P-256`);
  if (keyIdOf(classicPublic, pqPublic) !== k.id) throw new FieldError(`key ${k.id.slice(0, 16)}… does not match its id`);
  return { classicPublic, pqPublic };
}

function toCanonical(ks: KeySet): CanonicalObject {
  return obj([
    ['version', ks.version],
    ['expires', isoSeconds(ks.expires)],
    ['keys', ks.keys.map((k) => obj([['id', k.id], ['role', k.role], ['classicPublicPem', k.classicPublicPem], ['pqPublicPem', k.pqPublicPem]]))],
    ['revokedKeyIds', ks.revokedKeyIds],
  ]);
}

function fromObject(o: Record<string, unknown>): KeySet {
  const w = 'keySet';
  onlyKeys(o, ['version', 'expires', 'keys', 'revokedKeyIds'], w);
  const keys = arr(o, 'keys', w, MAX_KEYS).map((k, i) => {
    const kw = `keySet.keys[${i}]`;
    const x = asObject(k, kw);
    onlyKeys(x, ['id', 'role', 'classicPublicPem', 'pqPublicPem'], kw);
    const role = str(x, 'role', kw, PRINTABLE_RE, 16);
    if (role !== 'release') throw new FieldError(`${kw}.role must be "release"`);
    const entry: KeySetEntry = { id: str(x, 'id', kw, HEX64_RE, 64), role, classicPublicPem: str(x, 'classicPublicPem', kw, PEM_RE, MAX_PEM), pqPublicPem: str(x, 'pqPublicPem', kw, PEM_RE, MAX_PEM) };
    publicKeysOf(entry);
    return entry;
  });
  const revokedKeyIds = arr(o, 'revokedKeyIds', w, 1024).map((id, i) => str({ id }, 'id', `keySet.revokedKeyIds[${i}]`, HEX64_RE, 64));
  const ids = new Set(keys.map((k) => k.id));
  if (ids.size !== keys.length) throw new FieldError('keySet lists a key twice');
  if (revokedKeyIds.some((id) => ids.has(id))) throw new FieldError('keySet lists a key as both current and rotated out');
  return { version: int(o, 'version', w, 1), expires: time(o, 'expires', w), keys, revokedKeyIds };
}

export function encodeKeySet(ks: KeySet): Buffer {
  const bytes = encodeCanonical(toCanonical(ks));
  fromObject(parseJsonObject(bytes, 'keySet'));
  return bytes;
}

/** Bytes → key set, or Malformed / NonCanonical (call after the root signature verified). */
export function decodeKeySet(bytes: Uint8Array): Checked<{ keySet: KeySet }> {
  if (bytes.byteLength > MAX_KEYSET_BYTES) return refuse('Malformed', `key set is larger than ${MAX_KEYSET_BYTES} bytes`);
  let keySet: KeySet;
  try {
    keySet = fromObject(parseJsonObject(bytes, 'keySet'));
  } catch (err) {
    return refuse('Malformed', err instanceof FieldError ? err.message : 'key set is unreadable');
  }
  if (!isCanonical(bytes, toCanonical(keySet))) return refuse('NonCanonical', 'key set bytes are not the canonical encoding');
  return { ok: true, keySet };
}

/** Signs canonical bytes under `context`; the envelope signature with both halves. */
export function signBytes(context: string, bytes: Uint8Array, signer: FirmwareKeyPair): EnvelopeSignature {
  const s = hybridSign(context, bytes, signer.privateKeys);
  return { classic: s.classic, pq: s.pq, classicAlg: s.classicAlg, pqAlg: s.pqAlg };
}

/** The root signs a key set. */
export function signKeySet(ks: KeySet, root: FirmwareKeyPair): SignedKeySet {
  const bytes = encodeKeySet(ks);
  return { keySet: bytes.toString('base64'), keyId: root.id, signature: signBytes(KEYSET_CONTEXT, bytes, root) };
}
