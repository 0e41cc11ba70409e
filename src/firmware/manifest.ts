/**
 * The firmware manifest (SUIT-like, RFC 9124's information model in the canonical JSON of
 * canonical.ts). Owns: the `Manifest` type, its one encoding, and decoding bytes back with
 * every field checked. Must not: check signatures or device facts (verify.ts), or do I/O.
 *
 * Field order of the encoding (docs/OTA.md "Manifest"): manifestVersion, sequence,
 * vendorId, classId, version, imageDigest, imageSize, uri, notBefore, notAfter,
 * dependencies (always present, possibly empty; each {classId, minSequence}).
 */
import { arr, asObject, encodeCanonical, FieldError, HEX64_RE, ID_RE, int, isCanonical, isoSeconds, obj, onlyKeys, parseJsonObject, PRINTABLE_RE, str, time, type CanonicalObject } from './canonical.js';
import { refuse, type Checked } from './result.js';

export const MANIFEST_VERSION = 1;
/** A manifest is small; anything larger is refused before parsing. */
export const MAX_MANIFEST_BYTES = 16 * 1024;
export const MAX_DEPENDENCIES = 32;
const MAX_ID = 128;
const MAX_URI = 2048;
const MAX_VERSION = 64;

export interface ManifestDependency {
  classId: string;
  /** The dependency's installed sequence must be at least this. */
  minSequence: number;
}

export interface Manifest {
  manifestVersion: 1;
  /** Monotonic anti-rollback counter (per class): a device refuses one not above its last installed. */
  sequence: number;
  vendorId: string;
  classId: string;
  /** Human version, e.g. "1.4.2"; not compared (sequence is). */
  version: string;
  /** SHA-256 of the image, lower-case hex. */
  imageDigest: string;
  /** Bytes. */
  imageSize: number;
  /** Where to fetch the image (e.g. `bastion-image:sha256:<digest>`, the broker's image store). */
  uri: string;
  /** Epoch ms, whole seconds. */
  notBefore: number;
  notAfter: number;
  dependencies: ManifestDependency[];
}

function toCanonical(m: Manifest): CanonicalObject {
  return obj([
    ['manifestVersion', m.manifestVersion],
    ['sequence', m.sequence],
    ['vendorId', m.vendorId],
    ['classId', m.classId],
    ['version', m.version],
    ['imageDigest', m.imageDigest],
    ['imageSize', m.imageSize],
    ['uri', m.uri],
    ['notBefore', isoSeconds(m.notBefore)],
    ['notAfter', isoSeconds(m.notAfter)],
    ['dependencies', m.dependencies.map((d) => obj([['classId', d.classId], ['minSequence', d.minSequence]]))],
  ]);
}

const MANIFEST_KEYS = ['manifestVersion', 'sequence', 'vendorId', 'classId', 'version', 'imageDigest', 'imageSize', 'uri', 'notBefore', 'notAfter', 'dependencies'] as const;

/** Reads and checks every field; throws FieldError. */
function fromObject(o: Record<string, unknown>): Manifest {
  const w = 'manifest';
  onlyKeys(o, MANIFEST_KEYS, w);
  const manifestVersion = int(o, 'manifestVersion', w, 0);
  if (manifestVersion !== MANIFEST_VERSION) throw new FieldError(`manifest version ${manifestVersion} is not supported (this verifier reads ${MANIFEST_VERSION})`);
  const m: Manifest = {
    manifestVersion: MANIFEST_VERSION,
    sequence: int(o, 'sequence', w, 1),
    vendorId: str(o, 'vendorId', w, ID_RE, MAX_ID),
    classId: str(o, 'classId', w, ID_RE, MAX_ID),
    version: str(o, 'version', w, PRINTABLE_RE, MAX_VERSION),
    imageDigest: str(o, 'imageDigest', w, HEX64_RE, 64),
    imageSize: int(o, 'imageSize', w, 1),
    uri: str(o, 'uri', w, PRINTABLE_RE, MAX_URI),
    notBefore: time(o, 'notBefore', w),
    notAfter: time(o, 'notAfter', w),
    dependencies: arr(o, 'dependencies', w, MAX_DEPENDENCIES).map((d, i) => {
      const dw = `manifest.dependencies[${i}]`;
      const x = asObject(d, dw);
      onlyKeys(x, ['classId', 'minSequence'], dw);
      return { classId: str(x, 'classId', dw, ID_RE, MAX_ID), minSequence: int(x, 'minSequence', dw, 1) };
    }),
  };
  if (m.notAfter <= m.notBefore) throw new FieldError('manifest.notAfter must be later than notBefore');
  return m;
}

/** Throws FieldError unless `m` is a manifest this module would accept back. */
export function checkManifestFields(m: Manifest): void {
  const bytes = encodeCanonical(toCanonical(m));
  const back = fromObject(parseJsonObject(bytes, 'manifest'));
  if (!isCanonical(bytes, toCanonical(back))) throw new FieldError('manifest does not round-trip');
}

/** The canonical bytes of a manifest (what the release key signs). Throws FieldError on a bad field. */
export function encodeManifest(m: Manifest): Buffer {
  checkManifestFields(m);
  return encodeCanonical(toCanonical(m));
}

/**
 * Bytes → manifest, or Malformed / NonCanonical. Call only on bytes whose signature
 * verified (verify.ts): the parser never sees unauthenticated input there.
 */
export function decodeManifest(bytes: Uint8Array): Checked<{ manifest: Manifest }> {
  if (bytes.byteLength > MAX_MANIFEST_BYTES) return refuse('Malformed', `manifest is larger than ${MAX_MANIFEST_BYTES} bytes`);
  let manifest: Manifest;
  try {
    manifest = fromObject(parseJsonObject(bytes, 'manifest'));
  } catch (err) {
    if (err instanceof FieldError) return refuse('Malformed', err.message);
    return refuse('Malformed', 'manifest is unreadable');
  }
  if (!isCanonical(bytes, toCanonical(manifest))) return refuse('NonCanonical', 'manifest bytes are not the canonical encoding (key order, whitespace, escapes or number form differ)');
  return { ok: true, manifest };
}
