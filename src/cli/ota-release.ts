/**
 * `bastion ota sign` and `bastion ota release create|list` (docs/OTA.md). Owns: their
 * options, the progress bar, and output. Must not: verify or store itself (src/ota/,
 * src/firmware/), or print key material.
 *
 * SECURITY: `sign` refuses a release key the current key set does not list (a rotated-out
 * key signs nothing more); `release create` stores nothing unless the manifest verifies
 * against the key set and the image matches it (releases.ts).
 */
import type { Command } from 'commander';
import { readFile, writeFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { FieldError, signManifest, type Manifest, type ManifestDependency } from '../firmware/index.js';
import { OtaError, otaDirOf, readKeyFile, RELEASE_KEY_FILE, withOtaLock } from '../ota/ota-files.js';
import { createRelease, currentKeySet, DEFAULT_MAX_IMAGE_BYTES, hashImage, imageSizeOf, lastSequenceOf, readReleaseIndex, writeReleaseIndex } from '../ota/releases.js';
import { auditedChange } from './cli-change.js';
import { addProvisionSourceOptions, printTable, provisionSource, type ProvisionSourceOptions } from './provision-context.js';

const DAY_MS = 86_400_000;
const DEFAULT_VALID_DAYS = 90;
/** notBefore is this far in the past, so devices whose clocks lag a little accept a fresh manifest. */
const NOT_BEFORE_SKEW_MS = 5 * 60_000;
/** Images at least this large get a progress bar (on a terminal). */
const PROGRESS_MIN_BYTES = 16 * 1024 * 1024;

const SIZE_UNITS: Readonly<Record<string, number>> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/** `--max-image-size`: bytes, or with a K, M or G suffix (binary units). */
export function parseSize(value: string | undefined): number {
  if (value === undefined) return DEFAULT_MAX_IMAGE_BYTES;
  const m = /^(\d{1,12})([kmg]?)i?b?$/i.exec(value);
  const n = m === null ? NaN : Number(m[1]) * SIZE_UNITS[m[2]!.toLowerCase()]!;
  if (!Number.isSafeInteger(n) || n < 1) throw new OtaError(`--max-image-size takes a size such as 268435456, 512M or 2G, got "${value}"`);
  return n;
}

function wholeNumber(flag: string, value: string, min: number, max: number): number {
  if (!/^\d{1,15}$/.test(value) || Number(value) < min || Number(value) > max) throw new OtaError(`${flag} must be a whole number from ${min} to ${max}, got "${value}"`);
  return Number(value);
}

/** A progress bar on stderr for large images when stderr is a terminal; otherwise nothing. */
function progressFor(total: number, label: string): { tick: (done: number) => void; end: () => void } {
  if (process.stderr.isTTY !== true || total < PROGRESS_MIN_BYTES) return { tick: () => undefined, end: () => undefined };
  let shown = -1;
  const mib = (n: number): string => (n / 1024 / 1024).toFixed(0);
  return {
    tick: (done) => {
      const pct = Math.floor((done / total) * 100);
      if (pct === shown) return;
      shown = pct;
      const filled = Math.round(pct / 4);
      process.stderr.write(`\r${label} [${'#'.repeat(filled)}${'.'.repeat(25 - filled)}] ${pct}% ${mib(done)}/${mib(total)} MiB`);
    },
    end: () => process.stderr.write('\n'),
  };
}

interface SignOptions extends ProvisionSourceOptions {
  class?: string;
  vendor?: string;
  fwVersion?: string;
  seq?: string;
  validDays: string;
  out?: string;
  uri?: string;
  depends: string[];
  key?: string;
  maxImageSize?: string;
}

function parseDependency(value: string): ManifestDependency {
  const m = /^(.+):(\d{1,15})$/.exec(value);
  if (m === null) throw new OtaError(`--depends takes CLASS:MIN_SEQUENCE, got "${value}"`);
  return { classId: m[1]!, minSequence: Number(m[2]) };
}

async function sign(image: string, opts: SignOptions): Promise<void> {
  for (const [flag, v] of [['--class', opts.class], ['--vendor', opts.vendor], ['--fw-version', opts.fwVersion]] as const) if (v === undefined || v.length === 0) throw new OtaError(`${flag} is required`);
  const validDays = wholeNumber('--valid-days', opts.validDays, 1, 3650);
  const maxBytes = parseSize(opts.maxImageSize);
  const explicitSeq = opts.seq !== undefined ? wholeNumber('--seq', opts.seq, 1, Number.MAX_SAFE_INTEGER) : undefined;
  const imagePath = resolve(process.cwd(), image);
  const out = resolve(process.cwd(), opts.out ?? `${image}.manifest.json`);
  const { dataDir } = await provisionSource(opts);
  const dir = otaDirOf(dataDir);
  const keyPath = opts.key !== undefined ? resolve(process.cwd(), opts.key) : join(dir, RELEASE_KEY_FILE);
  const total = await imageSizeOf(imagePath, maxBytes);
  const r = await auditedChange(dataDir, 'ota.sign', opts.class!, () =>
    withOtaLock(dataDir, async () => {
      const key = await readKeyFile(keyPath, 'release');
      const keySet = await currentKeySet(dir, Date.now());
      if (!keySet.keys.some((k) => k.id === key.id)) {
        throw new OtaError(`release key ${key.id.slice(0, 16)}… is ${keySet.revokedKeyIds.includes(key.id) ? 'rotated out' : 'not listed'} in key set version ${keySet.version}; devices would refuse what it signs`);
      }
      const progress = progressFor(total, basename(imagePath));
      const hashed = await hashImage(imagePath, maxBytes, progress.tick);
      progress.end();
      const index = await readReleaseIndex(dir);
      const last = lastSequenceOf(index, opts.class!);
      const sequence = explicitSeq ?? last + 1;
      if (sequence <= last) process.stderr.write(`bastion: warning: sequence ${sequence} is not above ${last}, the last signed for class ${opts.class}: devices that installed it refuse this manifest\n`);
      const now = Date.now();
      const manifest: Manifest = {
        manifestVersion: 1,
        sequence,
        vendorId: opts.vendor!,
        classId: opts.class!,
        version: opts.fwVersion!,
        imageDigest: hashed.digest,
        imageSize: hashed.size,
        uri: opts.uri ?? `bastion-image:sha256:${hashed.digest}`,
        notBefore: now - NOT_BEFORE_SKEW_MS,
        notAfter: now + validDays * DAY_MS,
        dependencies: opts.depends.map(parseDependency),
      };
      let signed;
      try {
        signed = signManifest(manifest, key);
      } catch (err) {
        if (err instanceof FieldError) throw new OtaError(`cannot sign: ${err.message}`);
        throw err;
      }
      await writeFile(out, `${JSON.stringify(signed, null, 2)}\n`, { mode: 0o644 });
      index.lastSequence[manifest.classId] = Math.max(last, sequence);
      await writeReleaseIndex(dir, index);
      return { manifest, keyId: key.id };
    }),
  (x) => ({ sequence: x.manifest.sequence, version: x.manifest.version, imageDigest: x.manifest.imageDigest, keyId: x.keyId }),
  );
  process.stdout.write(`signed ${r.manifest.classId} ${r.manifest.version} sequence ${r.manifest.sequence} (${r.manifest.imageSize} bytes, sha256 ${r.manifest.imageDigest}) with release key ${r.keyId.slice(0, 16)}…\nmanifest ${out}\n`);
}

interface CreateOptions extends ProvisionSourceOptions {
  manifest?: string;
  maxImageSize?: string;
}

async function releaseCreate(image: string, opts: CreateOptions): Promise<void> {
  if (opts.manifest === undefined) throw new OtaError('--manifest FILE is required (written by `bastion ota sign`)');
  const maxBytes = parseSize(opts.maxImageSize);
  const imagePath = resolve(process.cwd(), image);
  const manifestPath = resolve(process.cwd(), opts.manifest);
  let manifestText: string;
  try {
    manifestText = await readFile(manifestPath, 'utf8');
  } catch {
    throw new OtaError(`cannot read the manifest ${manifestPath}`);
  }
  const total = await imageSizeOf(imagePath, maxBytes);
  const { dataDir } = await provisionSource(opts);
  const { record, stored } = await auditedChange(dataDir, 'ota.release.create', basename(imagePath), () =>
    withOtaLock(dataDir, async (dir) => {
      const progress = progressFor(total, basename(imagePath));
      try {
        return await createRelease(dir, imagePath, manifestText, maxBytes, Date.now(), progress.tick);
      } finally {
        progress.end();
      }
    }),
  (x) => ({ releaseId: x.record.id, classId: x.record.classId, sequence: x.record.sequence, imageDigest: x.record.imageDigest, keyId: x.record.keyId }),
  );
  process.stdout.write(`release ${record.id}: ${record.classId} ${record.version} sequence ${record.sequence}, image sha256 ${record.imageDigest} (${record.imageSize} bytes${stored ? '' : ', already stored'})\n`);
}

async function releaseList(opts: ProvisionSourceOptions & { json?: boolean; class?: string }): Promise<void> {
  const { dataDir } = await provisionSource(opts);
  const index = await readReleaseIndex(otaDirOf(dataDir));
  const rows = index.releases.filter((r) => opts.class === undefined || r.classId === opts.class);
  if (opts.json === true) {
    for (const r of rows) process.stdout.write(`${JSON.stringify(r)}\n`);
    return;
  }
  if (rows.length === 0) {
    process.stdout.write('no releases\n');
    return;
  }
  printTable(
    ['ID', 'CLASS', 'VERSION', 'SEQ', 'SIZE', 'SHA-256', 'NOT AFTER'],
    rows.map((r) => [r.id, r.classId, r.version, String(r.sequence), String(r.imageSize), `${r.imageDigest.slice(0, 16)}…`, r.notAfter]),
  );
}

export function registerOtaReleaseCommands(ota: Command): void {
  addProvisionSourceOptions(
    ota
      .command('sign <image>')
      .description('hash IMAGE and write a manifest signed by the release key (ECDSA P-256 + ML-DSA-65)')
      .option('--class <class>', 'device class id the image is for')
      .option('--vendor <vendor>', 'vendor id')
      // Not --version: the program's own --version is recognised anywhere on the command line.
      .option('--fw-version <version>', 'the firmware version, e.g. 2.1.0 (devices compare the sequence, not this)')
      .option('--seq <n>', 'anti-rollback sequence (default: one more than the last signed for the class)')
      .option('--valid-days <days>', 'how long the manifest is valid', String(DEFAULT_VALID_DAYS))
      .option('--out <file>', 'where to write the signed manifest (default IMAGE.manifest.json)')
      .option('--uri <uri>', 'where devices fetch the image (default bastion-image:sha256:<digest>)')
      .option('--depends <class:minSeq>', 'a dependency: another class at a minimum sequence (repeatable)', (v: string, all: string[]) => [...all, v], [])
      .option('--key <file>', 'the release key (default <data-dir>/ota/release.key.json)')
      .option('--max-image-size <size>', 'refuse larger images (default 256M)'),
  ).action((image: string, opts: SignOptions) => sign(image, opts));
  const release = ota.command('release').description('releases: verified manifests and their images, stored content-addressed');
  addProvisionSourceOptions(
    release
      .command('create <image>')
      .description('verify the manifest against the key set and IMAGE against the manifest, then store both')
      .option('--manifest <file>', 'the signed manifest (from `bastion ota sign`)')
      .option('--max-image-size <size>', 'refuse larger images (default 256M)'),
  ).action((image: string, opts: CreateOptions) => releaseCreate(image, opts));
  addProvisionSourceOptions(
    release
      .command('list')
      .description('list stored releases')
      .option('--class <class>', 'only this class')
      .option('--json', 'one JSON object per line'),
  ).action((opts: ProvisionSourceOptions & { json?: boolean; class?: string }) => releaseList(opts));
}
