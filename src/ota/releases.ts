/**
 * Firmware images and releases on the broker side: streaming an image through SHA-256
 * (with a size limit and progress), the content-addressed store `<ota>/images/<sha256>`,
 * checking a signed manifest against the key set and the image before a release is
 * stored, and the release index `<ota>/releases.json`. Owns: those files and the checks
 * of `bastion ota release create`. Must not: print, or hold key material.
 *
 * SECURITY: a release is stored only after its manifest verified against the current key
 * set (root-signed, both signature halves, a listed release key, the canonical encoding),
 * is not expired, and the image bytes streamed into the store match its digest and size;
 * an image over the size limit is refused from its size alone, and a stream that grows
 * past it is cut off. The stored image is named by its own digest, so it cannot be swapped
 * for other bytes under the same name without the name stopping to match.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { checkImage, sha256Hex, verifyKeySet, verifySignedManifest, type KeySet, type Manifest, type Refusal, type SignedManifest } from '../firmware/index.js';
import { exists, IMAGES_DIR, OtaError, readJson, readRootPins, readSignedKeySet, RELEASES_FILE, writeFileAtomic } from './ota-files.js';

/** Images above this are refused unless --max-image-size says otherwise. */
export const DEFAULT_MAX_IMAGE_BYTES = 256 * 1024 * 1024;

export interface HashedImage {
  digest: string;
  size: number;
}

/** Refuses an image larger than `maxBytes` from its size alone (before reading it). */
export async function imageSizeOf(path: string, maxBytes: number): Promise<number> {
  let st;
  try {
    st = await stat(path);
  } catch {
    throw new OtaError(`cannot read the image ${path}`);
  }
  if (!st.isFile()) throw new OtaError(`${path} is not a regular file`);
  if (st.size > maxBytes) throw new OtaError(`image ${path} is ${st.size} bytes, over the limit of ${maxBytes} bytes (--max-image-size)`);
  if (st.size === 0) throw new OtaError(`image ${path} is empty`);
  return st.size;
}

/**
 * Streams `path` through SHA-256, optionally copying it to `copyTo` (created 0600, synced);
 * refuses a file that grows past `maxBytes` while being read.
 */
export async function hashImage(path: string, maxBytes: number, onProgress?: (done: number) => void, copyTo?: string): Promise<HashedImage> {
  await imageSizeOf(path, maxBytes);
  const hash = createHash('sha256');
  const out = copyTo !== undefined ? await open(copyTo, 'wx', 0o600) : undefined;
  let size = 0;
  try {
    for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) {
      const buf = chunk as Buffer;
      size += buf.length;
      if (size > maxBytes) throw new OtaError(`image ${path} grew over the limit of ${maxBytes} bytes while being read`);
      hash.update(buf);
      if (out !== undefined) await out.write(buf);
      onProgress?.(size);
    }
    await out?.sync();
  } finally {
    await out?.close();
  }
  return { digest: hash.digest('hex'), size };
}

/** One stored release (releases.json). */
export interface ReleaseRecord {
  /** First 16 hex digits of the SHA-256 of the manifest bytes. */
  id: string;
  vendorId: string;
  classId: string;
  version: string;
  sequence: number;
  imageDigest: string;
  imageSize: number;
  uri: string;
  keyId: string;
  keySetVersion: number;
  notAfter: string;
  createdAt: string;
  /** The signed manifest exactly as devices will receive it. */
  manifest: SignedManifest;
}

interface ReleaseIndex {
  version: 1;
  releases: ReleaseRecord[];
  /** The highest sequence signed or released per class (default --seq is one more). */
  lastSequence: Record<string, number>;
}

export async function readReleaseIndex(dir: string): Promise<ReleaseIndex> {
  const path = join(dir, RELEASES_FILE);
  if (!(await exists(path))) return { version: 1, releases: [], lastSequence: {} };
  const index = await readJson<Partial<ReleaseIndex>>(path, 'release index');
  if (index.version !== 1 || !Array.isArray(index.releases) || typeof index.lastSequence !== 'object' || index.lastSequence === null) throw new OtaError(`${path} is not a release index`);
  return { version: 1, releases: index.releases, lastSequence: index.lastSequence };
}

export async function writeReleaseIndex(dir: string, index: ReleaseIndex): Promise<void> {
  await writeFileAtomic(join(dir, RELEASES_FILE), `${JSON.stringify(index, null, 2)}\n`, 0o644);
}

/** The highest sequence known for a class (signed or released), 0 when none. */
export function lastSequenceOf(index: ReleaseIndex, classId: string): number {
  const signed = Object.hasOwn(index.lastSequence, classId) ? (index.lastSequence[classId] ?? 0) : 0;
  return Math.max(signed, ...index.releases.filter((r) => r.classId === classId).map((r) => r.sequence));
}

function refusal(r: Refusal, what: string): OtaError {
  return new OtaError(`${what}: ${r.reason}: ${r.message}`);
}

/** The current key set, verified against the pinned root keys in the OTA directory. */
export async function currentKeySet(dir: string, now: number): Promise<KeySet> {
  const checked = verifyKeySet({ signed: await readSignedKeySet(dir), rootKeys: await readRootPins(dir), policy: { requirePostQuantum: true }, minVersion: 0, now });
  if (!checked.ok) throw refusal(checked, `the key set in ${dir} is refused`);
  return checked.keySet;
}

/** Reads a manifest file and verifies it against the current key set (no device facts). */
export async function verifiedManifest(dir: string, manifestText: string, now: number): Promise<{ manifest: Manifest; keyId: string; keySet: KeySet; envelope: SignedManifest; bytes: Buffer }> {
  const keySet = await currentKeySet(dir, now);
  const checked = verifySignedManifest(manifestText, keySet, { requirePostQuantum: true });
  if (!checked.ok) throw refusal(checked, 'the manifest is refused');
  if (now >= checked.manifest.notAfter) throw new OtaError(`the manifest is refused: Expired: it expired at ${new Date(checked.manifest.notAfter).toISOString()}`);
  const envelope = JSON.parse(manifestText) as SignedManifest;
  return { manifest: checked.manifest, keyId: checked.keyId, keySet, envelope: { manifest: envelope.manifest, keyId: envelope.keyId, signature: envelope.signature }, bytes: checked.bytes };
}

/**
 * `release create`: verifies the manifest, streams the image into the store checking it
 * against the manifest, and records the release. Call holding the OTA lock.
 */
export async function createRelease(dir: string, imagePath: string, manifestText: string, maxBytes: number, now: number, onProgress?: (done: number) => void): Promise<{ record: ReleaseRecord; stored: boolean }> {
  const v = await verifiedManifest(dir, manifestText, now);
  const index = await readReleaseIndex(dir);
  const clash = index.releases.find((r) => r.classId === v.manifest.classId && r.sequence === v.manifest.sequence);
  if (clash !== undefined) throw new OtaError(`class ${v.manifest.classId} already has release ${clash.id} at sequence ${v.manifest.sequence}`);
  if (v.manifest.imageSize > maxBytes) throw new OtaError(`the manifest's image is ${v.manifest.imageSize} bytes, over the limit of ${maxBytes} bytes (--max-image-size)`);
  const images = join(dir, IMAGES_DIR);
  const temp = join(images, `.upload.${randomBytes(6).toString('hex')}.tmp`);
  let stored = false;
  try {
    const hashed = await hashImage(imagePath, maxBytes, onProgress, temp);
    const mismatch = checkImage(v.manifest, hashed);
    if (mismatch !== null) throw refusal(mismatch, 'the image does not match the manifest');
    const target = join(images, hashed.digest);
    if (!(await exists(target))) {
      await rename(temp, target);
      stored = true;
    }
  } finally {
    await rm(temp, { force: true });
  }
  const record: ReleaseRecord = {
    id: sha256Hex(v.bytes).slice(0, 16),
    vendorId: v.manifest.vendorId,
    classId: v.manifest.classId,
    version: v.manifest.version,
    sequence: v.manifest.sequence,
    imageDigest: v.manifest.imageDigest,
    imageSize: v.manifest.imageSize,
    uri: v.manifest.uri,
    keyId: v.keyId,
    keySetVersion: v.keySet.version,
    notAfter: new Date(v.manifest.notAfter).toISOString(),
    createdAt: new Date(now).toISOString(),
    manifest: v.envelope,
  };
  index.releases.push(record);
  index.lastSequence[record.classId] = Math.max(lastSequenceOf(index, record.classId), record.sequence);
  await writeReleaseIndex(dir, index);
  return { record, stored };
}
