/**
 * The releases of `<ota>/releases.json` as entries that travel between the nodes of a
 * cluster (issue 14 item 6): one release as a keyed, canonical JSON entry (`otar.r.<id>`),
 * its validation, and adding releases from the cluster to a node's index. Owns: those.
 * Must not: talk to NATS (server/cluster-ota-releases.ts does) or fetch images.
 *
 * A release never changes once created, so there is no join: two versions of one release
 * are equal, or the second is refused (logged by the caller) and this node keeps its own.
 *
 * SECURITY: a release from another node is operator-grade input, checked to be what its
 * own signed manifest says: its id is the manifest's digest (as `release create` names
 * it), and the image digest, size, class, sequence, vendor, version and uri are the
 * manifest's. The manifest's signatures are verified by the device against its pinned
 * root keys (as for any release); a node serves an image only once its bytes hashed to the
 * manifest's digest and size (server/cluster-ota-releases.ts).
 */
import { z } from 'zod';
import { sha256Hex } from '../firmware/index.js';
import { lastSequenceOf, readReleaseIndex, writeReleaseIndex, type ReleaseRecord } from './releases.js';

/** The prefix of every release entry in the cluster's shared state bucket. */
export const RELEASE_ROW_PREFIX = 'otar';

const text = (max: number): z.ZodString => z.string().min(1).max(max);
const signature = z.object({ classic: text(16_384), pq: text(65_536).optional(), classicAlg: text(64), pqAlg: text(64).optional() }).strict();
const releaseRow = z
  .object({
    id: z.string().regex(/^[0-9a-f]{16}$/),
    vendorId: text(128),
    classId: text(128),
    version: text(128),
    sequence: z.number().int().nonnegative(),
    imageDigest: z.string().regex(/^[0-9a-f]{64}$/),
    imageSize: z.number().int().positive(),
    uri: text(2048),
    keyId: text(128),
    keySetVersion: z.number().int().nonnegative(),
    notAfter: text(64),
    createdAt: text(64),
    manifest: z.object({ manifest: text(256 * 1024), keyId: text(128), signature }).strict(),
  })
  .strict();

export function releaseKey(id: string): string {
  return `${RELEASE_ROW_PREFIX}.r.${id}`;
}

/** The canonical text of a release: the schema's order, the signature's keys sorted. */
export function releaseText(r: ReleaseRecord): string {
  const sig = r.manifest.signature as unknown as Record<string, unknown>;
  const sortedSig: Record<string, unknown> = {};
  for (const k of Object.keys(sig).sort()) if (sig[k] !== undefined) sortedSig[k] = sig[k];
  const ordered: Record<string, unknown> = {};
  for (const column of Object.keys(releaseRow.shape)) ordered[column] = (r as unknown as Record<string, unknown>)[column];
  ordered.manifest = { manifest: r.manifest.manifest, keyId: r.manifest.keyId, signature: sortedSig };
  return JSON.stringify(ordered);
}

/** A release from the bucket (or this node's index), checked: the record, or why it is refused. */
export function checkRelease(raw: unknown): ReleaseRecord | { why: string } {
  const parsed = releaseRow.safeParse(raw);
  if (!parsed.success) return { why: parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') };
  const r = parsed.data as ReleaseRecord;
  const bytes = Buffer.from(r.manifest.manifest, 'base64');
  if (sha256Hex(bytes).slice(0, 16) !== r.id) return { why: 'the id is not the digest of its manifest' };
  let m: Record<string, unknown>;
  try {
    m = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
  } catch {
    return { why: 'the manifest is not JSON' };
  }
  const same: Array<[string, unknown]> = [
    ['imageDigest', r.imageDigest],
    ['imageSize', r.imageSize],
    ['classId', r.classId],
    ['sequence', r.sequence],
    ['vendorId', r.vendorId],
    ['version', r.version],
    ['uri', r.uri],
  ];
  for (const [field, value] of same) if (m[field] !== value) return { why: `${field} is not the manifest's` };
  if (r.manifest.keyId !== r.keyId) return { why: "keyId is not the envelope's" };
  return r;
}

export function decodeRelease(key: string, bytes: Uint8Array): ReleaseRecord | { why: string } {
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    return { why: 'not JSON' };
  }
  const r = checkRelease(raw);
  if ('why' in r) return r;
  if (releaseKey(r.id) !== key) return { why: "a release under another release's key" };
  return r;
}

/**
 * Adds releases from the cluster to the index in `dir` (call holding the OTA lock). Returns
 * the ones added, and those refused because this index has another release of that id, or
 * of that class and sequence.
 */
export async function addReleases(dir: string, incoming: readonly ReleaseRecord[]): Promise<{ added: ReleaseRecord[]; refused: Array<{ release: ReleaseRecord; why: string }> }> {
  const index = await readReleaseIndex(dir);
  const added: ReleaseRecord[] = [];
  const refused: Array<{ release: ReleaseRecord; why: string }> = [];
  for (const r of incoming) {
    const same = index.releases.find((x) => x.id === r.id);
    if (same !== undefined) {
      if (releaseText(same) !== releaseText(r)) refused.push({ release: r, why: `this node has another release ${r.id}` });
      continue;
    }
    const clash = index.releases.find((x) => x.classId === r.classId && x.sequence === r.sequence);
    if (clash !== undefined) {
      refused.push({ release: r, why: `class ${r.classId} has release ${clash.id} at sequence ${r.sequence} on this node` });
      continue;
    }
    index.releases.push(r);
    index.lastSequence[r.classId] = Math.max(lastSequenceOf(index, r.classId), r.sequence);
    added.push(r);
  }
  if (added.length > 0) await writeReleaseIndex(dir, index);
  return { added, refused };
}
