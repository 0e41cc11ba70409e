/**
 * Releases and their images across the nodes of a cluster (issue 14 item 6): every release
 * of a node's `<ota>/releases.json` is also an entry `otar.r.<id>` of the shared state
 * bucket, and every image a node holds is also an object (named by its SHA-256) of the
 * JetStream object store `bmq_ota_images` (replicas from the cluster config). A node adds
 * the releases other nodes made to its own index, and fetches the image of each release
 * it lacks, so a device connected to any node downloads its job's image from that node
 * (the transfer fence and block source read this node's files, unchanged). Owns: the
 * release entries, the object store, the fetches and their checks. Must not: decide what a
 * device may download (ota/transfer/fence.ts does, from the jobs and this index) or talk
 * to NATS except through SharedState and the object store.
 *
 * When: entries are taken as they arrive and written to the index on the next step; a
 * step runs on every arrival and every second (the CLI's new releases, images not yet in
 * the object store, fetches that failed). The index is written holding the OTA directory
 * lock, as the CLI does; while the CLI holds it the step is retried.
 *
 * SECURITY: a release entry is checked against its own manifest (ota/release-rows.ts); a
 * fetched image is streamed to a temporary file through SHA-256 and bounded by the
 * release's size, and moved into `<ota>/images/<sha256>` only when its digest and size are
 * the release's: a wrong or altered object is refused (logged, retried a minute later),
 * never served. A release that clashes with this node's own (same id or class and sequence,
 * other content) is refused and logged; this node keeps its own.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { StorageType } from '@nats-io/jetstream';
import { Objm, type ObjectStore } from '@nats-io/obj';
import type { ClusterNatsConnection } from '../cluster/nats-connection.js';
import type { SharedKind, SharedState } from '../cluster/shared-state.js';
import type { Logger } from '../core/logger.js';
import { ensureOtaDir, exists, IMAGES_DIR, otaDirOf, withOtaLock } from '../ota/ota-files.js';
import { addReleases, checkRelease, decodeRelease, releaseKey, releaseText, RELEASE_ROW_PREFIX } from '../ota/release-rows.js';
import { readReleaseIndex, type ReleaseRecord } from '../ota/releases.js';

/** The object store of images (one object per image, named by its SHA-256). */
export const IMAGE_BUCKET = 'bmq_ota_images';
const STEP_MS = 1000;
/** A fetch whose bytes were refused is tried again this much later. */
const REFUSED_RETRY_MS = 60_000;

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class OtaReleaseReplica implements SharedKind {
  private state: SharedState | null = null;
  private images: ObjectStore | null = null;
  /** Releases from the cluster not yet in this node's index. */
  private readonly incoming = new Map<string, ReleaseRecord>();
  /** The text of each release the bucket is known to hold. */
  private readonly known = new Map<string, string>();
  /** Digests known to be in the object store. */
  private readonly stored = new Set<string>();
  /** Digests being fetched, and when a refused or absent one may be tried again. */
  private readonly fetching = new Set<string>();
  private readonly notBefore = new Map<string, number>();
  private readonly warned = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private again = false;
  private stopped = false;
  /** Fetches finished (tests and logs). */
  fetched = 0;

  constructor(
    private readonly dataDir: string,
    private readonly conn: ClusterNatsConnection,
    private readonly replicas: number,
    private readonly logger: Logger,
  ) {}

  register(state: SharedState): void {
    this.state = state;
    state.register(RELEASE_ROW_PREFIX, this);
  }

  apply(key: string, value: Uint8Array | null): void {
    // A release is never deleted: the CLI has no command for it, and devices may still be on it.
    if (value === null) return;
    const r = decodeRelease(key, value);
    if ('why' in r) {
      this.logger.error({ key, why: r.why }, 'ota releases: an entry from the cluster is malformed; ignored');
      return;
    }
    this.known.set(r.id, releaseText(r));
    this.incoming.set(r.id, r);
  }

  settled(): void {
    if (this.incoming.size > 0 && this.timer !== null) this.kick();
  }

  /** After the bucket was read: steps now and every second. */
  attach(): void {
    this.timer = setInterval(() => this.kick(), STEP_MS);
    this.timer.unref();
    this.kick();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** Runs a step, or one more after the one running. Resolves when the steps are done (tests). */
  kick(): Promise<void> {
    if (this.running !== null) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.again = false;
        try {
          await this.step();
        } catch (err) {
          this.logger.warn({ err: errText(err) }, 'ota releases: a cluster step failed; retrying');
        }
      } while (this.again && !this.stopped);
    })().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async step(): Promise<void> {
    if (this.stopped) return;
    this.images ??= await new Objm(this.conn.nc).create(IMAGE_BUCKET, { replicas: this.replicas, storage: StorageType.File });
    const dir = otaDirOf(this.dataDir);
    if (this.incoming.size > 0 && (await exists(dir))) {
      // Releases this index already has need no lock (every start brings them all again):
      // the lock is taken only for new ones, so a CLI command rarely finds it held.
      const have = new Map((await readReleaseIndex(dir)).releases.map((r) => [r.id, r]));
      for (const [id, r] of [...this.incoming]) {
        const mine = have.get(id);
        if (mine !== undefined && !('why' in checkRelease(mine)) && releaseText(mine) === releaseText(r)) this.incoming.delete(id);
      }
    }
    if (this.incoming.size > 0) {
      const batch = [...this.incoming.values()];
      const { added, refused } = await withOtaLock(this.dataDir, (dir) => addReleases(dir, batch));
      for (const r of batch) this.incoming.delete(r.id);
      for (const r of added) this.logger.info({ releaseId: r.id, classId: r.classId, version: r.version }, 'ota release from the cluster added');
      for (const x of refused) this.logger.error({ releaseId: x.release.id, why: x.why }, 'ota releases: a release from the cluster clashes with this node\'s; refused');
    }
    if (!(await exists(dir))) return;
    for (const raw of (await readReleaseIndex(dir)).releases) {
      const r = checkRelease(raw);
      if ('why' in r) {
        const id = String((raw as { id?: unknown }).id ?? '?');
        if (!this.warned.has(id)) this.logger.warn({ releaseId: id, why: r.why }, 'ota releases: a release of this node is not shared with the cluster');
        this.warned.add(id);
        continue;
      }
      if (this.known.get(r.id) !== releaseText(r)) await this.publishRelease(r);
      const image = join(dir, IMAGES_DIR, r.imageDigest);
      if (await exists(image)) {
        if (!this.stored.has(r.imageDigest)) await this.publishImage(r, image);
      } else if (!this.fetching.has(r.imageDigest) && Date.now() >= (this.notBefore.get(r.imageDigest) ?? 0)) {
        this.fetching.add(r.imageDigest);
        void this.fetch(r).finally(() => this.fetching.delete(r.imageDigest));
      }
    }
  }

  private async publishRelease(r: ReleaseRecord): Promise<void> {
    const state = this.state;
    if (state === null) return;
    const text = releaseText(r);
    await state.compareAndSet(releaseKey(r.id), (current) => {
      if (current === null) return Buffer.from(text);
      const theirs = decodeRelease(releaseKey(r.id), current);
      if ('why' in theirs || releaseText(theirs) !== text) this.logger.error({ releaseId: r.id }, 'ota releases: the cluster has another release of this id; this node keeps its own');
      return null;
    });
    this.known.set(r.id, text);
  }

  private async publishImage(r: ReleaseRecord, path: string): Promise<void> {
    const images = this.images!;
    const info = await images.info(r.imageDigest);
    if (info === null || info.deleted || info.size !== r.imageSize) {
      const body = Readable.toWeb(createReadStream(path, { highWaterMark: 128 * 1024 })) as unknown as ReadableStream<Uint8Array>;
      await images.put({ name: r.imageDigest, description: `release ${r.id}` }, body);
      this.logger.info({ releaseId: r.id, digest: r.imageDigest, size: r.imageSize }, 'ota image shared with the cluster');
    }
    this.stored.add(r.imageDigest);
  }

  /** Fetches the image of `r` into this node's store, if the object store has it and its bytes are the release's. */
  private async fetch(r: ReleaseRecord): Promise<void> {
    const later = (ms: number): void => void this.notBefore.set(r.imageDigest, Date.now() + ms);
    try {
      if (this.stopped) return;
      // A read of the object store is a consumer: made through the connection's gate, so a
      // read begun as the node stops cannot outlive the NATS connection (nats-connection.ts).
      const images = this.images!;
      const got = await this.conn.consumer(
        () => images.get(r.imageDigest),
        (g) => void g?.data.cancel().catch(() => undefined),
      );
      // Not shared yet (its node is still uploading it): the next step looks again.
      if (got === null) return;
      const dir = await ensureOtaDir(this.dataDir);
      const temp = join(dir, IMAGES_DIR, `.fetch.${randomBytes(6).toString('hex')}.tmp`);
      const out = await open(temp, 'wx', 0o600);
      const hash = createHash('sha256');
      let size = 0;
      let why: string | null = null;
      try {
        const reader = got.data.getReader();
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          size += value.length;
          // SECURITY: never more than the release says, whatever the object claims.
          if (size > r.imageSize) {
            why = `more than the release's ${r.imageSize} bytes`;
            await reader.cancel();
            break;
          }
          if (this.stopped) {
            await reader.cancel();
            return;
          }
          hash.update(value);
          await out.write(value);
        }
        if (why === null) {
          const failed = await got.error;
          if (failed instanceof Error) throw failed;
          const digest = hash.digest('hex');
          if (size !== r.imageSize) why = `${size} bytes, not the release's ${r.imageSize}`;
          else if (digest !== r.imageDigest) why = `its SHA-256 is ${digest}, not the release's`;
        }
        if (why === null) await out.sync();
      } finally {
        await out.close();
        if (why !== null || this.stopped) await rm(temp, { force: true });
      }
      if (why !== null) {
        this.logger.error({ releaseId: r.id, digest: r.imageDigest, why }, 'ota releases: an image from the cluster is not its release\'s; refused');
        later(REFUSED_RETRY_MS);
        return;
      }
      await rename(temp, join(dir, IMAGES_DIR, r.imageDigest)).catch(async (err: unknown) => {
        await rm(temp, { force: true });
        throw err;
      });
      this.stored.add(r.imageDigest);
      this.fetched++;
      this.logger.info({ releaseId: r.id, digest: r.imageDigest, size }, 'ota image fetched from the cluster');
    } catch (err) {
      this.logger.warn({ releaseId: r.id, err: errText(err) }, 'ota releases: fetching an image from the cluster failed; retrying');
      later(STEP_MS * 5);
    }
  }
}
