/**
 * Verifying OTA documents, as the device does and as `bastion ota release create` does
 * before storing: the key set against the pinned root keys, the manifest envelope against
 * the key set, the manifest against the device's facts, the image against the manifest.
 * Owns: the order of the checks and each refusal's reason. Must not: throw on bad input
 * (every refusal is a value), do I/O, or keep state (the caller persists lastSequence and
 * the key set version).
 *
 * SECURITY, in order:
 * 1. The key set is root-signed (a pinned root key), not older than the one held, not expired.
 * 2. The manifest's signing key is a release key of that key set (rotated out: refused).
 * 3. The signature covers the exact transmitted bytes; only after it verifies are they parsed,
 *    and bytes that are not the canonical encoding of what they parse to are refused.
 * 4. Vendor, class, sequence (anti-rollback), validity window, dependencies, then the image
 *    (size first: cheap, and a truncated image fails there).
 */
import { createHash } from 'node:crypto';
import { hybridVerify } from '../pki/hybrid-signature.js';
import { asObject, FieldError, HEX64_RE, strictBase64 } from './canonical.js';
import { decodeKeySet, KEYSET_CONTEXT, MANIFEST_CONTEXT, MAX_KEYSET_BYTES, publicKeysOf, type EnvelopeSignature, type FirmwarePublicKey, type KeySet } from './keyset.js';
import { decodeManifest, MAX_MANIFEST_BYTES, type Manifest } from './manifest.js';
import { refuse, type Checked, type Refusal } from './result.js';

export type { SignedManifest } from './sign.js';

export interface VerifyPolicy {
  /** Refuse a signature whose ML-DSA-65 half is absent or invalid. */
  requirePostQuantum: boolean;
}

export interface DeviceFacts {
  vendorId: string;
  classId: string;
  /** The sequence of the installed image (0: none yet). */
  lastSequence: number;
  /** Epoch ms. */
  now: number;
  /** Installed sequence per class, for dependencies (absent: none installed). */
  installed?: Readonly<Record<string, number>>;
}

export type ImageInput = Uint8Array | { digest: string; size: number };

/** An envelope as received: JSON text or bytes, or already parsed. */
export type EnvelopeInput = string | Uint8Array | unknown;

const B64_MANIFEST_MAX = MAX_MANIFEST_BYTES;

function parseEnvelope(input: EnvelopeInput, field: 'manifest' | 'keySet', max: number): { payload: Buffer; keyId: string; signature: EnvelopeSignature } {
  let value: unknown = input;
  if (typeof input === 'string' || input instanceof Uint8Array) {
    const text = typeof input === 'string' ? input : Buffer.from(input).toString('utf8');
    if (text.length > max * 2 + 64 * 1024) throw new FieldError(`${field} envelope is too large`);
    try {
      value = JSON.parse(text);
    } catch {
      throw new FieldError(`${field} envelope is not JSON`);
    }
  }
  const o = asObject(value, `${field} envelope`);
  const payload = strictBase64(Object.hasOwn(o, field) ? o[field] : undefined, `${field} envelope.${field}`, max);
  const keyId = Object.hasOwn(o, 'keyId') ? o.keyId : undefined;
  if (typeof keyId !== 'string' || !HEX64_RE.test(keyId)) throw new FieldError(`${field} envelope.keyId must be a key id`);
  const s = asObject(Object.hasOwn(o, 'signature') ? o.signature : undefined, `${field} envelope.signature`);
  const text = (k: string): string | undefined => (Object.hasOwn(s, k) && typeof s[k] === 'string' ? (s[k] as string) : undefined);
  const classic = text('classic');
  const classicAlg = text('classicAlg');
  if (classic === undefined || classicAlg === undefined) throw new FieldError(`${field} envelope.signature needs classic and classicAlg`);
  if (Object.hasOwn(s, 'pq') && s.pq !== undefined && typeof s.pq !== 'string') throw new FieldError(`${field} envelope.signature.pq must be a string`);
  const pq = text('pq');
  const pqAlg = text('pqAlg');
  return { payload, keyId, signature: { classic, classicAlg, ...(pq !== undefined ? { pq } : {}), ...(pqAlg !== undefined ? { pqAlg } : {}) } };
}

/**
 * Both halves as policy wants them: the classic one always; the ML-DSA one when policy
 * requires it (absent or invalid: MissingPostQuantum), and when present (invalid: BadSignature).
 */
function checkSignature(context: string, bytes: Buffer, sig: EnvelopeSignature, key: FirmwarePublicKey, policy: VerifyPolicy, bad: 'BadSignature' | 'KeySetBadSignature', what: string): Refusal | null {
  let keys;
  try {
    keys = publicKeysOf(key);
  } catch (err) {
    return refuse('Malformed', err instanceof FieldError ? err.message : 'unreadable key');
  }
  const result = hybridVerify(context, bytes, { classic: sig.classic, pq: sig.pq ?? '' }, keys);
  if (!result.classic) return refuse(bad, `${what}: the ${result.classicAlg} signature does not verify`);
  if (sig.pq === undefined || sig.pq.length === 0) {
    return policy.requirePostQuantum ? refuse('MissingPostQuantum', `${what}: policy requires an ${result.pqAlg} signature and there is none`) : null;
  }
  if (!result.pq) return refuse(policy.requirePostQuantum ? 'MissingPostQuantum' : bad, `${what}: the ${result.pqAlg} signature does not verify`);
  return null;
}

export interface KeySetCheck {
  signed: EnvelopeInput;
  /** The pinned root public keys (any one may sign). */
  rootKeys: readonly FirmwarePublicKey[];
  policy: VerifyPolicy;
  /** The highest key set version the device has accepted (0: none). */
  minVersion: number;
  now: number;
}

/** A root-signed key set, not older than `minVersion` and not expired. */
export function verifyKeySet(c: KeySetCheck): Checked<{ keySet: KeySet }> {
  try {
    const env = parseEnvelope(c.signed, 'keySet', MAX_KEYSET_BYTES);
    const root = c.rootKeys.find((k) => k.id === env.keyId);
    if (root === undefined) return refuse('KeySetBadSignature', `key set is signed by ${env.keyId.slice(0, 16)}…, which is not a pinned root key`);
    const sig = checkSignature(KEYSET_CONTEXT, env.payload, env.signature, root, c.policy, 'KeySetBadSignature', 'key set');
    if (sig !== null) return sig;
    const decoded = decodeKeySet(env.payload);
    if (!decoded.ok) return decoded;
    const ks = decoded.keySet;
    if (ks.version < c.minVersion) return refuse('KeySetRollback', `key set version ${ks.version} is older than version ${c.minVersion} already accepted`);
    if (c.now >= ks.expires) return refuse('KeySetExpired', `key set version ${ks.version} expired at ${new Date(ks.expires).toISOString()}`);
    return { ok: true, keySet: ks };
  } catch (err) {
    return refuse('Malformed', err instanceof FieldError ? err.message : 'key set is unreadable');
  }
}

/** The manifest of an envelope signed by a current release key of `keySet` (no device checks). */
export function verifySignedManifest(envelope: EnvelopeInput, keySet: KeySet, policy: VerifyPolicy): Checked<{ manifest: Manifest; keyId: string; bytes: Buffer }> {
  try {
    const env = parseEnvelope(envelope, 'manifest', B64_MANIFEST_MAX);
    const key = keySet.keys.find((k) => k.id === env.keyId && k.role === 'release');
    if (key === undefined) {
      if (keySet.revokedKeyIds.includes(env.keyId)) return refuse('RotatedOutKey', `manifest is signed by release key ${env.keyId.slice(0, 16)}…, rotated out by key set version ${keySet.version}`);
      return refuse('UnknownKey', `manifest is signed by ${env.keyId.slice(0, 16)}…, which key set version ${keySet.version} does not list`);
    }
    const sig = checkSignature(MANIFEST_CONTEXT, env.payload, env.signature, key, policy, 'BadSignature', 'manifest');
    if (sig !== null) return sig;
    const decoded = decodeManifest(env.payload);
    if (!decoded.ok) return decoded;
    return { ok: true, manifest: decoded.manifest, keyId: env.keyId, bytes: env.payload };
  } catch (err) {
    return refuse('Malformed', err instanceof FieldError ? err.message : 'manifest envelope is unreadable');
  }
}

/** Vendor, class, sequence, validity window and dependencies of a verified manifest. */
export function checkManifestForDevice(m: Manifest, d: DeviceFacts): Refusal | null {
  if (m.vendorId !== d.vendorId) return refuse('WrongVendor', `manifest is for vendor ${JSON.stringify(m.vendorId)}, this device is ${JSON.stringify(d.vendorId)}`);
  if (m.classId !== d.classId) return refuse('WrongClass', `manifest is for class ${JSON.stringify(m.classId)}, this device is ${JSON.stringify(d.classId)}`);
  if (m.sequence <= d.lastSequence) return refuse('Rollback', `manifest sequence ${m.sequence} is not above the installed sequence ${d.lastSequence}`);
  if (d.now < m.notBefore) return refuse('NotYetValid', `manifest is valid from ${new Date(m.notBefore).toISOString()}`);
  if (d.now >= m.notAfter) return refuse('Expired', `manifest expired at ${new Date(m.notAfter).toISOString()}`);
  for (const dep of m.dependencies) {
    const have = d.installed !== undefined && Object.hasOwn(d.installed, dep.classId) ? d.installed[dep.classId]! : 0;
    if (have < dep.minSequence) return refuse('DependencyUnmet', `manifest needs ${JSON.stringify(dep.classId)} at sequence ${dep.minSequence} or later (installed: ${have})`);
  }
  return null;
}

/** SHA-256 hex of bytes. */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** The image (bytes, or a digest and size computed while streaming) against the manifest. */
export function checkImage(m: Manifest, image: ImageInput): Refusal | null {
  const size = image instanceof Uint8Array ? image.byteLength : image.size;
  if (size !== m.imageSize) return refuse('SizeMismatch', `image is ${size} bytes, the manifest says ${m.imageSize}`);
  const digest = image instanceof Uint8Array ? sha256Hex(image) : image.digest.toLowerCase();
  if (digest !== m.imageDigest) return refuse('DigestMismatch', `image SHA-256 ${digest.slice(0, 16)}… is not the manifest's ${m.imageDigest.slice(0, 16)}…`);
  return null;
}

export interface UpdateCheck {
  envelope: EnvelopeInput;
  /** The signed key set (checked against `rootKeys` on every call). */
  keySet: EnvelopeInput;
  rootKeys: readonly FirmwarePublicKey[];
  policy: VerifyPolicy;
  device: DeviceFacts & { minKeySetVersion?: number };
  /** When given, checked against the manifest's size and digest. */
  image?: ImageInput;
}

/** Everything a device checks before installing. Never throws. */
export function verifyUpdate(c: UpdateCheck): Checked<{ manifest: Manifest; keySet: KeySet; keyId: string }> {
  try {
    const ks = verifyKeySet({ signed: c.keySet, rootKeys: c.rootKeys, policy: c.policy, minVersion: c.device.minKeySetVersion ?? 0, now: c.device.now });
    if (!ks.ok) return ks;
    const signed = verifySignedManifest(c.envelope, ks.keySet, c.policy);
    if (!signed.ok) return signed;
    const device = checkManifestForDevice(signed.manifest, c.device);
    if (device !== null) return device;
    if (c.image !== undefined) {
      const image = checkImage(signed.manifest, c.image);
      if (image !== null) return image;
    }
    return { ok: true, manifest: signed.manifest, keySet: ks.keySet, keyId: signed.keyId };
  } catch {
    return refuse('Malformed', 'update is unreadable');
  }
}
